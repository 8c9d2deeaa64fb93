"""One rank of a 2-process multi-task test, started by tests/test_multitask_distributed.py with
torchrun's environment set by hand (tests/distributed_launch.py).

Mode ``train OUT``: for each method of test_multitask_distributed.METHODS, a few float64 steps of
train_multitask with this rank's half of every minibatch; rank 0 saves
{method: {"params": model and method state, "result": MultiTaskResult.as_dict()}} to OUT.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "multitask"))  # the test module that drives this worker

from metabridge.distributed import init_from_environment  # noqa: E402


def train_mode(out: str) -> None:
    from test_distributed_multitask import METHODS, train

    ctx = init_from_environment("cpu")
    saved = {}
    for method in METHODS:
        params, result = train(method, ctx)
        saved[method] = {"params": params, "result": result}
    if ctx.is_main:
        torch.save(saved, out)


if __name__ == "__main__":
    train_mode(sys.argv[2])
