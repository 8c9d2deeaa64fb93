"""Data parallelism over processes (metabridge.distributed, Trainer(distributed=...)).

Two processes with the gloo backend on the CPU, started with torchrun's environment set
by hand (tests/distributed_worker.py): the averaged meta-gradient equals the
single-process one on the same tasks (float64), and a 2-process run killed after a
checkpoint resumes to bit-identical parameters.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import metabridge as mb
from metabridge.distributed import DistributedContext, GradientAverager, rank_seed, shard_size
from metabridge.tasks.batch import TaskBatch
from metabridge.train import read_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from distributed_launch import launch  # noqa: E402

WORKER = Path(__file__).resolve().parent / "support" / "distributed_worker.py"


def meta_batch() -> TaskBatch:
    """4 tasks of 3-way 2-shot 2-query, 16x16 images, float64 (the same in every process)."""
    g = torch.Generator().manual_seed(5)
    t, n, k, q = 4, 3, 2, 2
    sx = torch.randn(t, n * k, 1, 16, 16, generator=g, dtype=torch.float64)
    qx = torch.randn(t, n * q, 1, 16, 16, generator=g, dtype=torch.float64)
    sy = torch.arange(n).repeat_interleave(k).expand(t, -1).clone()
    qy = torch.arange(n).repeat_interleave(q).expand(t, -1).clone()
    return TaskBatch(sx, sy, qx, qy, n_way=n)


def _launch(args: list[str], world: int = 2) -> list[subprocess.CompletedProcess]:
    return launch(WORKER, args, world)


def test_averaged_meta_gradient_equals_single_process(tmp_path):
    results = _launch(["grad", str(tmp_path / "grad.pt")])
    assert all(r.returncode == 0 for r in results), [r.stdout[-2000:] for r in results]
    torch.manual_seed(0)
    algo = mb.build_algorithm(
        "maml", model="conv4", n_way=3, inner_lr=0.1, inner_steps=2, image_size=16, model_kwargs={"hidden": 4}
    ).double()
    algo.meta_loss(meta_batch()).backward()
    parallel = torch.load(tmp_path / "grad.pt")
    single = {n: p.grad for n, p in algo.named_parameters() if p.grad is not None}
    assert parallel.keys() == single.keys() and single
    for name, g in single.items():
        assert torch.allclose(parallel[name], g, rtol=1e-12, atol=1e-14), name
    # and the halves alone differ from the whole: the average is doing the work
    algo.zero_grad()
    algo.meta_loss(meta_batch()[0:2]).backward()
    assert any(not torch.allclose(p.grad, single[n]) for n, p in algo.named_parameters() if p.grad is not None)


def test_killed_two_process_run_resumes_bit_identically(tmp_path):
    full = _launch(["train", str(tmp_path / "full"), str(tmp_path / "full.pt"), "10"])
    assert all(r.returncode == 0 for r in full), [r.stdout[-2000:] for r in full]
    killed = _launch(["train", str(tmp_path / "cut"), str(tmp_path / "unused.pt"), "10", "7"])
    assert all(r.returncode == 7 for r in killed), [r.stdout[-2000:] for r in killed]
    assert mb.load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 6
    resumed = _launch(["train", str(tmp_path / "cut"), str(tmp_path / "cut.pt"), "10"])
    assert all(r.returncode == 0 for r in resumed), [r.stdout[-2000:] for r in resumed]
    a, b = torch.load(tmp_path / "full.pt"), torch.load(tmp_path / "cut.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ckpt = mb.load_checkpoint(tmp_path / "full" / "last.pt")
    assert ckpt["extra"]["world_size"] == 2 and len(ckpt["extra"]["rank_rng"]) == 2
    records = read_metrics(tmp_path / "full")
    train = [r for r in records if r["kind"] == "train"]
    assert train and all(r["world_size"] == 2 and len(r["comm_s_per_step"]) == 2 for r in train)
    # the two ranks drew different tasks: their generators' states differ
    assert not torch.equal(
        ckpt["extra"]["rank_rng"][0]["task_generator"], ckpt["extra"]["rank_rng"][1]["task_generator"]
    )
    # a 2-process run cannot be resumed by one process (its second task stream would be lost)
    from metabridge_toys import toy_builder, toy_config

    cfg = toy_config(
        tmp_path / "full", steps=12, checkpoint_every=3, eval_every=4, meta_batch_size=4, lr_schedule="plateau"
    )
    with pytest.raises(ValueError, match="trained with 2 processes.*--nproc-per-node 2"):
        mb.Trainer(cfg, builder=toy_builder(), progress=False, resume=True).run()


def test_rank_seeds_and_shards():
    assert rank_seed(11, 0) == 11
    seeds = {rank_seed(11, r) for r in range(8)}
    assert len(seeds) == 8 and rank_seed(11, 3) == rank_seed(11, 3)
    assert shard_size(32, 4) == 8
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        shard_size(32, 3)


def test_one_process_context_and_averager_are_identity():
    ctx = DistributedContext()
    assert not ctx.enabled and ctx.is_main
    lin = torch.nn.Linear(3, 2)
    lin(torch.ones(1, 3)).sum().backward()
    before = lin.weight.grad.clone()
    lin.bias.grad = None
    (mean,) = GradientAverager(lin, ctx).average([torch.tensor(2.5)])
    assert float(mean) == 2.5 and torch.equal(lin.weight.grad, before) and lin.bias.grad is None
    with pytest.raises(RuntimeError, match="initialised process group"):
        DistributedContext(rank=1, world_size=2)


def test_deferred_checks_name_the_first_bad_step(tmp_path):
    """sync_every > 1 (the accelerator default) reads the loss only at sync points, yet the error
    names the step where the NaN appeared and the last checkpoint is from before it."""
    from metabridge_toys import toy_builder, toy_config

    cfg = toy_config(tmp_path, steps=20, eval_every=0, checkpoint_every=5, log_every=10)
    with pytest.raises(mb.NonFiniteLossError) as info:
        mb.Trainer(cfg, builder=toy_builder(nan_at_call=8), progress=False, sync_every=10).run()
    assert info.value.step == 8 and info.value.checkpoint_step == 5
    ckpt = mb.load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 5 and all(torch.isfinite(t).all() for t in ckpt["algorithm"].values())
