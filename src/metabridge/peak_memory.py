"""Peak memory of a piece of work in this process.

CPU: PyTorch's CPU allocator keeps no peak statistics, so the kernel's resident high-water
mark is used: writing ``5`` to ``/proc/self/clear_refs`` resets ``VmHWM`` to the current
``VmRSS``; the work's peak is ``VmHWM`` after it minus ``VmRSS`` before it (run each
configuration in a fresh process so that earlier work's cached memory does not hide it).
CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the memory
allocated before. Without ``/proc`` (not Linux) the CPU figure is ``None``.

This is the one place that measures memory: the trainers, the multi-task runner and every
benchmark (``metabridge bench cost``, ``peers``, ``memory_steps``, ``compare``'s workers) use it.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import torch

__all__ = ["peak_memory_mib", "peak_total_mib", "reset_peak_memory", "status_kb"]


def status_kb(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_memory(device: torch.device | str) -> int | None:
    """Start measuring: returns the baseline (CUDA bytes allocated, or CPU ``VmRSS`` kB), or None."""
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return status_kb("VmRSS")


def peak_memory_mib(device: torch.device | str, baseline: int | None) -> float | None:
    """MiB of peak memory since :func:`reset_peak_memory` returned ``baseline`` (None if unmeasurable)."""
    if baseline is None:
        return None
    device = torch.device(device)
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - baseline) / 2**20
    peak = status_kb("VmHWM")
    return None if peak is None else (peak - baseline) / 1024


def peak_total_mib(device: torch.device | str) -> float | None:
    """The whole peak since :func:`reset_peak_memory` (or the process start), not a difference:
    CUDA ``max_memory_allocated``; CPU the resident high-water mark ``VmHWM`` (the peak resident
    set from ``getrusage`` where there is no ``/proc``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = status_kb("VmHWM")
    if peak is not None:
        return peak / 1024
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, kB on Linux
