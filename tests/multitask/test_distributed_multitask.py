"""Data-parallel multi-task training (train_multitask(distributed=...), ``torchrun -m metabridge multitask``).

Two processes with the gloo backend (tests/distributed_mtl_worker.py), each on half of every
minibatch, give the single-process parameters after a few float64 steps, for a loss-weighting
method with its own parameters (uncertainty weighting: gradients averaged after the losses
are all-reduced), a parameter-gradient method (PCGrad: the [K, P] per-task gradients
all-reduced before the projection) and a feature-gradient method (MGDA-UB: the per-task
feature gradients all-gathered).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

from distributed_launch import launch  # noqa: E402
from mtl_toy_benchmark import load_toy  # noqa: E402  (registers "toy_mtl", also in the workers)

from metabridge.distributed import DistributedContext  # noqa: E402
from metabridge.multitask.models.registry import build_mtl_model  # noqa: E402
from metabridge.multitask.trainer import train_multitask  # noqa: E402
from metabridge.multitask.weighting import build_weighting  # noqa: E402

WORKER = Path(__file__).resolve().parents[1] / "support" / "distributed_mtl_worker.py"
METHODS = ("uw", "pcgrad", "mgda_ub")
STEPS, BATCH = 4, 32


def train(method: str, distributed: DistributedContext | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A few float64 steps of ``method`` on the toy benchmark; (model and method state, result)."""
    bench = load_toy(n_train=128)
    bench = replace(
        bench,
        **{s: replace(getattr(bench, s), inputs=getattr(bench, s).inputs.double()) for s in ("train", "val", "test")},
    )
    torch.manual_seed(0)
    model = build_mtl_model(
        "hard_sharing",
        input_kind="vector",
        input_shape=(8,),
        out_dims=[t.out_dim for t in bench.tasks],
        encoder_hidden=[16],
        encoder_out_dim=8,
    ).double()
    weighting = build_weighting(method, len(bench.tasks)).double()
    result = train_multitask(
        model,
        weighting,
        bench,
        steps=STEPS,
        batch_size=BATCH,
        lr=1e-2,
        log_every=1,
        eval_every=2,
        distributed=distributed,
    )
    state = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    state.update(
        {f"method.{k}": v.detach().clone() for k, v in weighting.state_dict().items() if isinstance(v, torch.Tensor)}
    )
    return state, result.as_dict()


def test_two_processes_give_the_single_process_parameters(tmp_path: Path) -> None:
    results = launch(WORKER, ["train", str(tmp_path / "mtl.pt")])
    assert all(r.returncode == 0 for r in results), [r.stdout[-3000:] for r in results]
    parallel = torch.load(tmp_path / "mtl.pt")
    torch.manual_seed(0)
    start = (
        build_mtl_model(
            "hard_sharing",
            input_kind="vector",
            input_shape=(8,),
            out_dims=[4, 1, 1],
            encoder_hidden=[16],
            encoder_out_dim=8,
        )
        .double()
        .state_dict()
    )
    for method in METHODS:
        single, result = train(method)
        got = parallel[method]["params"]
        assert got.keys() == single.keys(), method
        for k, v in single.items():
            if v.is_floating_point():
                rel = float((got[k] - v).norm() / v.norm().clamp_min(1e-300))
                assert rel < 1e-10, (method, k, rel)
            else:
                assert torch.equal(got[k], v), (method, k)
        assert any(not torch.allclose(single[f"model.{k}"], v) for k, v in start.items())  # it trained
        other = parallel[method]["result"]
        assert other["world_size"] == 2 and len(other["comm_s_per_step"]) == 2 and result["world_size"] == 1
        flat = lambda rows: [v for row in rows for v in row]  # noqa: E731
        assert flat(other["train_losses"]) == pytest.approx(flat(result["train_losses"]), rel=1e-10)  # whole batch
        assert flat(other["weights"]) == pytest.approx(flat(result["weights"]), rel=1e-8)
        assert other["val_metric"] == pytest.approx(result["val_metric"], rel=1e-10)


def test_batch_must_split_over_the_ranks() -> None:
    class Three(DistributedContext):  # only the world size is read before any collective
        def __post_init__(self) -> None:
            pass

    bench = load_toy(n_train=64)
    model = build_mtl_model(
        "hard_sharing", input_kind="vector", input_shape=(8,), out_dims=[4, 1, 1], encoder_hidden=[8], encoder_out_dim=4
    )
    with pytest.raises(ValueError, match="batch_size 32 does not split over 3 processes"):
        train_multitask(
            model, build_weighting("equal", 3), bench, steps=1, batch_size=32, distributed=Three(rank=0, world_size=3)
        )
