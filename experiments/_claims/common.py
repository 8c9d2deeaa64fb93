"""What every claim row shares: the record of one row, the loading of every seed's JSON of an experiment part,
the combination of per-seed verdicts and the figures over seeds. Nothing here types a measured number."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _pagekit as kit

REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE = "reproduced", "partly", "not reproduced", "not testable here"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE)
#: order of strength, for an existential claim (the strongest row decides)
STRENGTH = {NOT_TESTABLE: 0, NOT_REPRODUCED: 1, PARTLY: 2, REPRODUCED: 3}


@dataclass
class Row:
    """One piece of evidence for a claim: what the paper says, what we ran and measured, and the verdict."""

    title: str
    experiment: str  # folder under experiments/ (its results page is linked); "" for none
    paper: str  # the paper's figure and protocol, as the seed text gives them
    command: str  # the command that re-creates our figures
    seeds: str  # which seeds the figures come from
    ours: list[str]  # our figures, every number from the JSON
    difference: str  # how our protocol differs from the paper's
    rule: str  # the rule that turns the figures into the verdict
    verdict: str
    why: str  # the rule applied: the computed reason


@dataclass
class Claim:
    """One claim of a seed document and the rows that test it."""

    key: str
    source: str  # the seed document
    claim: str
    quote: str  # the seed text's words
    where: str  # where in the seed text
    rows: list[Row] = field(default_factory=list)
    combine: str = "all"  # "all": rows that agree decide, else partly; "any": the strongest row decides

    @property
    def verdict(self) -> str:
        """The claim's verdict from its rows' (see ``combine``)."""
        tested = [r.verdict for r in self.rows if r.verdict != NOT_TESTABLE]
        if not tested:
            return NOT_TESTABLE
        if self.combine == "any":
            return max(tested, key=STRENGTH.__getitem__)
        return tested[0] if len(set(tested)) == 1 else PARTLY


def combine(per_seed: dict[Any, str]) -> str:
    """One verdict from the verdicts of several seeds: theirs when they agree, else partly."""
    values = set(per_seed.values())
    if not values:
        return NOT_TESTABLE
    return values.pop() if len(values) == 1 else PARTLY


def _seed_of(data: Any, path: Path) -> int:
    """The training seed a run's JSON records (``settings.seed``, ``seed`` or ``seeds[0]``), else the file name's."""
    if isinstance(data, dict):
        for holder in (data.get("settings"), data):
            if isinstance(holder, dict) and isinstance(holder.get("seed"), int):
                return int(holder["seed"])
        seeds = data.get("seeds")
        if isinstance(seeds, list) and len(seeds) == 1 and isinstance(seeds[0], int):
            return int(seeds[0])
    found = re.search(r"seed(\d+)\.json$", path.name)
    return int(found.group(1)) if found else 0


def seed_runs(folder: Path, part: str, bare: bool = False) -> dict[int, Any]:
    """``{seed: JSON}`` of every stored run of a part: ``results/<part>.json`` (the single run) and every
    ``results/<part>_seed<N>.json``; with ``bare`` also ``results/seed<N>.json``, and then the single run counts
    only when no seed file exists. A seed file wins over the single run of the same seed; a file that does not
    parse (being written) is left out."""
    results = folder / "results"
    single = results / f"{part}.json"
    pattern = re.compile(rf"(?:{re.escape(part)}_)?seed\d+\.json" if bare else rf"{re.escape(part)}_seed\d+\.json")
    seeded = sorted(p for p in results.glob("*seed*.json") if pattern.fullmatch(p.name)) if results.is_dir() else []
    paths = ([single] if single.is_file() and not (bare and seeded) else []) + seeded
    found: dict[int, Any] = {}
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        found[_seed_of(data, path)] = data
    return dict(sorted(found.items()))


def seeds_text(runs: dict[int, Any]) -> str:
    """``seeds 0, 1, 2 (3 seeds)`` or ``seed 0 (1 seed)``."""
    names = ", ".join(map(str, runs))
    return f"seed{'s' if len(runs) > 1 else ''} {names} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"


def figure(values: Sequence[float], cis: Sequence[float | None], digits: int = 2, scale: float = 1.0) -> str:
    """Several seeds: mean ± 95% t-interval over seeds (``_pagekit.over_seeds``); one seed: the run's own 95%
    interval and "1 seed"."""
    if len(values) == 1:
        ci = cis[0]
        if ci is None:
            return f"{kit.num(scale * values[0], digits)} (1 seed)"
        return f"{kit.pm(scale * values[0], scale * ci, digits)} (run's 95% CI, 1 seed)"
    return kit.over_seeds(list(values), digits, scale)


def per_seed(runs: dict[int, Any], rule: Callable[[Any], str]) -> tuple[str, str]:
    """Apply ``rule`` to every seed's JSON: the combined verdict and the sentence on whether it flips."""
    verdicts = {seed: rule(data) for seed, data in runs.items()}
    return combine(verdicts), kit.flips(verdicts)


def link(experiment: str) -> str:
    """A link to the experiment's results page (relative to docs/claims.md)."""
    return f"[{experiment}](results/{experiment}.md)" if experiment else "none"
