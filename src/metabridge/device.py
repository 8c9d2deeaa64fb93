"""Pick the torch device a run uses, with a clear error when it is unavailable, and
tune the CPU memory allocator for training."""

from __future__ import annotations

import ctypes
import os
import sys

import torch

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters from glibc's malloc.h
_allocator_tuned = False


def tune_cpu_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of handing it back to the OS.

    glibc serves every allocation above 32 MiB with its own ``mmap`` and unmaps it on
    free, so each batch of Conv-4 activations (hundreds of MiB) is zero-filled page by
    page by the kernel, on every step. Measured on the 2-core development machine
    (glyphs, meta-batch 16, 5-way 1-shot 10-query): one MTL step 1.16 s -> 0.73 s,
    100 ProtoNet test episodes 3.6 s -> 1.9 s, system time 3.7 s -> 0.9 s. Freed memory
    is reused instead, so the resident set stays at its peak. Linux/glibc only; set
    ``METABRIDGE_MALLOC_TUNING=0`` to leave the allocator alone. Returns whether applied.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if os.environ.get("METABRIDGE_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    _allocator_tuned = ok
    return ok


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
