"""Pick the torch device a run uses, with a clear error when it is unavailable, and
(opt-in) tune the CPU memory allocator for training.

No library call changes the allocator: a process that owns itself (the command line,
compare's worker processes) calls :func:`tune_cpu_allocator`; library code that wants
the tuning for a stretch of work uses the context manager :func:`cpu_allocator_tuning`.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters from glibc's malloc.h
#: glibc's documented defaults (mallopt(3): DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX)
GLIBC_DEFAULT_TRIM_THRESHOLD = 128 * 1024
GLIBC_DEFAULT_MMAP_MAX = 65536
_TUNED_TRIM_THRESHOLD = 2**31 - 1

_lock = threading.Lock()
_process_tuned = False  # tune_cpu_allocator() ran: the process keeps the tuning for good
_context_depth = 0  # open cpu_allocator_tuning() blocks
_context_tuned = False  # the outermost block applied the tuning (and restores it)


def _mallopt(*settings: tuple[int, int]) -> bool:
    """Apply ``(param, value)`` pairs with glibc's ``mallopt``; False where it is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(param, value) == 1 for param, value in settings)
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False


def _wanted() -> bool:
    return os.environ.get("METABRIDGE_MALLOC_TUNING", "1") != "0"


def _apply() -> bool:
    return _wanted() and _mallopt((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TUNED_TRIM_THRESHOLD))


def tune_cpu_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of handing it back to the OS, for good.

    For a process that owns itself (the ``metabridge`` command line, compare's worker
    processes); library code uses :func:`cpu_allocator_tuning` instead. glibc serves large
    allocations with their own ``mmap`` (above its mmap threshold: 128 KiB, growing
    dynamically up to 32 MiB) and unmaps them on free, so each batch of Conv-4 activations
    (hundreds of MiB) is zero-filled page by page by the kernel, on every step. This sets
    ``M_MMAP_MAX`` to 0 (no mmap-served allocations) and ``M_TRIM_THRESHOLD`` to 2 GiB (no
    trimming of the heap top). Training steps and test episodes then skip the kernel's page
    zeroing and most of their system time (experiments/speed_vs_peers times every library
    with and without this tuning). Freed memory is reused instead, so the resident set
    stays at its peak. Linux/glibc only; ``METABRIDGE_MALLOC_TUNING=0``
    leaves the allocator alone. Returns whether the tuning is in force.
    """
    global _process_tuned
    with _lock:
        if not _process_tuned:
            _process_tuned = _context_tuned or _apply()
        return _process_tuned


@contextmanager
def cpu_allocator_tuning() -> Iterator[bool]:
    """The allocator tuning of :func:`tune_cpu_allocator` for the duration of a ``with`` block.

    Yields whether the tuning is in force. Blocks nest (the outermost one applies and
    restores) and are thread-safe. On exit ``M_MMAP_MAX`` and ``M_TRIM_THRESHOLD`` are set
    back to glibc's documented defaults (65536 and 128 KiB): glibc has no call that
    reports the values in force before, so a value the process had set itself (with
    ``mallopt`` or ``MALLOC_*_`` environment variables) is not restored. glibc's dynamic
    mmap threshold is not re-enabled: setting either parameter switches it off for the
    rest of the process, and no glibc call switches it back on. So after the block the
    mmap threshold stays at the value it had on entry (128 KiB unless freed large blocks
    had already raised it) instead of growing with later large frees, and the trim
    threshold stays at 128 KiB instead of following it (glibc sets it to twice the
    threshold while adjusting dynamically). Memory the heap kept during the block goes
    back to the OS when a later free (of a block of 64 KiB or more) finds more than
    128 KiB free at the top of the heap.
    Inside a process that called :func:`tune_cpu_allocator` the block changes nothing.
    """
    global _context_depth, _context_tuned
    with _lock:
        if _context_depth == 0 and not _process_tuned:
            _context_tuned = _apply()
        _context_depth += 1
        active = _process_tuned or _context_tuned
    try:
        yield active
    finally:
        with _lock:
            _context_depth -= 1
            if _context_depth == 0 and _context_tuned:
                if not _process_tuned:
                    _mallopt((_M_MMAP_MAX, GLIBC_DEFAULT_MMAP_MAX), (_M_TRIM_THRESHOLD, GLIBC_DEFAULT_TRIM_THRESHOLD))
                _context_tuned = False


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` as given.

    Raises ``ValueError`` when the requested accelerator is not usable here.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N.") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available here; use --device cpu or auto.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist; "
                f"use cuda:0..cuda:{torch.cuda.device_count() - 1}."
            )
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' requested but MPS is not available here; use --device cpu or auto.")
    return device


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads (``None``: unchanged); the previous count
    is restored after it, so a command's ``--threads`` leaves the process as it found it."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1 (got {threads}).")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
