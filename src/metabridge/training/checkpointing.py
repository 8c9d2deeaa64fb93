"""The run directory every trainer shares: resume or overwrite checks, rank-0 writes, the metrics log.

A run directory holds the run's config, ``metrics.jsonl`` (:mod:`metabridge.metrics_log`)
and ``last.pt`` / ``last.prev.pt`` / ``best.pt`` (:mod:`metabridge.checkpoint`, written
atomically). Under data parallelism rank 0 prepares the directory (it may delete an
overwritten run) and writes every file; the other ranks read the checkpoint they resume
from and write nothing; an error on any rank is raised on every rank together, so no rank
is left waiting in a collective.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..checkpoint import CheckpointManager
from ..distributed import DistributedContext
from ..metrics_log import MetricsLog

__all__ = ["NoLog", "clear_checkpoints", "open_metrics_log", "prepare_run"]

Checkpoint = dict[str, Any]


class NoLog:
    """The metrics log of a rank other than 0 (or of a run without a directory): writes nothing."""

    def write(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def open_metrics_log(
    run_dir: Path | None, resume_step: int | None, distributed: DistributedContext, tensorboard: bool = False
) -> MetricsLog | NoLog:
    """Rank 0's :class:`MetricsLog` of ``run_dir`` (records after ``resume_step`` dropped); a
    :class:`NoLog` on other ranks or without a directory."""
    if run_dir is None or not distributed.is_main:
        return NoLog()
    return MetricsLog(run_dir, resume_step, tensorboard)


def clear_checkpoints(checkpoints: CheckpointManager) -> None:
    """Delete a run's checkpoint files (an ``overwrite``)."""
    for path in (checkpoints.last, checkpoints.previous, checkpoints.best):
        path.unlink(missing_ok=True)


def prepare_run(
    distributed: DistributedContext,
    prepare: Callable[[bool], Checkpoint | None],
    resume: bool,
    world_size_error: Callable[[int], str],
) -> Checkpoint | None:
    """Run ``prepare(write)`` on every rank the data-parallel way and return the checkpoint to resume from.

    ``prepare(True)`` (rank 0, or the only process) checks and creates the run directory and
    returns the checkpoint when resuming; ``prepare(False)`` (the other ranks, when resuming)
    only reads it. ``world_size_error(saved)`` is the message when the checkpoint was written
    by another number of processes than this run has.
    """
    ctx = distributed
    ckpt: Checkpoint | None = None
    if not ctx.enabled:
        ckpt = prepare(True)
    else:
        error: BaseException | None = None
        if ctx.is_main:
            try:
                ckpt = prepare(True)
            except Exception as exc:  # every rank raises together below
                error = exc
        ctx.raise_together(error)
        if not ctx.is_main and resume:
            try:
                ckpt = prepare(False)
            except Exception as exc:
                error = exc
        ctx.raise_together(error)
    if ckpt is not None:
        saved = int(ckpt.get("extra", {}).get("world_size", 1))
        ctx.raise_together(None if saved == ctx.world_size else ValueError(world_size_error(saved)))
    return ckpt
