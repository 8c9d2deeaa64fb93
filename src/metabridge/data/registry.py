"""One entry point for every few-shot dataset: ``load_dataset(name, root, split, download)``.

``name`` is a built-in dataset (Omniglot, mini-/tiered-ImageNet, CIFAR-FS, FC100,
glyphs), one registered with :func:`register_dataset`, or a path to one's own images
(a folder of class folders or an ``.npz``; see :mod:`metabridge.data.image_folder`).
A registered or built-in name wins over a folder of the same name in the working
directory; write ``./name`` to mean the folder. :data:`DATASETS` is a
:class:`metabridge.registry.Registry`, with every registry's rules (names ignore case and
``-``/``_``; a taken name needs ``replace=True``).

Loaders are imported lazily (Pillow is only needed for Omniglot, tiered-ImageNet and
image folders). Each built-in dataset module also exposes ``SPEC``, its registry entry
(URLs, file names, checksums, expected counts); :func:`dataset_spec` returns it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metabridge.data.class_dataset import ClassDataset
from metabridge.registry import Registry, UnknownNameError

ALIASES = {
    "miniimagenet": "mini_imagenet",
    "mini-imagenet": "mini_imagenet",
    "tieredimagenet": "tiered_imagenet",
    "tiered-imagenet": "tiered_imagenet",
    "cifar-fs": "cifar_fs",
    "cifarfs": "cifar_fs",
}

#: name -> loader, called as ``loader(root, split, download=False, **kw)`` (a
#: :class:`~metabridge.registry.Registry`; add one with :func:`register_dataset`). The built-in
#: loaders are imported on first use.
DATASETS: Registry[Callable[..., ClassDataset]] = Registry(
    "dataset",
    "datasets",
    register_hint="metabridge.register_dataset",
    aliases=ALIASES,
    unknown_hint=", or the path of a folder of class folders or of an .npz file of images and labels",
)

for _name, _module, _loader in (
    ("omniglot", "omniglot", "load_omniglot"),
    ("mini_imagenet", "mini_imagenet", "load_mini_imagenet"),
    ("tiered_imagenet", "tiered_imagenet", "load_tiered_imagenet"),
    ("cifar_fs", "cifar_fs", "load_cifar_fs"),
    ("fc100", "fc100", "load_fc100"),
):
    DATASETS.register_lazy(_name, f"metabridge.data.{_module}", _loader)

#: ``register_dataset("mine", load_mine)`` or ``@register_dataset("mine")``: the loader is called as
#: ``loader(root, split, download=False, **kw)``; ``replace=True`` replaces a registered name (a built-in
#: comes back when its replacement is unregistered). Registration lives in this process: worker
#: processes must import the module that registers it (``--plugin``).
register_dataset = DATASETS.register

#: Remove a dataset added with :func:`register_dataset` (a built-in it replaced comes back).
unregister_dataset = DATASETS.unregister

# the registry's own table, for callers that patched it directly before the registry type existed
_CUSTOM = DATASETS._entries


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (built-in and registered); paths are accepted too."""
    return DATASETS.names()


def get_loader(name: str) -> Callable[..., ClassDataset]:
    """The loader function of the built-in or registered dataset ``name``."""
    return DATASETS.get(name)


def dataset_spec(name: str) -> Any:
    """The registry entry (``SPEC``) of a built-in dataset: files, URLs, checksums, counts."""
    entry = DATASETS.lazy_entry(name)
    if entry is None:
        raise ValueError(f"{name!r} has no download spec: only the downloaded built-in datasets have one.")
    return importlib.import_module(entry.module).SPEC


def _load_glyphs(root: str | Path, split: str, download: bool = False, **kw: Any) -> ClassDataset:
    """Glyphs: an offline few-shot benchmark of real glyphs rendered from the installed fonts.

    ``load_glyphs`` behind the common loader signature: glyphs are rendered into their own
    cache, so ``root`` and ``download`` do not apply."""
    from .glyphs import load_glyphs

    return load_glyphs(split, **kw)


DATASETS.register("glyphs", _load_glyphs)  # the offline real-glyph benchmark: rendered, never downloaded


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or name.startswith((".", "~")) or name.lower().endswith(".npz")


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
    if isinstance(name, str) and text in DATASETS:
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
    if text not in DATASETS:  # neither a registered name nor an existing path: a misspelt folder as often as a name
        unknown, listing = DATASETS.unknown(text), ", ".join(DATASETS.names())
        if unknown.suggestions:
            message = (
                f"unknown dataset {text!r}; did you mean {unknown.suggestions[0]!r}? (and no folder or .npz "
                f"file at {path.resolve()}). Datasets: {listing}."
            )
        else:
            message = (
                f"no such path: no folder or .npz file at {path.resolve()}, and no dataset named {text!r} "
                f"(datasets: {listing})."
            )
        raise UnknownNameError(message, kind="dataset", name=text, suggestions=unknown.suggestions)
    return get_loader(text)(root, split, download=download, **kw)
