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


# ---------------------------------------------------------------- over seeds
PART = "weighting_sweep"  # seed 0: results/weighting_sweep.json; seed N: results/weighting_sweep_seedN.json


def _seed_of(report: dict[str, Any]) -> int:
    if len(report["seeds"]) != 1:
        raise ValueError(f"a per-seed sweep holds one seed (this one holds {report['seeds']})")
    return int(report["seeds"][0])


def seed_runs(folder: Any) -> dict[int, dict[str, Any]]:
    """``{seed: report}`` of the sweep's per-seed runs."""
    import _seeds

    return _seeds.runs(folder, PART, _seed_of)


def best(report: dict[str, Any]) -> str:
    """The method with the lowest Delta_m, the tuned equal weighting left out (it is a baseline)."""
    return next(name for name, _ in ranked(report) if name != "equal_tuned")


def seeds_section(folder: Any, planned: tuple[int, ...], command: str) -> str:
    """Every method over the per-seed sweeps: Delta_m % mean ± t-interval, each seed's Delta_m and its place among
    the methods (1 = lowest Delta_m), the spread of that place, the mean rank over tasks; and whether the best
    method changes between seeds."""
    import _seeds

    runs = seed_runs(folder)
    first = runs[min(runs)]
    places = {seed: {name: i for i, (name, _) in enumerate(ranked(r), start=1)} for seed, r in runs.items()}
    rows = []
    for name, _ in ranked(first):
        deltas = [r["methods"][name]["delta_m"] for r in runs.values()]
        where = [places[seed][name] for seed in runs]
        rows.append(
            [
                name,
                kit.over_seeds(deltas, 2),
                " / ".join(f"{d:+.2f}" for d in deltas),
                " / ".join(str(p) for p in where),
                f"{min(where)}-{max(where)}" if len(where) > 1 else "—",
                kit.over_seeds([r["methods"][name]["mean_rank"] for r in runs.values()], 2),
            ]
        )
    seeds = " / ".join(str(s) for s in runs)
    headers = [
        "method",
        "Delta_m %, mean ± t over seeds",
        f"Delta_m % per seed ({seeds})",
        f"place by Delta_m per seed ({seeds})",
        "place, range",
        "mean rank over tasks, mean ± t",
    ]
    return "\n\n".join(
        [
            "## Over training seeds",
            "The whole sweep (baselines, every method, the tuned equal weighting) once per seed; methods in the order "
            f"of seed {min(runs)}. The interval is the 95% Student-t interval over seeds; a single seed's Delta_m has "
            "no interval of its own in the JSON.",
            kit.table(headers, rows),
            "Best method by Delta_m (the tuned equal weighting left out): "
            + _seeds.conclusion({seed: f"`{best(r)}`" for seed, r in runs.items()})
            + ".",
            _seeds.coverage(list(runs), planned, command),
        ]
    )
