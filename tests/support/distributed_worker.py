"""One rank of a 2-process test run, started by tests/test_distributed.py with torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) set by hand.

Modes:
  grad OUT            float64 MAML meta-gradient of this rank's half of a fixed meta-batch,
                      averaged over the ranks; rank 0 saves {name: grad} to OUT.
  train RUN OUT STEPS [KILL]
                      train the toy regressor to STEPS (resuming RUN if it has checkpoints);
                      with KILL, every rank exits hard (os._exit) after step KILL, as a killed
                      job would; rank 0 saves the final parameters to OUT.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test module that drives this worker

import metabridge as mb  # noqa: E402
from metabridge.distributed import GradientAverager, init_from_environment  # noqa: E402


def grad_mode(out: str) -> None:
    ctx = init_from_environment("cpu")
    torch.manual_seed(0)
    algo = mb.build_algorithm(
        "maml", model="conv4", n_way=3, inner_lr=0.1, inner_steps=2, image_size=16, model_kwargs={"hidden": 4}
    ).double()
    from test_distributed import meta_batch  # the same tasks as the single-process reference

    batch = meta_batch()
    half = batch.num_tasks // ctx.world_size
    mine = batch[slice(ctx.rank * half, (ctx.rank + 1) * half)]
    algo.meta_loss(mine).backward()
    GradientAverager(algo, ctx).average([])
    if ctx.is_main:
        torch.save({n: p.grad for n, p in algo.named_parameters() if p.grad is not None}, out)


def train_mode(run: str, out: str, steps: int, kill: int | None) -> None:
    from metabridge_toys import toy_builder, toy_config

    ctx = init_from_environment("cpu")
    resume = (Path(run) / "last.pt").exists()
    cfg = toy_config(Path(run), steps=steps, checkpoint_every=3, eval_every=4, meta_batch_size=4, lr_schedule="plateau")

    def on_step(step: int, loss: float) -> None:
        if kill is not None and step == kill:
            os._exit(7)

    trainer = mb.Trainer(cfg, builder=toy_builder(), progress=False, resume=resume, distributed=ctx, on_step=on_step)
    trainer.run()
    if ctx.is_main:
        torch.save({n: p.detach().clone() for n, p in trainer.experiment.algorithm.named_parameters()}, out)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "grad":
        grad_mode(sys.argv[2])
    else:
        train_mode(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else None)
