"""Plugins: modules a user names (``--plugin MODULE``, ``plugins = [...]`` in a config) whose
import registers their algorithms, backbones, datasets, weighting methods or multi-task
benchmarks. Every process that builds a run imports them first (the trainer, ``eval``,
compare's and ``metabridge multitask``'s worker processes)."""

from __future__ import annotations

import importlib

__all__ = ["load_plugins"]


def load_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import each module named in ``modules`` (where a user's ``register_*`` calls live).

    Importing is idempotent (Python caches modules), so calling this in every process
    that builds a run (the trainer, ``eval``, compare's workers) is cheap.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(
                f"plugin module {name!r} could not be imported ({exc}); check --plugin and that the "
                "module is on PYTHONPATH (or installed)."
            ) from exc
