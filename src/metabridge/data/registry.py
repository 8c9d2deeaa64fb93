"""One entry point for every few-shot dataset: ``load_dataset(name, root, split, download)``.

Loaders are imported lazily (Pillow is only needed for Omniglot and tiered-ImageNet).
Each dataset module also exposes ``SPEC``, its registry entry (URLs, file names,
checksums, expected counts); :func:`dataset_spec` returns it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metabridge.data.class_dataset import ClassDataset

# name -> (module, loader function). Every loader takes (root, split, download=..., **kw).
_LOADERS: dict[str, tuple[str, str]] = {
    "omniglot": ("metabridge.data.omniglot", "load_omniglot"),
    "mini_imagenet": ("metabridge.data.mini_imagenet", "load_mini_imagenet"),
    "tiered_imagenet": ("metabridge.data.tiered_imagenet", "load_tiered_imagenet"),
    "cifar_fs": ("metabridge.data.cifar_fs", "load_cifar_fs"),
    "fc100": ("metabridge.data.fc100", "load_fc100"),
    # the offline real-glyph benchmark: rendered from installed fonts, never downloaded
    "glyphs": ("metabridge.data.registry", "_load_glyphs"),
}
_CUSTOM: dict[str, Callable[..., ClassDataset]] = {}

ALIASES = {"miniimagenet": "mini_imagenet", "mini-imagenet": "mini_imagenet", "tieredimagenet": "tiered_imagenet",
           "tiered-imagenet": "tiered_imagenet", "cifar-fs": "cifar_fs", "cifarfs": "cifar_fs"}


def register_dataset(name: str, loader: Callable[..., ClassDataset]) -> None:
    """Add (or replace) a loader callable as ``loader(root, split, download=False, **kw)``."""
    _CUSTOM[name] = loader


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(set(_LOADERS) | set(_CUSTOM))


def _canonical(name: str) -> str:
    key = name.lower()
    key = ALIASES.get(key, key)
    if key not in _LOADERS and key not in _CUSTOM:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}.")
    return key


def get_loader(name: str) -> Callable[..., ClassDataset]:
    """The loader function of ``name``."""
    key = _canonical(name)
    if key in _CUSTOM:
        return _CUSTOM[key]
    module, fn = _LOADERS[key]
    return getattr(importlib.import_module(module), fn)


def dataset_spec(name: str) -> Any:
    """The registry entry (``SPEC``) of a built-in dataset: files, URLs, checksums, counts."""
    key = _canonical(name)
    return importlib.import_module(_LOADERS[key][0]).SPEC


def _load_glyphs(root: str | Path, split: str, download: bool = False, **kw: Any) -> ClassDataset:
    """``load_glyphs`` behind the common loader signature: glyphs are rendered from the
    fonts on this machine into their own cache, so ``root`` and ``download`` do not apply."""
    from .glyphs import load_glyphs

    return load_glyphs(split, **kw)


def load_dataset(name: str, root: str | Path, split: str, download: bool = False, **kw: Any) -> ClassDataset:
    """Load ``split`` of dataset ``name`` under ``root`` (downloading it if ``download``)."""
    return get_loader(name)(root, split, download=download, **kw)
