"""Data-parallel meta-RL (RLTrainer(distributed=...), ``torchrun -m metabridge rl train``).

Two processes with the gloo backend (tests/distributed_rl_worker.py): one MAML-TRPO and one
DRS-PPO update with each rank collecting half of the meta-batch from its own generator equal
the single-process update on the union of those tasks (float64, rel. 1e-10); a 2-process
run records world size, every rank's generator and per-rank communication time, resumes
after a stop at a later iteration than its checkpoint to the uninterrupted parameters, and
refuses a resume with another world size.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

from distributed_launch import launch  # noqa: E402

from metabridge.checkpoint import CheckpointManager  # noqa: E402
from metabridge.distributed import rank_seed  # noqa: E402
from metabridge.metrics_log import read_metrics  # noqa: E402
from metabridge.rl.algorithms.base import cat_episodes  # noqa: E402
from metabridge.rl.algorithms.maml_trpo import MAMLBatch  # noqa: E402
from metabridge.rl.config import RLConfig  # noqa: E402
from metabridge.rl.trainer import RLTrainer, build_env, build_policy, build_rl_algorithm  # noqa: E402

WORKER = Path(__file__).resolve().parents[1] / "support" / "distributed_rl_worker.py"
SEED, META_BATCH, ROLLOUTS = 3, 4, 3


def config(algorithm: str, **kw: object) -> RLConfig:
    """A tiny float64 2D-navigation run (the same in every process).

    TRPO runs 3 conjugate-gradient iterations with damping 0.01: with more iterations on this
    44-parameter policy, CG nearly converges and its late iterations amplify rounding, so that
    even one process computing the same update with the tasks in another order differs by
    ~1e-9 (measured: 7e-10 at 10 iterations and damping 0.1, 6e-16 at this setting, which
    also backtracks once in the line search)."""
    trpo = {"cg_iters": 3, "cg_damping": 0.01} if "trpo" in algorithm else {}
    base = dict(
        algorithm_kwargs=trpo,
        env="navigation-2d",
        env_kwargs={"horizon": 10},
        hidden=[8],
        meta_batch=META_BATCH,
        rollouts=ROLLOUTS,
        iterations=1,
        eval_tasks=2,
        eval_rollouts=2,
        eval_updates=1,
        seed=SEED,
        dtype="float64",
        algorithm=algorithm,
    )
    return RLConfig(**{**base, **kw})


def _single_process_update(name: str, world: int = 2) -> tuple[dict[str, torch.Tensor], dict[str, float], object]:
    """One process: collect each rank's shard with that rank's generator, then update on their union."""
    cfg = config(name)
    env = build_env(cfg)
    algo = build_rl_algorithm(cfg, build_policy(cfg, env))
    shards = [
        algo.collect(env, META_BATCH // world, ROLLOUTS, torch.Generator().manual_seed(rank_seed(SEED, r)))
        for r in range(world)
    ]
    union = MAMLBatch.cat(shards) if name == "maml-trpo" else cat_episodes(shards)
    stats = algo.update(union)
    return {k: v.detach().clone() for k, v in algo.state_dict().items()}, stats, shards


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def test_two_process_updates_equal_the_single_process_update_on_the_union(tmp_path: Path) -> None:
    results = launch(WORKER, ["update", str(tmp_path / "update.pt")])
    assert all(r.returncode == 0 for r in results), [r.stdout[-3000:] for r in results]
    parallel = torch.load(tmp_path / "update.pt")
    for name in ("maml-trpo", "drs-ppo"):
        cfg = config(name)
        env = build_env(cfg)
        start = build_rl_algorithm(cfg, build_policy(cfg, env)).state_dict()
        single, stats, _ = _single_process_update(name)
        got = parallel[name]["params"]
        assert got.keys() == single.keys()
        moved = 0.0
        for k in single:
            assert _rel(got[k], single[k]) < 1e-10, (name, k, _rel(got[k], single[k]))
            moved = max(moved, _rel(single[k], start[k]))
        assert moved > 1e-4, name  # the update did something
        for key in ("return", "env_steps", "surrogate"):
            assert parallel[name]["stats"][key] == pytest.approx(stats[key], rel=1e-9), (name, key)
        if name == "maml-trpo":
            assert parallel[name]["stats"]["accepted"] == stats["accepted"] == 1.0
    # a rank's half alone gives another update: the averaging is what makes them equal
    cfg = config("maml-trpo")
    env = build_env(cfg)
    algo = build_rl_algorithm(cfg, build_policy(cfg, env))
    algo.update(algo.collect(env, META_BATCH // 2, ROLLOUTS, torch.Generator().manual_seed(SEED)))
    half = algo.state_dict()
    assert max(_rel(half[k], parallel["maml-trpo"]["params"][k]) for k in half) > 1e-6


def test_two_process_run_records_ranks_resumes_exactly_and_refuses_another_world_size(tmp_path: Path) -> None:
    algorithm = "drs-trpo"
    results = launch(WORKER, ["train", str(tmp_path), "4", algorithm, "3"])
    assert all(r.returncode == 0 for r in results), [r.stdout[-3000:] for r in results]
    params = torch.load(tmp_path / "params.pt")
    a, b = params["full"], params["cut"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ckpt, _ = CheckpointManager(tmp_path / "full").load_latest()
    extra = ckpt["extra"]
    assert extra["world_size"] == 2 and len(extra["rank_rng"]) == 2
    assert not torch.equal(extra["rank_rng"][0], extra["rank_rng"][1])  # distinct task streams
    assert torch.equal(extra["rank_rng"][0], ckpt["rng"]["sampler"])
    records = read_metrics(tmp_path / "full")
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all(r["world_size"] == 2 and len(r["comm_s_per_step"]) == 2 for r in train)
    assert all(r["env_steps"] == META_BATCH * ROLLOUTS * 10 for r in train)  # both ranks' steps (no termination)
    assert [r["step"] for r in records if r["kind"] == "eval"] == [2, 4]
    cfg = config(algorithm, iterations=6, eval_every=2, checkpoint_every=2)
    with pytest.raises(ValueError, match=r"trained with 2 process\(es\).*--nproc-per-node 2"):
        RLTrainer(cfg, tmp_path / "full", resume=True, progress=False).run()


def test_meta_batch_must_split_over_the_ranks() -> None:
    from metabridge.distributed import DistributedContext

    class Three(DistributedContext):  # only the world size is read before any collective
        def __post_init__(self) -> None:
            pass

    with pytest.raises(ValueError, match="meta_batch 4 does not split over 3 processes"):
        RLTrainer(config("maml-trpo"), "unused", distributed=Three(rank=0, world_size=3))
