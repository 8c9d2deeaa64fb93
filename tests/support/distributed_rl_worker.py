"""One rank of a 2-process meta-RL test, started by tests/test_rl_distributed.py with torchrun's
environment set by hand (tests/distributed_launch.py).

Modes:
  update OUT        for MAML-TRPO and DRS-PPO (float64, 2D navigation): collect this rank's half of
                    the meta-batch from its own generator, then one data-parallel update; rank 0
                    saves {algorithm: {"params": ..., "stats": ...}} to OUT.
  train ROOT ITERS ALGO KILL
                    RLTrainer to ITERS in ROOT/full; in ROOT/cut the same run stopped on every rank
                    after iteration KILL and resumed; rank 0 saves both runs' parameters to
                    ROOT/params.pt (one launch: process start-up is most of the test's time).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rl"))  # the test module that drives this worker

from metabridge.collectives import RankMean  # noqa: E402
from metabridge.distributed import init_from_environment, rank_seed  # noqa: E402
from metabridge.rl.trainer import RLTrainer, build_env, build_policy, build_rl_algorithm  # noqa: E402


def update_mode(out: str) -> None:
    from test_distributed_rl import META_BATCH, ROLLOUTS, SEED, config

    ctx = init_from_environment("cpu")
    saved = {}
    for name in ("maml-trpo", "drs-ppo"):
        cfg = config(name)
        env = build_env(cfg)
        algo = build_rl_algorithm(cfg, build_policy(cfg, env))
        generator = torch.Generator().manual_seed(rank_seed(SEED, ctx.rank))
        batch = algo.collect(env, META_BATCH // ctx.world_size, ROLLOUTS, generator)
        algo.distribute(RankMean(ctx))
        stats = algo.update(batch)
        saved[name] = {"params": {k: v.detach().clone() for k, v in algo.state_dict().items()}, "stats": stats}
    if ctx.is_main:
        torch.save(saved, out)


class Killed(RuntimeError):
    pass


def train_mode(root: str, iterations: int, algorithm: str, kill: int) -> None:
    """An uninterrupted run in ROOT/full; a run in ROOT/cut stopped by an exception on every rank after
    iteration ``kill`` (its last checkpoint is older) and resumed; rank 0 saves both final parameters."""
    from test_distributed_rl import config

    from metabridge.rl.trainer import load_rl_run

    ctx = init_from_environment("cpu")
    cfg = config(algorithm, iterations=iterations, eval_every=2, checkpoint_every=2)
    RLTrainer(cfg, Path(root) / "full", progress=False, distributed=ctx).run()

    def on_iteration(it: int, stats: dict[str, float]) -> None:
        if it == kill:
            raise Killed(it)

    try:
        RLTrainer(cfg, Path(root) / "cut", progress=False, on_iteration=on_iteration, distributed=ctx).run()
        raise AssertionError("the run was not stopped")
    except Killed:
        pass
    RLTrainer(cfg, Path(root) / "cut", resume=True, progress=False, distributed=ctx).run()
    if ctx.is_main:
        torch.save(
            {name: load_rl_run(Path(root) / name)[2].state_dict() for name in ("full", "cut")}, Path(root) / "params.pt"
        )


if __name__ == "__main__":
    if sys.argv[1] == "update":
        update_mode(sys.argv[2])
    else:
        train_mode(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
