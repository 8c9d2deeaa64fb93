"""Pick the torch device a run uses, with a clear error when it is unavailable."""

from __future__ import annotations

import torch


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
