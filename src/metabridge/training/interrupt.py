"""Ctrl-C and SIGTERM during training: finish the step in flight, checkpoint it, then stop.

:class:`InterruptGuard` installs handlers for SIGINT and SIGTERM for the duration of a
run only (the previous handlers come back when it ends, so a library call leaves no
process-wide trace) and only in the main thread (Python delivers signals there; from
another thread the guard is a no-op and a signal acts as it always does). The first
signal only sets :attr:`InterruptGuard.requested`: the training loop reads it between
steps, so an update is never cut in half, writes a checkpoint of the last completed
step and raises :class:`TrainingInterrupted`. A second signal abandons the step in
flight at once (``KeyboardInterrupt``); the checkpoint on disk is then the previous
one, still whole (checkpoints are written atomically). A signal the process ignores
(``SIG_IGN``, e.g. SIGINT of a background job) stays ignored.

:func:`resume_command` is the command line that continues an interrupted run from the
metabridge CLI; the CLI and the trainers print it.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

__all__ = ["InterruptGuard", "TrainingInterrupted", "cli_launcher", "resume_command"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT/SIGTERM after checkpointing its last completed step.

    A ``KeyboardInterrupt``, so code that handles Ctrl-C keeps working; ``step`` is the
    last completed step, ``checkpoint`` the file that holds it and ``resume`` what
    continues the run (a command line, or the Python call).
    """

    def __init__(self, step: int, checkpoint: Path | None, resume: str, signum: int = signal.SIGINT) -> None:
        self.step, self.checkpoint, self.resume, self.signum = step, checkpoint, resume, signum
        name = signal.Signals(signum).name
        where = f"saved in {checkpoint}" if checkpoint is not None else "no checkpoint on this process"
        super().__init__(f"{name}: training stopped after step {step}, {where}; resume with: {resume}")

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (e.g. across worker processes)
        return type(self), (self.step, self.checkpoint, self.resume, self.signum)


class InterruptGuard:
    """Context manager: the first SIGINT/SIGTERM sets :attr:`requested`; a second raises
    ``KeyboardInterrupt``. ``enabled=False`` (or use outside the main thread) installs nothing."""

    def __init__(self, enabled: bool = True, announce: bool = True) -> None:
        self.enabled, self.announce = enabled, announce
        #: the signal received (``None``: none yet)
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:  # asked twice: abandon the step in flight
            raise KeyboardInterrupt
        self.requested = signum
        if self.announce:
            print(
                f"\n{signal.Signals(signum).name}: finishing the current step to checkpoint it "
                "(send it again to stop at once)",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> InterruptGuard:
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return self
        for sig in _SIGNALS:
            previous = signal.getsignal(sig)
            if previous is signal.SIG_IGN or previous is None:  # ignored (or set outside Python): leave it
                continue
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


def cli_launcher(world_size: int = 1) -> str:
    """How the metabridge CLI is started: ``metabridge``, or the torchrun line of ``world_size`` processes."""
    return f"torchrun --nproc-per-node {world_size} -m metabridge" if world_size > 1 else "metabridge"


def _from_cli(argv: Sequence[str]) -> bool:
    if not argv:
        return False
    program = Path(argv[0])
    return program.name == "metabridge" or (program.name == "__main__.py" and program.parent.name == "metabridge")


def resume_command(
    world_size: int = 1, argv: Sequence[str] | None = None, fixed: Sequence[str] | None = None
) -> str | None:
    """The CLI command that continues this process's run, or ``None`` when the process is not
    the metabridge CLI (then a trainer names its Python call instead).

    ``fixed``: the arguments after the launcher (e.g. ``["train", "--resume", "--out", dir]``);
    without it the process's own arguments are repeated with ``--overwrite`` dropped and
    ``--resume`` added, which continues a run whose command rebuilds its config from them.
    """
    argv = list(sys.argv if argv is None else argv)
    if not _from_cli(argv):
        return None
    if fixed is not None:
        args = list(fixed)
    else:
        args = [a for a in argv[1:] if a not in ("--overwrite", "--resume")] + ["--resume"]
    return " ".join([cli_launcher(world_size), *(shlex.quote(os.fspath(a)) for a in args)])
