"""Helpers for a headline part that runs once per training seed (imported by ``report.py`` files as ``import _seeds``).

A part's seed 0 is ``results/<part>.json`` and seed N > 0 is ``results/<part>_seed<N>.json``; the seed each run
was trained with is read from its JSON. Every number on a page still comes from the JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def runs(folder: Path, part: str, seed_of: Callable[[Any], int]) -> dict[int, Any]:
    """``{seed: JSON}`` of every stored run of ``part``, by seed; ``seed_of`` reads the seed from a run's JSON."""
    results = folder / "results"
    paths = [results / f"{part}.json"] if (results / f"{part}.json").is_file() else []
    paths += [
        p for p in results.glob(f"{part}_seed*.json") if re.fullmatch(rf"{re.escape(part)}_seed\d+\.json", p.name)
    ]
    found: dict[int, Any] = {}
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        seed = seed_of(data)
        if seed in found:
            raise ValueError(f"{path}: a second run of seed {seed}")
        found[seed] = data
    return dict(sorted(found.items()))


def listing(seeds: Sequence[int]) -> str:
    """``0, 1, 2``."""
    return ", ".join(str(s) for s in seeds)


def coverage(found: Sequence[int], planned: Sequence[int], command: str) -> str:
    """A sentence naming the seeds stored, the planned ones still missing and the command that adds them."""
    have = f"Seeds stored: {listing(found)} ({len(found)} of the {len(planned)} that run.sh plans)."
    missing = [s for s in planned if s not in found]
    if not missing:
        return have
    return (
        f"{have} Missing: seed{'s' if len(missing) > 1 else ''} {listing(missing)}; "
        f"`{command}` adds {'them' if len(missing) > 1 else 'it'} (a seed whose JSON exists is skipped)."
    )


def versus(a: dict[str, float], b: dict[str, float], name_a: str, name_b: str, higher_is_better: bool = True) -> str:
    """Which of two results is ahead beyond both 95% episode intervals (``{"mean", "ci95"}`` each), else a tie."""
    if not _apart(a, b):
        return "within the CIs"
    a_better = (a["mean"] > b["mean"]) == higher_is_better
    return f"{name_a if a_better else name_b} ahead beyond the CIs"


def _apart(a: dict[str, float], b: dict[str, float]) -> bool:
    """The two 95% intervals do not overlap."""
    return a["mean"] + a["ci95"] < b["mean"] - b["ci95"] or b["mean"] + b["ci95"] < a["mean"] - a["ci95"]


def conclusion(outcomes: dict[int, str]) -> str:
    """A conclusion drawn per seed, ``{seed: outcome}``: the outcome once when every seed agrees, with the seeds
    named; else each seed's (from ``_pagekit.flips``)."""
    import _pagekit as kit

    values = set(outcomes.values())
    if len(values) == 1:
        return f"{next(iter(values))} ({kit.flips(outcomes)})"
    return kit.flips(outcomes)
