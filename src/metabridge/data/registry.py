"""One entry point for every few-shot dataset: ``load_dataset(name, root, split, download)``.

``name`` is a built-in dataset (Omniglot, mini-/tiered-ImageNet, CIFAR-FS, FC100,
glyphs), one registered with :func:`register_dataset`, or a path to one's own images
(a folder of class folders or an ``.npz``; see :mod:`metabridge.data.image_folder`).
A registered or built-in name wins over a folder of the same name in the working
directory; write ``./name`` to mean the folder.

Loaders are imported lazily (Pillow is only needed for Omniglot, tiered-ImageNet and
image folders). Each built-in dataset module also exposes ``SPEC``, its registry entry
(URLs, file names, checksums, expected counts); :func:`dataset_spec` returns it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

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

Loader = TypeVar("Loader", bound=Callable[..., ClassDataset])


def _key(name: str) -> str:
    key = name.lower()
    return ALIASES.get(key, key)


@overload
def register_dataset(name: str) -> Callable[[Loader], Loader]: ...


@overload
def register_dataset(name: str, loader: Loader) -> Loader: ...


def register_dataset(name: str, loader: Loader | None = None) -> Loader | Callable[[Loader], Loader]:
    """Add (or replace) the dataset ``name``, loaded as ``loader(root, split, download=False, **kw)``.

    Names are case-insensitive; a registered loader takes precedence over a built-in
    of the same name. Call it directly, ``register_dataset("mine", load_mine)``, or use
    it as a decorator, ``@register_dataset("mine")``; either way the loader is returned.
    Registration lives in this process: worker processes must import the module that
    registers it.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"register_dataset: the name must be a non-empty string (got {name!r}).")

    def add(fn: Loader) -> Loader:
        if not callable(fn):
            raise TypeError(f"register_dataset({name!r}): the loader must be callable (got {type(fn).__name__}).")
        _CUSTOM[_key(name)] = fn
        return fn

    return add if loader is None else add(loader)


def unregister_dataset(name: str) -> None:
    """Remove a dataset added with :func:`register_dataset` (a built-in it replaced comes back)."""
    key = _key(name)
    if key not in _CUSTOM:
        what = "a built-in dataset, which cannot be removed" if key in _LOADERS else "not registered"
        raise ValueError(f"unregister_dataset: {name!r} is {what}; registered: {sorted(_CUSTOM) or 'none'}.")
    del _CUSTOM[key]


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (built-in and registered); paths are accepted too."""
    return sorted(set(_LOADERS) | set(_CUSTOM))


def _canonical(name: str) -> str:
    key = _key(name)
    if key not in _LOADERS and key not in _CUSTOM:
        raise ValueError(
            f"unknown dataset {name!r}; available: {', '.join(available_datasets())}, or the path of a folder of "
            f"class folders or of an .npz file of images and labels."
        )
    return key


def get_loader(name: str) -> Callable[..., ClassDataset]:
    """The loader function of the built-in or registered dataset ``name``."""
    key = _canonical(name)
    if key in _CUSTOM:
        return _CUSTOM[key]
    module, fn = _LOADERS[key]
    return getattr(importlib.import_module(module), fn)


def dataset_spec(name: str) -> Any:
    """The registry entry (``SPEC``) of a built-in dataset: files, URLs, checksums, counts."""
    key = _canonical(name)
    if key in _CUSTOM or key == "glyphs":
        raise ValueError(f"{name!r} has no download spec: only the downloaded built-in datasets have one.")
    return importlib.import_module(_LOADERS[key][0]).SPEC


def _load_glyphs(root: str | Path, split: str, download: bool = False, **kw: Any) -> ClassDataset:
    """``load_glyphs`` behind the common loader signature: glyphs are rendered from the
    fonts on this machine into their own cache, so ``root`` and ``download`` do not apply."""
    from .glyphs import load_glyphs

    return load_glyphs(split, **kw)


def _looks_like_path(name: str) -> bool:
    return (os.sep in name or "/" in name or name.startswith((".", "~")) or name.lower().endswith(".npz"))


def load_dataset(
    name: str | os.PathLike[str], root: str | Path, split: str, download: bool = False, **kw: Any
) -> ClassDataset:
    """Load ``split`` of dataset ``name`` under ``root`` (downloading it if ``download``).

    ``name`` may also be a folder of class folders or an ``.npz`` file: then it is
    loaded by :func:`metabridge.data.image_folder.load_image_folder` with ``kw``
    (``image_size``, ``channels``, ``split_file``, ...); ``root`` and ``download`` do
    not apply to it.
    """
    text = os.fspath(name)
    if isinstance(name, str) and _key(text) in (_CUSTOM.keys() | _LOADERS.keys()):
        return get_loader(text)(root, split, download=download, **kw)
    from .image_folder import is_image_dataset_path, load_image_folder

    if is_image_dataset_path(text):
        return load_image_folder(text, split, **kw)
    path = Path(text).expanduser()
    if path.is_file():
        raise ValueError(
            f"{path} is a file but not an .npz; give a folder of class folders or an .npz of images and labels."
        )
    if not isinstance(name, str) or _looks_like_path(text):
        raise FileNotFoundError(f"no folder or .npz file at {path} (dataset {text!r}); check the path.")
    return get_loader(text)(root, split, download=download, **kw)
