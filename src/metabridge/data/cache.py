"""Decoded-array caches: a ClassDataset saved once as a ``.pt`` file, memory-mapped after.

Decoding thousands of PNGs or a 160 MB pickle is done once; the uint8 result is
written next to the raw data with ``torch.save`` through :func:`metabridge.atomic.atomic_open`
(so a killed run never leaves a truncated cache), and later calls open it with
``torch.load(mmap=True)``: pages are read on demand and shared between processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from metabridge.atomic import atomic_open
from metabridge.data.class_dataset import ClassDataset

CACHE_VERSION = 1


def save_dataset(ds: ClassDataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": CACHE_VERSION,
        "images": ds.images.contiguous(),
        "labels": ds.labels.contiguous(),
        "class_names": list(ds.class_names),
        "groups": None if ds.groups is None else list(ds.groups),
        "name": ds.name,
    }
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)
    return path


def load_versioned(path: str | os.PathLike, version: int, *, mmap: bool = True) -> dict | None:
    """The dict saved at ``path`` by ``torch.save``, or ``None`` if the file is absent, unreadable,
    not a dict, or written by another ``version`` of its writer (a damaged or foreign cache is
    rebuilt, never trusted)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        d = torch.load(path, mmap=mmap, weights_only=True, map_location="cpu")
    except Exception:  # a foreign or damaged cache is rebuilt, never trusted
        return None
    if not isinstance(d, dict) or d.get("version") != version:
        return None
    return d


def load_dataset_cache(path: str | os.PathLike, *, mmap: bool = True) -> ClassDataset | None:
    """The dataset stored at ``path``, or ``None`` if absent, unreadable or from another version."""
    d = load_versioned(path, CACHE_VERSION, mmap=mmap)
    if d is None:
        return None
    return ClassDataset(
        images=d["images"],
        labels=d["labels"],
        class_names=list(d["class_names"]),
        groups=None if d["groups"] is None else list(d["groups"]),
        name=d["name"],
    )


def cached(path: str | os.PathLike, build: Callable[[], ClassDataset]) -> ClassDataset:
    """Load the cache at ``path``; if missing, ``build()`` the dataset, save it, and map it back."""
    ds = load_dataset_cache(path)
    if ds is not None:
        return ds
    save_dataset(build(), path)
    ds = load_dataset_cache(path)
    assert ds is not None
    return ds


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Resize uint8 ``[N, C, H, W]`` images to ``size x size`` (antialiased bilinear), in chunks."""
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, images.shape[0], chunk):
        x = images[i : i + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[i : i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out
