"""Settings helpers of ``metabridge compare`` (:class:`metabridge.benchmarks.compare.CompareConfig`):
the defaults of the short and the ``--full`` run, and the check that a method name is known."""

from __future__ import annotations

import difflib

from ..config import load_plugins
from ._compare_methods import METHOD_SETTINGS

#: What ``--full`` sets unless given: 20 minutes of training per method, validation every 60 s
#: on 300 episodes, 1000 test episodes; without it the defaults are the short main job's.
FULL_DEFAULTS = {"budget_seconds": 1200.0, "eval_every_seconds": 60.0, "val_episodes": 300, "test_episodes": 1000}
SHORT_DEFAULTS = {"budget_seconds": 200.0, "eval_every_seconds": 25.0, "val_episodes": 100, "test_episodes": 600}


def check_method(method: str, plugins: list[str]) -> None:
    """``ValueError`` naming the closest known name unless ``method`` is in
    :data:`METHOD_SETTINGS` or an algorithm registered (by one of the ``plugins`` modules)."""
    if method in METHOD_SETTINGS:
        return
    from ..algorithms.registry import ALGORITHMS

    load_plugins(plugins)
    if method not in ALGORITHMS:
        known = sorted(set(METHOD_SETTINGS) | set(ALGORITHMS))
        close = difflib.get_close_matches(method, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown method {method!r}{hint}; choose from {', '.join(known)} or an algorithm "
            "registered with register_algorithm in a --plugin module."
        )
