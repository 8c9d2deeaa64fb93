"""The training skeleton the few-shot, multi-task and meta-RL trainers share.

A trainer keeps only its update and its evaluation, written as one ``step(i)`` callback;
:class:`TrainingLoop` drives it for ``i = start + 1 .. steps`` and owns everything
around it:

* **checkpoints**: every ``checkpoint_every`` steps, at the last step, and whenever the
  step asks (a new best validation, an early stop); the trainer's ``save(step, best)``
  writes the file (atomically, rank 0) and the loop remembers the last one;
* **budgets**: the step budget ``steps`` and an optional time budget ``max_seconds`` of
  training seconds (:meth:`TrainingLoop.is_last` tells a step that it is the final one);
* **interrupts**: SIGINT/SIGTERM (:mod:`.interrupt`) end the run between two steps: the
  loop checkpoints the last completed step (unless its checkpoint is already on disk) and
  raises :class:`~.interrupt.TrainingInterrupted`, whose message says how to resume (the
  CLI prints it; uncaught, the traceback ends with it); under data parallelism the ranks
  agree on the stop every ``interrupt_every`` steps (one small all-gather), so they stop,
  checkpoint and exit at the same step;
* **the non-finite stop**: a :class:`NonFiniteError` raised by a step is recorded in the
  metrics log (one ``{"kind": "error"}`` record) and propagates; nothing is checkpointed
  after it, so the last good checkpoint stays on disk;
* **the metrics log and the progress bar** (rank 0 only), closed however the run ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..distributed import DistributedContext
from .checkpointing import open_metrics_log
from .interrupt import InterruptGuard, TrainingInterrupted
from .progress import progress_bar

__all__ = ["NonFiniteError", "StepEnd", "TrainingLoop"]


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinite value at ``step``; the last good checkpoint is kept."""

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class StepEnd:
    """What a step tells the loop after it ran."""

    #: checkpoint this step (besides the periodic and final checkpoints)
    checkpoint: bool = False
    #: this step's checkpoint is the best so far (``best.pt``); implies ``checkpoint``
    best: bool = False
    #: end the run after this step (early stop)
    stop: bool = False


