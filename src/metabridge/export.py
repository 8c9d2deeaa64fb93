"""Trained weights as safetensors, and rebuilding a trained algorithm from a file alone.

A ``.safetensors`` file holds only tensors (nothing is unpickled when it is read) plus
string metadata; metabridge stores the algorithm's construction record
(:func:`metabridge.experiment.algorithm_record`: algorithm, backbone, data sizes,
hyperparameters, plugins) in that metadata, so :func:`load_pretrained` needs neither
the training data nor the run directory::

    metabridge export runs/maml --out maml.safetensors
    algo = metabridge.load_pretrained("maml.safetensors")
    predictor = algo.adapt_support(support_x, support_y)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .algorithms.base import MetaAlgorithm
from .atomic import atomic_write_bytes

RECORD_KEY = "metabridge_build"


def save_weights(
    state: dict[str, Tensor] | torch.nn.Module,
    path: str | os.PathLike,
    record: dict[str, Any] | None = None,
    **metadata: Any,
) -> Path:
    """Write ``state`` (a ``state_dict`` or a module) as safetensors at ``path`` (atomically).

    Args:
        state: the tensors; a module's ``state_dict()`` is taken.
        path: the file to write.
        record: the construction record that :func:`load_pretrained` rebuilds from.
        metadata: further JSON-serialisable values stored beside it (e.g. ``step``).
    """
    from safetensors.torch import save

    tensors = state.state_dict() if isinstance(state, torch.nn.Module) else state
    # safetensors refuses tensors that share memory: store independent contiguous copies
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    if record is not None:
        meta[RECORD_KEY] = json.dumps(record)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save(flat, metadata=meta))
    return path


def load_weights(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, metadata)`` of a safetensors file (metadata values JSON-decoded)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}; write one with metabridge export RUN --out {path}.")
    data = path.read_bytes()
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable safetensors file ({exc}).") from None
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    meta = {k: json.loads(v) for k, v in header.get("__metadata__", {}).items()}
    return tensors, meta


def load_pretrained(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> MetaAlgorithm:
    """The trained algorithm stored in ``path`` (a ``.safetensors`` file from
    :func:`save_weights` / ``metabridge export``, or a metabridge ``.pt`` checkpoint)."""
    from .experiment import build_from_record

    path = Path(path)
    if path.suffix == ".pt" or path.is_dir():
        from .checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        tensors, record = ckpt["algorithm"], ckpt.get("build")
    else:
        tensors, meta = load_weights(path)
        record = meta.get(RECORD_KEY)
    if record is None:
        raise ValueError(
            f"{path} has no construction record; build the algorithm yourself and call "
            "load_state_dict on the tensors of metabridge.export.load_weights(path)."
        )
    algorithm = build_from_record(record)
    try:
        algorithm.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit the algorithm its record describes ({exc}).") from None
    return algorithm.to(map_location)
