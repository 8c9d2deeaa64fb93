"""Train a meta-RL algorithm with checkpoints, exact resume, JSONL metrics and a progress bar.

The training skeleton of every trainer (:class:`metabridge.training.TrainingLoop`) drives
the iterations: a run directory holds ``config.json``, ``metrics.jsonl`` (one ``train``
record per iteration, one ``eval`` record per evaluation), and ``last.pt`` /
``last.prev.pt`` written atomically. A checkpoint holds the policy, the algorithm's extra
state (PPO's Adam), the sampler generator's state, the iteration, the environment steps
and seconds so far: a run killed at any point and resumed with ``resume=True`` ends with
the parameters of the uninterrupted run. Ctrl-C or SIGTERM ends a run after the iteration
in flight, with a checkpoint of it, and names the command that resumes it.

Evaluation (:func:`metabridge.rl.evaluate.finetune_returns`) uses held-out tasks and a
noise generator both seeded by ``config.eval_seed`` alone, so every method, seed and
checkpoint is scored on the same tasks with the same noise (common random numbers),
and evaluating never moves the training generator.

Data parallelism (``torchrun --nproc-per-node W -m metabridge rl train ...``, or
``RLTrainer(..., distributed=context)``): each rank collects ``meta_batch / W`` tasks and
their rollouts from its own generator (rank 0 from ``seed``, today's stream; rank r from
:func:`metabridge.distributed.rank_seed`), fits each task's baseline locally, and the
update averages every mean over tasks across the ranks (the TRPO gradient, each
Fisher-vector product of conjugate gradient and each line-search candidate's surrogate
and KL; each PPO step's gradient), so it is the single-process update on the union of
the ranks' tasks and the replicas stay equal. Rank 0 evaluates, writes ``metrics.jsonl``
(each train record with ``world_size`` and every rank's ``comm_s_per_step``) and the
checkpoints, which hold every rank's generator state (``extra["rank_rng"]``) and
``extra["world_size"]``; a resume must use the same number of processes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text
from ..checkpoint import FORMAT_VERSION, CheckpointError, CheckpointManager
from ..collectives import RankMean
from ..distributed import DistributedContext, rank_seed
from ..metrics_log import read_metrics
from ..training import NonFiniteError, TrainingLoop, clear_checkpoints, prepare_run, resume_command
from .algorithms import RL_ALGORITHMS, MetaRLAlgorithm
from .config import RLConfig
from .envs.base import MetaEnv
from .envs.registry import make_env
from .evaluate import FinetuneResult, finetune_returns
from .policy import GaussianMLPPolicy

CONFIG_FILE = "config.json"
#: fields a resumed run may change (the others would make it a different run)
RESUMABLE = frozenset({"iterations", "eval_every", "checkpoint_every", "device"})


class RLTrainingError(NonFiniteError):
    """A run produced non-finite statistics or parameters; the last good checkpoint is kept."""


def build_policy(config: RLConfig, env: MetaEnv) -> GaussianMLPPolicy:
    """The Gaussian MLP policy of ``config``, initialised from ``config.seed`` (global RNG untouched)."""
    g = torch.Generator().manual_seed(config.seed)
    policy = GaussianMLPPolicy(
        env.obs_dim, env.action_dim, config.hidden, config.activation, config.init_std, generator=g
    )
    return policy.to(dtype=getattr(torch, config.dtype), device=config.device)


def build_rl_algorithm(config: RLConfig, policy: GaussianMLPPolicy) -> MetaRLAlgorithm:
    """The algorithm registered as ``config.algorithm`` (:data:`~metabridge.rl.algorithms.registry.RL_ALGORITHMS`)
    around ``policy``, built by the one constructor contract of every meta-RL algorithm:
    ``cls(policy, inner_lr=..., gamma=..., gae_lambda=..., **config.algorithm_kwargs)``."""
    cls = RL_ALGORITHMS.get(config.algorithm)
    common = dict(inner_lr=config.inner_lr, gamma=config.gamma, gae_lambda=config.gae_lambda)
    kw = {**common, **config.algorithm_kwargs}
    try:
        return cls(policy, **kw)
    except TypeError as exc:
        raise ValueError(
            f"algorithm_kwargs {sorted(config.algorithm_kwargs)} do not fit {config.algorithm}: {exc}"
        ) from None


def build_env(config: RLConfig) -> MetaEnv:
    return make_env(config.env, **config.env_kwargs)


def evaluation_tasks(config: RLConfig, env: MetaEnv) -> torch.Tensor:
    """The held-out tasks of every evaluation of runs sharing ``config.eval_seed``."""
    return env.sample_tasks(config.eval_tasks, torch.Generator().manual_seed(config.eval_seed), split="test")


def evaluate_policy(
    config: RLConfig, env: MetaEnv, policy: GaussianMLPPolicy, tasks: torch.Tensor | None = None
) -> FinetuneResult:
    """Returns after 0..eval_updates fine-tuning updates on the held-out tasks."""
    tasks = evaluation_tasks(config, env) if tasks is None else tasks
    noise = torch.Generator().manual_seed(config.eval_seed + 7919)
    return finetune_returns(
        env,
        policy,
        tasks,
        config.eval_rollouts,
        config.eval_updates,
        config.eval_schedule(),
        noise,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
    )


@dataclass
class RLResult:
    """What a finished run reports: the final evaluation and every record written."""

    run_dir: Path
    iteration: int
    env_steps: int
    seconds: float
    final: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)


class RLTrainer:
    """Runs ``config`` in ``run_dir``.

    Args:
        resume: continue from the run directory's newest readable checkpoint (the config
            must match except for :data:`RESUMABLE` fields).
        overwrite: start afresh in a directory that already holds a run.
        progress: show a tqdm bar.
        on_iteration: called as ``on_iteration(iteration, stats)`` after each iteration
            (tests use it to kill a run at a chosen point).
        interrupts: on SIGINT/SIGTERM, finish the iteration in flight, checkpoint it and raise
            :class:`~metabridge.training.TrainingInterrupted`, whose message names the resume command.
        distributed: the ranks of a data-parallel run (default: one process; see the module
            docstring and :func:`metabridge.distributed.init_from_environment`).
    """

    def __init__(
        self,
        config: RLConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        on_iteration: Callable[[int, dict[str, float]], None] | None = None,
        distributed: DistributedContext | None = None,
        interrupts: bool = True,
    ) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        self.interrupts = interrupts
        self.resume, self.overwrite, self.progress = resume, overwrite, progress
        self.on_iteration = on_iteration
        self.checkpoints = CheckpointManager(self.run_dir)
        self.distributed = distributed if distributed is not None else DistributedContext()
        world = self.distributed.world_size
        if config.meta_batch % world:
            raise ValueError(
                f"meta_batch {config.meta_batch} does not split over {world} processes; use a multiple "
                f"of {world} (--meta-batch {max(world, config.meta_batch // world * world)}) "
                "or another --nproc-per-node."
            )
        #: tasks this rank collects per iteration
        self.shard = config.meta_batch // world

    # ------------------------------------------------------------ set-up
    def _world_size_error(self, saved: int) -> str:
        how = f"torchrun --nproc-per-node {saved} -m metabridge rl train" if saved > 1 else "metabridge rl train"
        return (
            f"{self.run_dir} was trained with {saved} process(es) and is resumed with "
            f"{self.distributed.world_size}: each rank's task stream is in the checkpoint, so resume it "
            f"with {how} --resume (or start a new run with another --out)."
        )

    def _prepare(self, write: bool = True) -> dict[str, Any] | None:
        """The checkpoint to resume from (``None`` for a new run); refuses to replace a run by accident.
        A directory whose run never completed an iteration (a config, no checkpoint) is started again."""
        if self.resume:
            ckpt, _ = self.checkpoints.load_latest()
            saved = RLConfig(**ckpt["config"])
            changed = [
                k for k in RLConfig.model_fields if k not in RESUMABLE and getattr(saved, k) != getattr(self.config, k)
            ]
            if changed:
                raise CheckpointError(
                    f"cannot resume {self.run_dir}: the config differs in {', '.join(changed)} "
                    f"(only {', '.join(sorted(RESUMABLE))} may change on resume); start a new "
                    "run with another --out, or pass --overwrite."
                )
            return ckpt
        if self.checkpoints.exists():
            if not self.overwrite:
                raise FileExistsError(
                    f"{self.run_dir} already holds a run; pass --resume to continue it or --overwrite to start again."
                )
            clear_checkpoints(self.checkpoints)
        return None

    def _save(
        self, algorithm: MetaRLAlgorithm, generator: torch.Generator, iteration: int, env_steps: int, seconds: float
    ) -> Path:
        """Write the checkpoint (distributed: every rank's generator state is gathered, rank 0 writes)."""
        ctx = self.distributed
        extra: dict[str, Any] = {
            "env_steps": env_steps,
            "seconds": seconds,
            "kind": "meta-rl",
            "policy": algorithm.policy.config(),
            "hparams": algorithm.hparams(),
        }
        if ctx.enabled:
            extra.update(world_size=ctx.world_size, rank_rng=ctx.gather_objects(generator.get_state()))
        path = self.checkpoints.last
        if ctx.is_main:
            payload = {
                "format_version": FORMAT_VERSION,
                "step": iteration,
                "algorithm": algorithm.state_dict(),
                "optimizer": algorithm.extra_state(),
                "rng": {"sampler": generator.get_state()},
                "config": self.config.model_dump(),
                "best": None,
                "extra": extra,
                "build": None,
                "time": time.time(),
            }
            path = self.checkpoints.save(payload)
        ctx.barrier()  # no rank runs ahead of a checkpoint it could be resumed from
        return path

    # ------------------------------------------------------------ loop
    def resume_hint(self) -> str:
        """What continues this run after an interrupt: the CLI command, or the Python call."""
        return resume_command(self.distributed.world_size) or f"train_rl(config, {str(self.run_dir)!r}, resume=True)"

    def run(self) -> RLResult:
        """Train to ``config.iterations`` (resuming when asked); SIGINT/SIGTERM end the run after the
        iteration in flight with a checkpoint of it (:class:`~metabridge.training.TrainingInterrupted`)."""
        cfg, ctx = self.config, self.distributed
        ckpt = prepare_run(ctx, self._prepare, self.resume, self._world_size_error)
        env = build_env(cfg)  # everything is built (and validated) before the run directory is touched
        policy = build_policy(cfg, env)
        algorithm = build_rl_algorithm(cfg, policy)
        ranks = RankMean(ctx)
        if ctx.enabled:
            ctx.broadcast_module(algorithm)  # equal replicas, whatever each rank's initialisation did
            algorithm.distribute(ranks)
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / CONFIG_FILE, json.dumps(cfg.model_dump(), indent=2) + "\n")
        generator = torch.Generator().manual_seed(rank_seed(cfg.seed, ctx.rank))  # rank 0: cfg.seed
        start, self._env_steps, self._seconds = 0, 0, 0.0
        if ckpt is not None:
            algorithm.load_state_dict(ckpt["algorithm"])
            algorithm.load_extra_state(ckpt["optimizer"] or {})
            generator.set_state(ckpt["extra"]["rank_rng"][ctx.rank] if ctx.enabled else ckpt["rng"]["sampler"])
            start = int(ckpt["step"])
            self._env_steps, self._seconds = int(ckpt["extra"]["env_steps"]), float(ckpt["extra"]["seconds"])
        self._env, self._policy, self._algorithm = env, policy, algorithm
        self._generator, self._ranks = generator, ranks
        self._eval_tasks = evaluation_tasks(cfg, env)
        self._history: list[dict[str, Any]] = []
        self._final: dict[str, Any] | None = None
        self._loop = TrainingLoop(
            start=start,
            steps=cfg.iterations,
            resume=self.resume_hint(),
            save=lambda it, best: self._save(algorithm, generator, it, self._env_steps, self._seconds),
            run_dir=self.run_dir,
            log_from=start if ckpt is not None else None,
            checkpoint_every=cfg.checkpoint_every or 0,
            saved=(self.checkpoints.last, start) if ckpt else None,
            distributed=ctx,
            progress=self.progress,
            desc=f"{cfg.algorithm} {cfg.env}",
            unit="it",
            interrupts=self.interrupts,
        )
        hook = self.on_iteration
        after = (lambda it: hook(it, self._stats)) if hook is not None else None
        try:
            self._loop.run(self._iteration, after=after)
        finally:
            env.close()
        final = self._final
        if final is None:  # resumed at the end: report the recorded final evaluation
            evals = [r for r in read_metrics(self.run_dir) if r.get("kind") == "eval"] if ctx.is_main else []
            final = ctx.broadcast_object(evals[-1] if evals else None)
        return RLResult(self.run_dir, cfg.iterations, self._env_steps, self._seconds, final, self._history)

    def _iteration(self, it: int) -> None:
        """One meta-iteration: collect, update, check, log; evaluate when due."""
        cfg, ctx, algorithm, loop = self.config, self.distributed, self._algorithm, self._loop
        t0 = time.perf_counter()
        if ctx.enabled:
            batch, error = None, None
            try:  # a sampling failure on one rank stops every rank (none waits in a collective)
                batch = algorithm.collect(self._env, self.shard, cfg.rollouts, self._generator)
            except Exception as exc:
                error = exc
            ctx.raise_together(error)
            self._ranks.take_seconds()
            stats = algorithm.update(batch)
        else:
            stats = algorithm.train_iteration(self._env, cfg.meta_batch, cfg.rollouts, self._generator)
        self._seconds += time.perf_counter() - t0
        self._env_steps += int(stats["env_steps"])
        self._stats = stats
        bad = [k for k, v in stats.items() if not math.isfinite(v)]
        if bad or not all(bool(torch.isfinite(p).all()) for p in self._policy.parameters()):
            where = (
                f"the last good checkpoint {loop.saved[0]} (iteration {loop.saved[1]}) is kept"
                if loop.saved is not None
                else "no checkpoint had been written yet"
            )
            raise RLTrainingError(
                f"iteration {it} gave non-finite {', '.join(bad) or 'parameters'}; "
                f"training stopped and {where}. Lower inner_lr (now {cfg.inner_lr:g}) "
                "or the trust region (algorithm_kwargs max_kl) / PPO learning_rate.",
                it,
            )
        rec = {"kind": "train", "step": it, "env_steps_total": self._env_steps, "seconds": self._seconds, **stats}
        if ctx.enabled:  # every rank's seconds in collectives during this iteration's update
            rec.update(world_size=ctx.world_size, comm_s_per_step=ctx.gather_objects(self._ranks.take_seconds()))
        loop.log.write(rec)
        self._history.append(rec)
        loop.advance_bar(ret=f"{stats['return']:.2f}")
        if (cfg.eval_every and it % cfg.eval_every == 0) or it == cfg.iterations:
            self._evaluate(it)

    def _evaluate(self, it: int) -> None:
        """Rank 0 scores the held-out tasks (the single-process numbers); the others get its record."""
        cfg, ctx = self.config, self.distributed
        ev = None
        if ctx.is_main:
            result = evaluate_policy(cfg, self._env, self._policy, self._eval_tasks)
            ev = {
                "kind": "eval",
                "step": it,
                "env_steps_total": self._env_steps,
                "seconds": self._seconds,
                "returns": result.mean_returns(),
                "returns_ci95": result.returns_ci95(),
            }
            if result.success is not None:
                ev["success"] = result.mean_success()
        ev = ctx.broadcast_object(ev)
        self._loop.log.write(ev)
        self._history.append(ev)
        self._final = ev


def train_rl(config: RLConfig, run_dir: str | Path, **kwargs: Any) -> RLResult:
    """Convenience: ``RLTrainer(config, run_dir, **kwargs).run()``."""
    return RLTrainer(config, run_dir, **kwargs).run()


def load_rl_run(run_dir: str | Path, map_location: str = "cpu") -> tuple[RLConfig, MetaEnv, MetaRLAlgorithm, int]:
    """Rebuild (config, env, algorithm, iteration) from a run directory's newest readable checkpoint."""
    ckpt, _ = CheckpointManager(Path(run_dir)).load_latest(map_location)
    if ckpt.get("extra", {}).get("kind") != "meta-rl":
        raise CheckpointError(f"{run_dir} is not a meta-RL run (train it with metabridge rl train).")
    config = RLConfig(**ckpt["config"])
    env = build_env(config)
    algorithm = build_rl_algorithm(config, build_policy(config, env))
    algorithm.load_state_dict(ckpt["algorithm"])
    return config, env, algorithm, int(ckpt["step"])