class TrainingLoop:
    """Drives ``step(i)`` from ``start + 1`` to ``steps`` with checkpoints, budgets and interrupts.

    Args:
        start: the last step already done (0 for a new run, the checkpoint's step when resuming).
        steps: the step budget (the last step to run).
        save: ``save(step, best) -> path`` writes the checkpoint of ``step``; every rank calls it
            (data-parallel trainers gather state in it); rank 0 writes. ``None``: a run
            without checkpoints (nothing is saved, an interrupt only stops it).
        resume: what continues the run after an interrupt (printed; a command line or a Python call).
        run_dir: where ``metrics.jsonl`` goes (``None``: no metrics file).
        log_from: the step whose later records an old ``metrics.jsonl`` loses (the resumed
            checkpoint's step); ``None`` starts the file afresh.
        checkpoint_every: checkpoint every this many steps (0: only at the end, on request and
            on an interrupt).
        saved: ``(path, step)`` of the checkpoint on disk at the start (when resuming).
        max_seconds, seconds: the time budget and a function returning the training seconds
            so far (the same on every rank); the run ends after the step that reaches it.
        distributed: the ranks (rank 0 logs, draws the bar and writes).
        progress, desc, unit, bar_seconds: the progress bar (``bar_seconds``: count seconds of
            the time budget rather than steps).
        tensorboard: also log TensorBoard scalars when it is installed.
        interrupts: handle SIGINT/SIGTERM (``False``: they act as they always do).
        interrupt_every: data-parallel runs agree on a stop every this many steps (each
            agreement is a collective; one process checks after every step).
    """

    def __init__(
        self,
        *,
        start: int,
        steps: int,
        save: Callable[[int, bool], Path] | None,
        resume: str,
        run_dir: Path | None = None,
        log_from: int | None = None,
        checkpoint_every: int = 0,
        saved: tuple[Path, int] | None = None,
        max_seconds: float | None = None,
        seconds: Callable[[], float] | None = None,
        distributed: DistributedContext | None = None,
        progress: bool = True,
        desc: str = "",
        unit: str = "step",
        bar_seconds: bool = False,
        tensorboard: bool = False,
        interrupts: bool = True,
        interrupt_every: int = 1,
    ) -> None:
        if max_seconds is not None and seconds is None:
            raise ValueError("a time budget (max_seconds) needs the seconds() of training so far.")
        self.start, self.steps, self.save, self.resume = start, steps, save, resume
        self.checkpoint_every, self.saved = checkpoint_every, saved
        self.max_seconds, self.seconds = max_seconds, seconds
        self.distributed = distributed if distributed is not None else DistributedContext()
        self.interrupts, self.interrupt_every = interrupts, max(int(interrupt_every), 1)
        main = self.distributed.is_main
        self.log = open_metrics_log(run_dir, log_from, self.distributed, tensorboard)
        if bar_seconds and max_seconds is not None and seconds is not None:
            self.bar = progress_bar(max_seconds, seconds(), enabled=progress and main, desc=desc, seconds=True)
        else:
            self.bar = progress_bar(steps, start, enabled=progress and main, desc=desc, unit=unit)
        self.bar_seconds = bar_seconds and max_seconds is not None
        #: the last completed step
        self.step = start

    # ------------------------------------------------------------------ budgets
    def out_of_time(self) -> bool:
        """True once the training seconds reach the time budget."""
        return self.max_seconds is not None and self.seconds is not None and self.seconds() >= self.max_seconds

    def is_last(self, step: int) -> bool:
        """True when ``step`` (just run) is the run's final one: the step budget or the time budget."""
        return step >= self.steps or self.out_of_time()

    def advance_bar(self, seconds: float = 0.0, **postfix: Any) -> None:
        """Move the bar one step (or ``seconds`` of the time budget) and show ``postfix``."""
        self.bar.update(min(seconds, self.bar.total - self.bar.n) if self.bar_seconds else 1)
        if postfix:
            self.bar.set_postfix(**postfix)

    # ------------------------------------------------------------------ the run
    def run(self, step: Callable[[int], StepEnd | None], after: Callable[[int], None] | None = None) -> int:
        """Run the steps; ``after(i)`` is called once step ``i``'s checkpoint (if any) is written.
        Returns the last completed step; raises :class:`TrainingInterrupted` on SIGINT/SIGTERM."""
        guard = InterruptGuard(self.interrupts, announce=self.distributed.is_main)
        try:
            with guard:
                self._stop_if_asked(guard)
                for i in range(self.start + 1, self.steps + 1):
                    end = step(i) or StepEnd()
                    self.step = i
                    periodic = bool(self.checkpoint_every and i % self.checkpoint_every == 0)
                    if self.save is not None and (
                        end.checkpoint or end.best or end.stop or periodic or self.is_last(i)
                    ):
                        self.saved = (self.save(i, end.best), i)
                    if after is not None:
                        after(i)
                    if end.stop or self.out_of_time() or i == self.steps:
                        break  # a signal during the final step: the run is complete anyway
                    self._stop_if_asked(guard)
        except NonFiniteError as err:
            self.log.write({"kind": "error", "step": err.step, "message": str(err)})
            raise
        finally:
            self.bar.close()
            self.log.close()
        return self.step

    def _stop_if_asked(self, guard: InterruptGuard) -> None:
        """Between steps: when a signal came (on any rank), checkpoint the last completed step and stop."""
        asked = guard.requested is not None
        if self.distributed.enabled:
            if not self.interrupts or self.step % self.interrupt_every:
                return
            asked = any(self.distributed.gather_objects(asked))
        if not asked:
            return
        if self.save is not None and (self.saved is None or self.saved[1] != self.step):
            self.saved = (self.save(self.step, False), self.step)
        signum = guard.requested if guard.requested is not None else 2
        path = self.saved[0] if self.saved is not None and self.distributed.is_main else None
        self.bar.close()
        raise TrainingInterrupted(self.step, path, self.resume, signum)
