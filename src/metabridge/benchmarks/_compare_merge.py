"""Merging ``compare.json`` reports of disjoint methods into one comparison (``compare --merge``),
with its time-to-target, summary and verdict recomputed over the union of methods."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._compare_report import budget_axis, summarize, write_report
from ._compare_verdict import verdict

__all__ = ["MERGE_FREE_SETTINGS", "merge_files", "merge_reports"]

#: Settings that may differ between runs merged into one comparison (everything else must match;
#: ``out_dir`` and ``results_dir`` are the output folders of reports written before ``out``).
MERGE_FREE_SETTINGS = ("methods", "out", "out_dir", "results_dir")


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One comparison from several ``compare.json`` reports of disjoint methods.

    A long comparison (``--full``: 20 min of training per method) need not run in one
    sitting: run ``--methods mtl --methods maml`` once and ``--methods fomaml --methods anil``
    later, then merge. The runs must share every setting but the method list (same dataset,
    budget, episodes, seed) and the machine, or their times and accuracies are not comparable;
    the time-to-target and the verdict are recomputed over the union of methods.
    """
    if not reports:
        raise ValueError("nothing to merge: give at least one compare.json.")
    first = reports[0]
    merged_methods: dict[str, dict[str, Any]] = {}
    for i, rep in enumerate(reports):
        for key in set(first["settings"]) | set(rep["settings"]):
            if key in MERGE_FREE_SETTINGS:
                continue
            a, b = first["settings"].get(key), rep["settings"].get(key)
            if a != b:
                raise ValueError(
                    f"report {i + 1} was run with {key}={b!r}, report 1 with {key}={a!r}; "
                    f"only runs that differ in --methods can be merged: re-run with the same {key}."
                )
        if rep["machine"].get("device") != first["machine"].get("device"):
            raise ValueError(
                f"report {i + 1} ran on {rep['machine'].get('device')!r}, report 1 on "
                f"{first['machine'].get('device')!r}; wall-clock from different machines is not "
                "comparable: re-run on one machine."
            )
        for m, r in rep["methods"].items():
            if m in merged_methods:
                raise ValueError(
                    f"method {m!r} is in more than one report; merge runs of disjoint methods "
                    "(drop one of the two runs)."
                )
            merged_methods[m] = r
    settings = dict(first["settings"], methods=list(merged_methods))
    merged = {
        "benchmark": "compare",
        "settings": settings,
        "machine": first["machine"],
        "total_seconds": sum(r["total_seconds"] for r in reports),
        "merged_from": len(reports),
        "methods": merged_methods,
        "summary": summarize(merged_methods, budget_axis(settings), settings),
    }
    merged["verdict"] = verdict(merged)
    return merged


def merge_files(paths: list[Path], out: Path) -> dict[str, Any]:
    """:func:`merge_reports` of the ``compare.json`` files (or folders holding one) at ``paths``,
    written into ``out``."""
    reports = []
    for p in paths:
        path = Path(p)
        path = path / "compare.json" if path.is_dir() else path
        if not path.exists():
            raise ValueError(f"{path} does not exist; give the --out folder of an earlier compare run.")
        reports.append(json.loads(path.read_text()))
    report = merge_reports(reports)
    write_report(report, out)
    return report
