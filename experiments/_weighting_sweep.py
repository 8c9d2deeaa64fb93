"""Tables shared by the multi-task weighting sweeps' pages (the JSON ``metabridge multitask`` writes).

Imported by ``experiments/multitask_*/report.py`` as ``import _weighting_sweep``; every number comes from the JSON.
"""

from __future__ import annotations

from typing import Any

import _pagekit as kit


def metric(value: float, unit: str) -> str:
    """A per-task test metric: two decimals for percentages, four significant digits otherwise."""
    return f"{value:.2f}" if unit == "%" else f"{value:.4g}"


def signed(value: float, ci: float | None = None) -> str:
    """``+1.39`` (with `` ± ci`` when the JSON holds a non-zero interval over seeds)."""
    text = f"{value:+.2f}"
    return f"{text} ± {ci:.2f}" if ci else text


def ranked(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The methods of a sweep, best Delta_m first."""
    return sorted(report["methods"].items(), key=lambda item: item[1]["delta_m"])


def sweep_table(report: dict[str, Any]) -> str:
    """Method | each task's test metric | Delta_m % | mean rank | best step | peak MiB; STL first."""
    tasks, units = report["tasks"], report["units"]
    headers = ["method", *[f"{t} ({u})" for t, u in zip(tasks, units)], "Delta_m %", "rank", "best step", "peak MiB"]
    rows: list[list[str]] = []
    if report.get("stl"):
        rows.append(["STL", *[metric(v, u) for v, u in zip(report["stl"], units)], "0 (ref)", "", "", ""])
    for name, res in ranked(report):
        rows.append(
            [
                name,
                *[metric(v, u) for v, u in zip(res["test_metric"], units)],
                signed(res["delta_m"], res.get("delta_m_ci95")),
                f"{res['mean_rank']:.2f}",
                ", ".join(str(s) for s in res["best_step"]),
                f"{res['peak_mib']:.0f}",
            ]
        )
    return kit.table(headers, rows)


def settings_line(report: dict[str, Any]) -> str:
    """The run's settings as the JSON records them: steps, batch, learning rate, seeds, wall time."""
    s = report["settings"]
    seeds = ", ".join(str(x) for x in report["seeds"])
    return (
        f"Settings (from the JSON): {s['steps']} steps of {s['batch_size']}, Adam lr {s['lr']}, evaluation every "
        f"{s['eval_every']} steps, model `{s['model']}`, seed(s) {seeds}, {s['threads']} torch thread(s) per run; "
        f"the whole sweep took {report['wall_seconds'] / 60:.0f} min of wall-clock time."
    )
