"""The run-directory and checkpoint half of :class:`metabridge.train.Trainer`.

:class:`CheckpointMixin` prepares the run directory (the resume / overwrite checks, the
saved ``config.json``; rank 0 writes under data parallelism), restores a resumed run's
state from its checkpoint, and writes ``last.pt`` / ``best.pt`` with every rank's
task-generator state, refusing to save parameters a non-finite step touched.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .checkpoint import CheckpointError, CheckpointManager, capture_rng_state, make_payload, restore_rng_state
from .config import ExperimentConfig
from .distributed import DistributedContext
from .experiment import CONFIG_FILE, check_resume_compatible
from .training import clear_checkpoints, prepare_run

if TYPE_CHECKING:
    from .experiment import Experiment

__all__ = ["CheckpointMixin"]


def _all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


class CheckpointMixin:
    """Run directory, checkpoint restore and checkpoint writes of :class:`metabridge.train.Trainer`."""

    config: ExperimentConfig
    experiment: Experiment | None
    distributed: DistributedContext
    run_dir: Path
    checkpoints: CheckpointManager
    resume: bool
    overwrite: bool
    generator: torch.Generator
    optimizer: torch.optim.Optimizer | None
    scheduler: Any | None
    best: dict[str, Any] | None
    step: int
    validations_since_best: int
    stopped_early: bool
    _last_ckpt: tuple[Path, int] | None
    _saved_steps: int | None
    _progress_hooks: list[Callable[[float], Any]]
    _wall_offset: float
    _train_seconds: float
    _consensus_seconds: float

    def _fail(self, step: int, what: str, value: float) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def _prepare_dir(self) -> dict[str, Any] | None:
        """Check and create the run directory (rank 0 writes; every rank reads the checkpoint)."""
        ctx = self.distributed

        def mismatch(saved: int) -> str:
            if not ctx.enabled:
                return (
                    f"{self.run_dir} was trained with {saved} processes; resume it with torchrun "
                    f"--nproc-per-node {saved} (each rank's task stream is in the checkpoint)."
                )
            return (
                f"{self.run_dir} was trained with {saved} process(es) and is resumed with {ctx.world_size}; "
                f"each rank's task stream is in the checkpoint, so resume with torchrun --nproc-per-node "
                f"{saved} (or start a new run in another --out directory)."
            )

        return prepare_run(ctx, self._prepare_dir_here, self.resume, mismatch)

    def _prepare_dir_here(self, write: bool) -> dict[str, Any] | None:
        ckpt = None
        if self.resume:
            ckpt, path = self.checkpoints.load_latest()
            check_resume_compatible(ExperimentConfig.from_dict(ckpt["config"]), self.config)
            if ckpt["step"] > self.config.steps:
                raise ValueError(
                    f"the checkpoint {path} is at step {ckpt['step']}, past --steps {self.config.steps}; "
                    f"pass --steps >= {ckpt['step']}."
                )
            self._last_ckpt = (path, ckpt["step"])
            self._saved_steps = int(ckpt["config"].get("steps", self.config.steps))
            if not write:
                return ckpt
        elif self.checkpoints.exists():
            if not self.overwrite:
                raise ValueError(
                    f"{self.run_dir} already holds a run's checkpoints; pass --resume to continue it, "
                    "--overwrite to replace it, or choose another --out directory."
                )
            clear_checkpoints(self.checkpoints)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config.save(self.run_dir / CONFIG_FILE)
        return ckpt

    def _restore_checkpoint(self, ckpt: dict[str, Any], algo: torch.nn.Module) -> None:
        """Load the resumed checkpoint into ``algo``, the optimizer, the scheduler, the task generator
        and the run's counters (step, best score, times, validations since the best)."""
        assert self.optimizer is not None
        cfg = self.config
        try:
            algo.load_state_dict(ckpt["algorithm"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scheduler is not None and ckpt.get("scheduler") is not None:
                self.scheduler.load_state_dict(ckpt["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"the checkpoint in {self.run_dir} does not fit this algorithm/optimizer ({exc}); "
                "resume with the config the run was started with."
            ) from exc
        rank_rng = ckpt.get("extra", {}).get("rank_rng")
        restore_rng_state(rank_rng[self.distributed.rank] if self.distributed.enabled else ckpt["rng"], self.generator)
        self.step = int(ckpt["step"])
        self.best = ckpt.get("best")
        extra = ckpt.get("extra", {})
        self._wall_offset = float(extra.get("wall_time", 0.0))
        self._train_seconds = float(extra.get("train_seconds", 0.0))
        self._consensus_seconds = self._train_seconds
        self.validations_since_best = int(extra.get("validations_since_best", 0))
        if self._progress_hooks and self._saved_steps is not None and self._saved_steps != cfg.steps:
            names = sorted({type(getattr(h, "__self__", h)).__name__ for h in self._progress_hooks})
            warnings.warn(
                f"{', '.join(names)} define(s) set_training_progress (step / steps); where that "
                f"drives a schedule (e.g. a DropBlock ramp), resuming with --steps {cfg.steps} "
                f"instead of {self._saved_steps} changes it from here on, so this run will not "
                "equal an uninterrupted one of either length.",
                stacklevel=3,  # the caller of Trainer.setup, as before this helper
            )

    def save_checkpoint(self, step: int, is_best: bool, wall: float) -> Path:
        """Write ``last.pt`` (and ``best.pt``); distributed: every rank takes part (its task
        generator's state is gathered), rank 0 writes."""
        assert self.experiment is not None and self.optimizer is not None
        self.flush()
        algo = self.experiment.algorithm
        if not _all_finite(algo):
            self._fail(step, "parameters", float("nan"))
        ctx = self.distributed
        extra: dict[str, Any] = {
            "wall_time": wall,
            "train_seconds": self._consensus_seconds,
            "validations_since_best": self.validations_since_best,
            "stopped_early": self.stopped_early,
            "world_size": ctx.world_size,
        }
        if ctx.enabled:  # every rank's RNGs (task stream, torch, NumPy, Python), in rank order
            extra["rank_rng"] = ctx.gather_objects(capture_rng_state(self.generator))
        path = self.checkpoints.last
        if ctx.is_main:
            payload = make_payload(
                algorithm=algo,
                optimizer=self.optimizer,
                step=step,
                config=self.config.to_dict(),
                task_generator=self.generator,
                scheduler=self.scheduler,
                best=self.best,
                extra=extra,
                build=self.experiment.record,
            )
            path = self.checkpoints.save(payload, is_best=is_best)
        ctx.barrier()  # no rank runs ahead of a checkpoint it could be resumed from
        self._last_ckpt = (path, step)
        return path
