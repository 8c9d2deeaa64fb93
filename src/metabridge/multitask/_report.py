"""The report of ``metabridge multitask``: the per-method summary of the run records
(:func:`summarize`), its plain-text / Markdown table (:func:`format_table`) and the files
written under the output folder (:func:`write_report`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text

__all__ = ["format_table", "summarize", "write_report"]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


#: two-sided 97.5% quantiles of Student's t for 1..10 degrees of freedom (seeds are few)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def _ci95(values: list[float]) -> float:
    """Half-width of the 95% confidence interval of the mean over seeds (Student's t)."""
    n = len(values)
    if n < 2:
        return 0.0
    m = _mean(values)
    sd = (sum((v - m) ** 2 for v in values) / (n - 1)) ** 0.5
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return t * sd / n**0.5


def summarize(
    method_runs: dict[str, list[dict[str, Any]]], stl_runs: list[list[dict[str, Any]]] | None, reference: str = "equal"
) -> dict[str, Any]:
    """Aggregate records: ``method_runs[name]`` = one record per seed; ``stl_runs[k]`` = task k's STL
    records (one per seed) or None. Returns the JSON report's ``methods`` table."""
    from .diagnostics import delta_m, mean_rank, relative_changes

    first = next(iter(method_runs.values()))[0]
    higher = first["higher_is_better"]
    k = len(higher)
    stl_mean = None
    if stl_runs:
        stl_mean = [_mean([r["test_metric"][0] for r in stl_runs[t]]) for t in range(k)]
    table: dict[str, Any] = {}
    ref_time = None
    if reference in method_runs:
        ref_time = _mean([r["seconds_per_step"] for r in method_runs[reference]])
    means = {}
    for name, runs in method_runs.items():
        per_task = [_mean([r["test_metric"][t] for r in runs]) for t in range(k)]
        means[name] = per_task
        row: dict[str, Any] = {
            "test_metric": per_task,
            "seeds": [r["spec"]["seed"] for r in runs],
            "seconds_per_step": _mean([r["seconds_per_step"] for r in runs]),
            "peak_mib": (_mean([r["peak_mib"] for r in runs]) if runs[0]["peak_mib"] is not None else None),
            "best_step": [r["best_step"] for r in runs],
        }
        if ref_time:
            row["time_ratio"] = row["seconds_per_step"] / ref_time
        if stl_mean is not None:
            per_seed = [delta_m(r["test_metric"], stl_mean, higher) for r in runs]
            row["delta_m"] = _mean(per_seed)
            row["delta_m_ci95"] = _ci95(per_seed)
            row["relative_change"] = relative_changes(per_task, stl_mean, higher)
        table[name] = row
    if len(means) > 1:
        ranks = mean_rank(means, higher)
        for name in table:
            table[name]["mean_rank"] = ranks[name]
    return {
        "methods": table,
        "stl": stl_mean,
        "tasks": first["tasks"],
        "units": first["units"],
        "higher_is_better": higher,
    }


def format_table(report: dict[str, Any], markdown: bool = False) -> str:
    """Plain-text (or Markdown) table: one row per method, one column per task, then the summary columns."""
    tasks, units = report["tasks"], report["units"]
    head = ["method"] + [f"{t}{f' ({u})' if u else ''}" for t, u in zip(tasks, units)]
    head += ["Delta_m %", "rank", "s/step", "x equal", "peak MiB"]
    rows = []
    if report.get("stl"):
        rows.append(["STL"] + [f"{v:.4g}" for v in report["stl"]] + ["0 (ref)", "", "", "", ""])
    for name, row in sorted(report["methods"].items(), key=lambda kv: kv[1].get("delta_m", 0.0)):
        dm = row.get("delta_m")
        rows.append(
            [name]
            + [f"{v:.4g}" for v in row["test_metric"]]
            + [
                (
                    ""
                    if dm is None
                    else f"{dm:+.2f} ± {row['delta_m_ci95']:.2f}"
                    if len(row["seeds"]) > 1
                    else f"{dm:+.2f}"
                ),
                f"{row['mean_rank']:.2f}" if "mean_rank" in row else "",
                f"{row['seconds_per_step'] * 1000:.1f} ms",
                f"{row.get('time_ratio', float('nan')):.2f}",
                f"{row['peak_mib']:.0f}" if row["peak_mib"] is not None else "n/a",
            ]
        )
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def write_report(report: dict[str, Any], method_runs: dict[str, list[dict[str, Any]]], out: Path) -> None:
    """report.json, table.txt, table.md and the PNG plots under ``out``; prints the table."""
    from .report_plots import write_plots

    out.mkdir(parents=True, exist_ok=True)
    table = format_table(report)
    report["plots"] = [str(p) for p in write_plots(report, method_runs, out)]
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    atomic_write_text(out / "table.txt", table + "\n")
    atomic_write_text(out / "table.md", format_table(report, markdown=True) + "\n")
    print(table)
