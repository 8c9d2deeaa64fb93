"""The run directory of :func:`~metabridge.multitask.trainer.train_multitask`: preparing it,
checkpointing a run into it and putting a run back to one of its checkpoints.

:class:`CheckpointedRun` is the part of the trainer's run state that deals with the
directory; the run class (:class:`metabridge.multitask.trainer._MultiTaskRun`) inherits it
and supplies the attributes it reads and restores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text
from ..checkpoint import CheckpointError, CheckpointManager, make_payload, restore_rng_state
from ..distributed import DistributedContext
from ..training import clear_checkpoints, prepare_run
from .models.base import MultiTaskModel
from .weighting.base import Weighting

__all__ = ["CONFIG_FILE", "RESUMABLE", "CheckpointedRun"]

CONFIG_FILE = "config.json"
#: settings a resumed run may change (the others would make it a different run)
RESUMABLE = frozenset({"steps"})


class CheckpointedRun:
    """Run-directory handling of a multi-task run: :meth:`open_dir`, :meth:`save`, :meth:`restore`."""

    model: MultiTaskModel
    weighting: Weighting
    optimizer: torch.optim.Optimizer
    ctx: DistributedContext
    settings: dict[str, Any]
    generator: torch.Generator
    order: torch.Tensor
    best: tuple[float, int, list[float] | None, list[float] | None]
    curve: list[dict[str, Any]]
    weights_log: list[list[float]]
    losses_log: list[list[float]]
    train_seconds: float
    timed_steps: int
    comm_seconds: float
    checkpoints: CheckpointManager | None

    def open_dir(self, run_dir: Path, resume: bool, overwrite: bool) -> tuple[int, tuple[Path, int] | None]:
        """Prepare ``run_dir`` (rank 0 writes) and restore its checkpoint when resuming;
        returns the step to start from and the checkpoint on disk."""
        self.checkpoints = checkpoints = CheckpointManager(run_dir)

        def prepare(write: bool) -> dict[str, Any] | None:
            ckpt = None
            if resume:
                ckpt, _ = checkpoints.load_latest()
                changed = sorted(
                    k for k, v in self.settings.items() if k not in RESUMABLE and ckpt["config"].get(k) != v
                )
                if changed:
                    raise CheckpointError(
                        f"cannot resume {run_dir}: {', '.join(changed)} differ from the run's "
                        f"{CONFIG_FILE} (only steps may change); start a new run in another "
                        "run_dir, or pass overwrite=True."
                    )
            elif checkpoints.exists():
                if not overwrite:
                    raise FileExistsError(
                        f"{run_dir} already holds a run; pass resume=True (--resume) to continue "
                        "it or overwrite=True (--overwrite) to start again."
                    )
                clear_checkpoints(checkpoints)
            if write:
                run_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(run_dir / CONFIG_FILE, json.dumps(self.settings, indent=2) + "\n")
            return ckpt

        ckpt = prepare_run(
            self.ctx,
            prepare,
            resume,
            lambda saved: (
                f"{run_dir} was trained with {saved} process(es) and is resumed with {self.ctx.world_size}; resume it "
                "with the same number of processes."
            ),
        )
        if ckpt is None:
            return 0, None
        self.restore(ckpt)
        return int(ckpt["step"]), (checkpoints.last, int(ckpt["step"]))

    def save(self, i: int, best: bool = False) -> Path:
        """Checkpoint the state after step ``i`` (rank 0 writes)."""
        assert self.checkpoints is not None
        path = self.checkpoints.last
        if self.ctx.is_main:
            extra = {
                "weighting": self.weighting.state_dict(),
                "order": self.order,
                "best": list(self.best),
                "curve": self.curve,
                "weights_log": self.weights_log,
                "losses_log": self.losses_log,
                "timing": [self.train_seconds, self.timed_steps, self.comm_seconds],
                "world_size": self.ctx.world_size,
                "kind": "multi-task",
            }
            payload = make_payload(
                algorithm=self.model,
                optimizer=self.optimizer,
                step=i,
                config=self.settings,
                task_generator=self.generator,
                extra=extra,
            )
            path = self.checkpoints.save(payload)
        self.ctx.barrier()  # no rank runs ahead of a checkpoint it could be resumed from
        return path

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Put the run back to a checkpoint of :meth:`save` (every global RNG included)."""
        extra = ckpt["extra"]
        try:
            self.model.load_state_dict(ckpt["algorithm"])
            self.weighting.load_state_dict(extra["weighting"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"the checkpoint does not fit this model or method ({exc}); resume with the "
                "settings the run was started with."
            ) from None
        restore_rng_state(ckpt["rng"], self.generator)
        self.order = extra["order"]
        score, step, val, test = extra["best"]
        self.best = (float(score), int(step), val, test)
        self.curve, self.weights_log, self.losses_log = extra["curve"], extra["weights_log"], extra["losses_log"]
        seconds, timed, comm = extra["timing"]
        self.train_seconds, self.timed_steps, self.comm_seconds = float(seconds), int(timed), float(comm)
