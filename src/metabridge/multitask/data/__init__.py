"""Multi-task benchmarks: ``load_mtl_benchmark(name, root=None, **kw)`` -> :class:`MultiTaskBenchmark`.

Built in:

* ``"multi_fashion_mnist"``: two Fashion-MNIST items on one 36x36 canvas, tasks ``left`` and
  ``right`` (10 classes each; Sener & Koltun 2018's MultiMNIST construction, as in Lin et al.
  2019's Pareto MTL benchmark). See :mod:`metabridge.multitask.data.multi_fashion_mnist`.
* ``"qm9"``: 11 regression targets of QM9 in the order of the Nash-MTL benchmark (Navon et al.
  2022), on a fixed-size molecular descriptor. See :mod:`metabridge.multitask.data.qm9`.

Every loader takes ``root`` (the cache folder; default ``$METABRIDGE_CACHE``, else
``~/.cache/metabridge``; each benchmark uses its own sub-folder) and its own keyword arguments.
Add your own with :func:`register_mtl_benchmark` (:data:`MTL_BENCHMARKS` is a
:class:`metabridge.registry.Registry`, with every registry's rules), directly or as a decorator::

    @register_mtl_benchmark("mine")
    def load_mine(root=None, **kw) -> MultiTaskBenchmark: ...

Registration lives in the current process: worker processes must import the module that
registers the benchmark. Loaders are imported lazily, on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...registry import Registry
from ..tasks import MultiTaskBenchmark

__all__ = [
    "MTL_BENCHMARKS",
    "available_mtl_benchmarks",
    "get_mtl_loader",
    "load_mtl_benchmark",
    "mtl_cache_root",
    "register_mtl_benchmark",
    "unregister_mtl_benchmark",
]

ALIASES = {
    "multi-fashion-mnist": "multi_fashion_mnist",
    "multifashionmnist": "multi_fashion_mnist",
    "multi_fashion": "multi_fashion_mnist",
    "multi-fashion": "multi_fashion_mnist",
}

#: name -> loader, called as ``loader(root=None, **kw)`` (a :class:`~metabridge.registry.Registry`; add one
#: with :func:`register_mtl_benchmark`). The built-in loaders are imported on first use.
MTL_BENCHMARKS: Registry[Callable[..., MultiTaskBenchmark]] = Registry(
    "multi-task benchmark", "multitask-benchmarks", register_hint="metabridge.register_mtl_benchmark", aliases=ALIASES
)
MTL_BENCHMARKS.register_lazy(
    "multi_fashion_mnist", "metabridge.multitask.data.multi_fashion_mnist", "load_multi_fashion_mnist"
)
MTL_BENCHMARKS.register_lazy("qm9", "metabridge.multitask.data.qm9", "load_qm9")

#: ``register_mtl_benchmark("mine", load_mine)`` or ``@register_mtl_benchmark("mine")``; ``replace=True``
#: replaces a registered name (a built-in comes back when its replacement is unregistered).
register_mtl_benchmark = MTL_BENCHMARKS.register

#: Remove a benchmark added with :func:`register_mtl_benchmark` (a built-in it replaced comes back).
unregister_mtl_benchmark = MTL_BENCHMARKS.unregister


def mtl_cache_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root`` if given, else ``$METABRIDGE_CACHE``, else ``~/.cache/metabridge`` (as the few-shot caches)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("METABRIDGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "metabridge"


def available_mtl_benchmarks() -> list[str]:
    """Names accepted by :func:`load_mtl_benchmark` (built-in and registered), sorted."""
    return MTL_BENCHMARKS.names()


def get_mtl_loader(name: str) -> Callable[..., MultiTaskBenchmark]:
    """The loader function of the built-in or registered benchmark ``name``."""
    return MTL_BENCHMARKS.get(name)


def load_mtl_benchmark(name: str, root: str | os.PathLike[str] | None = None, **kw: Any) -> MultiTaskBenchmark:
    """Load the multi-task benchmark ``name`` (cache under ``root``; loader-specific ``kw``)."""
    bench = get_mtl_loader(name)(root=root, **kw)
    if not isinstance(bench, MultiTaskBenchmark):
        raise TypeError(f"the loader of {name!r} returned {type(bench).__name__}, not a MultiTaskBenchmark.")
    return bench
