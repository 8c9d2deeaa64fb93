"""Multi-task benchmarks: ``load_mtl_benchmark(name, root=None, **kw)`` -> :class:`MultiTaskBenchmark`.

Built in:

* ``"multi_fashion_mnist"``: two Fashion-MNIST items on one 36x36 canvas, tasks ``left`` and
  ``right`` (10 classes each; Sener & Koltun 2018's MultiMNIST construction, as in Lin et al.
  2019's Pareto MTL benchmark). See :mod:`metabridge.multitask.data.multi_fashion_mnist`.
* ``"qm9"``: 11 regression targets of QM9 in the order of the Nash-MTL benchmark (Navon et al.
  2022), on a fixed-size molecular descriptor. See :mod:`metabridge.multitask.data.qm9`.

Every loader takes ``root`` (the cache folder; default ``$METABRIDGE_CACHE``, else
``~/.cache/metabridge``; each benchmark uses its own sub-folder) and its own keyword arguments.
Add your own with :func:`register_mtl_benchmark`, directly or as a decorator::

    @register_mtl_benchmark("mine")
    def load_mine(root=None, **kw) -> MultiTaskBenchmark: ...

Registration lives in the current process: worker processes must import the module that
registers the benchmark. Loaders are imported lazily, on first use.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

from ..tasks import MultiTaskBenchmark

__all__ = [
    "available_mtl_benchmarks",
    "get_mtl_loader",
    "load_mtl_benchmark",
    "mtl_cache_root",
    "register_mtl_benchmark",
    "unregister_mtl_benchmark",
]

# name -> (module, loader function); every loader is called as loader(root=None, **kw).
_BUILTIN: dict[str, tuple[str, str]] = {
    "multi_fashion_mnist": ("metabridge.multitask.data.multi_fashion_mnist", "load_multi_fashion_mnist"),
    "qm9": ("metabridge.multitask.data.qm9", "load_qm9"),
}
_CUSTOM: dict[str, Callable[..., MultiTaskBenchmark]] = {}
ALIASES = {"multi-fashion-mnist": "multi_fashion_mnist", "multifashionmnist": "multi_fashion_mnist",
           "multi_fashion": "multi_fashion_mnist", "multi-fashion": "multi_fashion_mnist"}

Loader = TypeVar("Loader", bound=Callable[..., MultiTaskBenchmark])


def mtl_cache_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root`` if given, else ``$METABRIDGE_CACHE``, else ``~/.cache/metabridge`` (as the few-shot caches)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("METABRIDGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "metabridge"


def _key(name: str) -> str:
    key = name.strip().lower()
    return ALIASES.get(key, key)


@overload
def register_mtl_benchmark(name: str) -> Callable[[Loader], Loader]: ...


@overload
def register_mtl_benchmark(name: str, loader: Loader) -> Loader: ...


def register_mtl_benchmark(name: str, loader: Loader | None = None) -> Loader | Callable[[Loader], Loader]:
    """Add (or replace) the benchmark ``name``, loaded as ``loader(root=None, **kw)``.

    Names are case-insensitive; a registered loader takes precedence over a built-in of the
    same name. Use it directly, ``register_mtl_benchmark("mine", load_mine)``, or as a
    decorator, ``@register_mtl_benchmark("mine")``; the loader is returned either way.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"register_mtl_benchmark: the name must be a non-empty string (got {name!r}).")

    def add(fn: Loader) -> Loader:
        if not callable(fn):
            raise TypeError(f"register_mtl_benchmark({name!r}): the loader must be callable (got {type(fn).__name__}).")
        _CUSTOM[_key(name)] = fn
        return fn

    return add if loader is None else add(loader)


def unregister_mtl_benchmark(name: str) -> None:
    """Remove a benchmark added with :func:`register_mtl_benchmark` (a built-in it replaced comes back)."""
    key = _key(name)
    if key not in _CUSTOM:
        what = "a built-in benchmark, which cannot be removed" if key in _BUILTIN else "not registered"
        raise ValueError(f"unregister_mtl_benchmark: {name!r} is {what}; registered: {sorted(_CUSTOM) or 'none'}.")
    del _CUSTOM[key]


def available_mtl_benchmarks() -> list[str]:
    """Names accepted by :func:`load_mtl_benchmark` (built-in and registered), sorted."""
    return sorted(set(_BUILTIN) | set(_CUSTOM))


def get_mtl_loader(name: str) -> Callable[..., MultiTaskBenchmark]:
    """The loader function of the built-in or registered benchmark ``name``."""
    key = _key(name)
    if key in _CUSTOM:
        return _CUSTOM[key]
    if key in _BUILTIN:
        module, fn = _BUILTIN[key]
        return getattr(importlib.import_module(module), fn)
    raise ValueError(f"unknown multi-task benchmark {name!r}; available: {', '.join(available_mtl_benchmarks())} "
                     f"(add your own with register_mtl_benchmark).")


def load_mtl_benchmark(name: str, root: str | os.PathLike[str] | None = None, **kw: Any) -> MultiTaskBenchmark:
    """Load the multi-task benchmark ``name`` (cache under ``root``; loader-specific ``kw``)."""
    bench = get_mtl_loader(name)(root=root, **kw)
    if not isinstance(bench, MultiTaskBenchmark):
        raise TypeError(f"the loader of {name!r} returned {type(bench).__name__}, not a MultiTaskBenchmark.")
    return bench
