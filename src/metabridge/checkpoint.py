"""Atomic checkpoints with everything an exact resume needs.

A checkpoint holds the algorithm's ``state_dict``, the optimizer (and LR scheduler)
state, every random number generator that training touches (torch CPU, CUDA if
present, the task generator, Python's ``random``, NumPy's legacy global RNG), the
step counter, the best validation score so far and the run's config.

Writing never leaves a half-written file under a checkpoint's name: the payload
goes to a temporary file in the same directory, is flushed and fsync'ed, then
``os.replace``-d over the target (atomic on POSIX and Windows), and the directory
is fsync'ed. A run directory keeps

* ``last.pt``       the newest checkpoint;
* ``last.prev.pt``  the one before it (a hard link made before ``last.pt`` is
  replaced), so even a checkpoint that was written but is later found corrupt
  does not lose the run;
* ``best.pt``       the checkpoint with the best validation score.

Checkpoints contain only tensors and plain Python values, so they load with
``torch.load(weights_only=True)``: opening one never executes pickled code.
"""

from __future__ import annotations

import os
import random
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from .atomic import atomic_open

FORMAT_VERSION = 1
LAST = "last.pt"
PREVIOUS = "last.prev.pt"
BEST = "best.pt"
_REQUIRED = ("format_version", "step", "algorithm", "optimizer", "rng", "config")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint exists where one was expected."""


# --------------------------------------------------------------------------- RNG
def capture_rng_state(task_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Snapshot every RNG a training step may draw from."""
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "torch_cpu": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "task_generator": None if task_generator is None else task_generator.get_state(),
    }
    return state


def restore_rng_state(state: dict[str, Any], task_generator: torch.Generator | None = None) -> None:
    """Put every RNG back to a snapshot from :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch_cpu"])
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    if state.get("cuda") is not None and torch.cuda.is_available():
        saved = state["cuda"]
        if len(saved) != torch.cuda.device_count():
            raise CheckpointError(
                f"the checkpoint saved {len(saved)} CUDA RNG state(s) but {torch.cuda.device_count()} GPU(s) are "
                "visible; resume with the same CUDA_VISIBLE_DEVICES for an exact resume."
            )
        torch.cuda.set_rng_state_all(saved)
    if task_generator is not None:
        if state.get("task_generator") is None:
            raise CheckpointError("the checkpoint has no task-generator state; it cannot be resumed exactly.")
        task_generator.set_state(state["task_generator"])


def _as_tuple(x: Any) -> Any:
    """Python's ``random.setstate`` needs tuples where serialization may give lists."""
    if isinstance(x, (list, tuple)):
        return tuple(_as_tuple(v) for v in x)
    return x


@contextmanager
def preserved_rng(task_generator: torch.Generator | None = None) -> Iterator[None]:
    """Run a block (e.g. validation) without changing any RNG that training uses."""
    state = capture_rng_state(task_generator)
    try:
        yield
    finally:
        restore_rng_state(state, task_generator)


# ------------------------------------------------------------------- atomic I/O
def _write_payload(payload: dict[str, Any], f: IO[bytes]) -> None:
    """Serialize ``payload`` into an open binary file (separate so tests can make it fail)."""
    torch.save(payload, f)


def atomic_save(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` to ``path`` so that ``path`` is always either the old or the new file
    (:func:`metabridge.atomic.atomic_open`: temp file, fsync, rename, directory fsync).

    On any failure the temporary file is removed and the previous ``path`` (if any)
    is untouched; the error is re-raised as :class:`CheckpointError`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_open(path, "wb") as f:
            _write_payload(payload, f)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise CheckpointError(f"could not write checkpoint {path}: {exc}; the previous file is intact.") from exc
    return path


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a snapshot of ``src``, replacing ``dst`` atomically."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- checkpoints
def make_payload(
    *,
    algorithm: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    config: dict[str, Any],
    task_generator: torch.Generator | None,
    scheduler: Any | None = None,
    best: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    build: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to resume a run at ``step`` (all tensors moved to CPU on save).

    ``build`` is the algorithm's construction record
    (:func:`metabridge.experiment.algorithm_record`): with it the algorithm is rebuilt
    from the checkpoint alone, without loading any dataset."""
    return {
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "algorithm": algorithm.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "rng": capture_rng_state(task_generator),
        "config": config,
        "best": best,
        "extra": extra or {},
        "build": build,
        "time": time.time(),
    }


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by this module, with a clear error if it is missing or damaged."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"no checkpoint at {path}; train first (metabridge train --out {path.parent}) or pass the path of a "
            f"{LAST} / {BEST} file."
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip/pickle/EOF errors all mean the same thing here
        # torch's own text for these is many lines long (and asks to file a torch issue):
        # one line naming the file, and what to use instead, is what a user needs.
        hint = ""
        for other in (path.with_name(PREVIOUS), path.with_name(BEST)):
            if other != path and other.is_file():
                hint = f"; {other.name} in the same directory may still be good"
                break
        raise CheckpointError(
            f"{path} is corrupt or truncated (torch.load raised {type(exc).__name__}){hint}."
        ) from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in _REQUIRED):
        missing = [k for k in _REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
        raise CheckpointError(f"{path} is not a metabridge checkpoint (missing {', '.join(missing)}).")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format_version']}, newer than this metabridge "
            f"({FORMAT_VERSION}); upgrade metabridge to read it."
        )
    return ckpt


class CheckpointManager:
    """The ``last`` / ``last.prev`` / ``best`` files of one run directory."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)

    @property
    def last(self) -> Path:
        return self.run_dir / LAST

    @property
    def previous(self) -> Path:
        return self.run_dir / PREVIOUS

    @property
    def best(self) -> Path:
        return self.run_dir / BEST

    def exists(self) -> bool:
        """True when the directory holds any checkpoint."""
        return any(p.is_file() for p in (self.last, self.previous, self.best))

    def save(self, payload: dict[str, Any], *, is_best: bool = False) -> Path:
        """Write ``payload`` as ``last.pt`` (keeping the old one as ``last.prev.pt``); also
        as ``best.pt`` when ``is_best``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.last.is_file():
            _link_or_copy(self.last, self.previous)
        atomic_save(payload, self.last)
        if is_best:
            _link_or_copy(self.last, self.best)
        return self.last

    def load_latest(self, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path]:
        """The newest readable checkpoint: ``last.pt``, or ``last.prev.pt`` if ``last.pt`` is damaged
        (a one-line warning names the damaged file and the one used instead)."""
        if not self.last.is_file() and not self.previous.is_file():
            raise CheckpointNotFoundError(
                f"no checkpoint in {self.run_dir} to resume from; start the run without --resume."
            )
        return self.load_first((self.last, self.previous), map_location)

    def load_first(
        self, candidates: tuple[Path, ...], map_location: str | torch.device = "cpu"
    ) -> tuple[dict[str, Any], Path]:
        """The first readable checkpoint of ``candidates`` (missing ones skipped); warns in one
        line for each damaged file passed over, raises :class:`CheckpointError` if none is usable."""
        errors: list[str] = []
        for path in candidates:
            if not path.is_file():
                continue
            try:
                ckpt = load_checkpoint(path, map_location)
            except CheckpointError as exc:
                errors.append(str(exc).split(";")[0].rstrip("."))
                continue
            if errors:
                warnings.warn(f"{'; '.join(errors)}; using {path} (step {ckpt['step']}) instead.", stacklevel=3)
            return ckpt, path
        if not errors:
            raise CheckpointNotFoundError(f"no checkpoint among {', '.join(str(p) for p in candidates)}.")
        raise CheckpointError(
            f"{'; '.join(errors)}; no other checkpoint of {self.run_dir} is readable: "
            "start the run again (metabridge train --overwrite)."
        )

    def load_for_eval(
        self, which: str = "auto", map_location: str | torch.device = "cpu"
    ) -> tuple[dict[str, Any], Path]:
        """The checkpoint ``metabridge eval`` scores: ``best`` (falling back to ``last`` and
        ``last.prev`` when damaged), ``last`` (falling back to ``last.prev``, then ``best``), or
        ``auto`` (best when the run validated, else last)."""
        order = {
            "best": (self.best, self.last, self.previous),
            "last": (self.last, self.previous, self.best),
            "auto": (self.best, self.last, self.previous),
        }
        if which not in order:
            raise ValueError(f"--which must be auto, best or last (got {which!r}).")
        if which == "best" and not self.best.is_file():
            raise CheckpointNotFoundError(f"{self.best} does not exist (the run never validated); pass --which last.")
        return self.load_first(order[which], map_location)
