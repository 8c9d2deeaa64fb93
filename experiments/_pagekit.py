"""Small helpers shared by the experiments' ``report.py`` files (imported as ``import _pagekit``).

They only format what the JSON holds: a results page never carries a number typed by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def load(folder: Path, name: str) -> Any:
    """The JSON file ``folder/results/<name>``."""
    return json.loads((folder / "results" / name).read_text(encoding="utf-8"))


def num(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals (scientific notation from 1e6 on); an em dash for a missing value."""
    if value is None:
        return "—"
    if abs(value) >= 1e6:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def pm(mean: float | None, ci: float | None, digits: int = 2) -> str:
    """``mean ± ci`` with ``digits`` decimals (the 95% interval as the JSON holds it)."""
    if mean is None:
        return "—"
    if ci is None:
        return num(mean, digits)
    return f"{num(mean, digits)} ± {num(ci, digits)}"


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction in [0, 1] written as a percentage with ``digits`` decimals."""
    return "—" if value is None else f"{100 * value:.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def command(*lines: str) -> str:
    """A fenced bash block holding the command(s) that re-create the results."""
    return "```bash\n" + "\n".join(lines) + "\n```"


def machine(record: Any, torch: str | None = None, threads: int | None = None) -> str:
    """One line naming the machine and software of a run, from its JSON machine record.

    Accepts the records the project's commands write: a mapping with ``cpu``/``cores``/``torch``/``python``
    (benchmarks), a mapping with ``device``/``platform``/``torch``/``threads`` (``compare``), or a bare
    architecture string plus ``torch`` and ``threads`` given separately (``bench sinusoid``). The date of the run
    is not repeated on the page.
    """
    if record is None:
        return "Machine: the JSON holds no machine record for this run."
    if isinstance(record, str):
        parts = [f"architecture {record}"]
        if torch:
            parts.append(f"torch {torch}")
        if threads is not None:
            parts.append(f"{threads} torch thread(s)")
        return "Machine (from the JSON): " + ", ".join(parts) + "."
    parts = []
    if record.get("cpu"):
        cores = record.get("cores")
        parts.append(f"{record['cpu']}" + (f", {cores} cores" if cores else ""))
    if record.get("device"):
        parts.append(str(record["device"]))
    if record.get("platform"):
        parts.append(str(record["platform"]))
    thread_count = record.get("torch_threads", record.get("threads", threads))
    if thread_count is not None:
        parts.append(f"{thread_count} torch thread(s)")
    if record.get("torch") or torch:
        parts.append(f"torch {record.get('torch') or torch}")
    if record.get("python"):
        parts.append(f"Python {record['python']}")
    return "Machine (from the JSON): " + ", ".join(parts) + "."


def image(name: str, path: str, alt: str) -> str:
    """A markdown image of ``experiments/<name>/<path>`` as ``docs/gen_results.py`` copies it."""
    return f"![{alt}](img/{name}/{path})"


# --- `metabridge compare` results (compare.json) ---------------------------------------------------------------

LABELS = {
    "mtl": "MTL (Wang et al.)",
    "maml": "MAML",
    "fomaml": "first-order MAML",
    "anil": "ANIL",
    "metaoptnet": "MetaOptNet-SVM",
    "protonet": "ProtoNet",
    "mann": "MANN (LSTM + memory)",
    "snail": "SNAIL",
    "icl": "in-context transformer (`icl`)",
}


def axis(data: dict[str, Any]) -> str:
    """The curve field a comparison's budget is counted in: ``step`` for a step budget, else ``train_seconds``."""
    return "step" if data["settings"].get("budget_steps") else "train_seconds"


def unit(data: dict[str, Any]) -> str:
    """``steps`` or ``s``: the unit of the budget."""
    return "steps" if axis(data) == "step" else "s"


def convergence(curve: list[dict[str, Any]], axis: str = "train_seconds", tail: float = 1 / 3) -> dict[str, Any]:
    """The convergence rule of ``metabridge compare`` (``benchmarks/_compare_report.py``), recomputed from a stored
    curve so that a page renders without importing the package: over the last third of the budget the
    least-squares trend of validation accuracy gains at most the final 95% CI half-width, and the last third's mean
    is at most that CI above the middle third's. ``converged`` is ``None`` with fewer than three validations in the
    last third or none in the middle one (``tests/doc/test_results_pages.py`` checks it equals the package's)."""
    if not curve:
        return {"converged": None, "window_points": 0, "gain": None, "rise": None, "ci95": None}
    end = curve[-1][axis]
    eps = 1e-9 * max(end, 1.0)
    window = [p for p in curve if p[axis] >= (1 - tail) * end - eps]
    middle = [p for p in curve if (1 - 2 * tail) * end - eps <= p[axis] < (1 - tail) * end - eps]
    ci = curve[-1]["val_ci95"]
    if len(window) < 3 or not middle:
        return {"converged": None, "window_points": len(window), "gain": None, "rise": None, "ci95": ci}
    ts = [float(p[axis]) for p in window]
    vs = [p["val_mean"] for p in window]
    mt, mv = sum(ts) / len(ts), sum(vs) / len(vs)
    var = sum((t - mt) ** 2 for t in ts)
    slope = sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / var if var > 0 else 0.0
    gain = slope * (ts[-1] - ts[0])
    rise = mv - sum(p["val_mean"] for p in middle) / len(middle)
    return {
        "converged": bool(gain <= ci and rise <= ci),
        "window_points": len(window),
        "gain": gain,
        "rise": rise,
        "ci95": ci,
    }


def converged(result: dict[str, Any], data: dict[str, Any]) -> str:
    """The convergence rule of ``metabridge compare`` applied to a method's validation curve, with its margins."""
    verdict = convergence(result["curve"], axis=axis(data))
    if verdict["converged"] is None:
        return "unknown (too few validations)"
    detail = (
        f"trend {100 * verdict['gain']:+.2f}, middle to last third {100 * verdict['rise']:+.2f} points, "
        f"CI {100 * verdict['ci95']:.2f}"
    )
    return ("yes" if verdict["converged"] else "no") + f" ({detail})"


def checkpoints(data: dict[str, Any], parts: int = 4) -> list[float]:
    """Budget points at 1/parts, 2/parts, ..., 1 of the comparison's budget (seconds or steps)."""
    settings = data["settings"]
    end = settings["budget_steps"] if axis(data) == "step" else settings["budget_seconds"]
    return [end * (i + 1) / parts for i in range(parts)]


def val_at(result: dict[str, Any], data: dict[str, Any], points: list[float]) -> str:
    """Validation accuracy (%) of the validation nearest to each budget point."""
    ax, curve = axis(data), result["curve"]
    if not curve:
        return "—"
    nearest = [min(curve, key=lambda p: abs(p[ax] - point)) for point in points]
    return " / ".join(f"{100 * p['val_mean']:.1f}" for p in nearest)


def to_target(result: dict[str, Any], data: dict[str, Any]) -> str:
    """Budget (seconds or steps) until validation first reached the comparison's target."""
    target = data["summary"].get("target")
    if target is None:
        return "—"
    ax = axis(data)
    hit = next((p for p in result["curve"] if p["val_mean"] >= target), None)
    if hit is None:
        return "not reached"
    return f"{hit[ax]:.0f} {unit(data)}"


def _cell(key: str, method: str, result: dict[str, Any], data: dict[str, Any], points: list[float]) -> str:
    if key.startswith("acc"):
        test = result["test"].get(key[3:])
        return "—" if test is None else pm(100 * test["mean"], 100 * test["ci95"])
    simple = {
        "method": lambda: LABELS.get(method, method),
        "train_s": lambda: f"{result['train_seconds']:.0f}",
        "steps": lambda: str(result["steps"]),
        "s_step": lambda: f"{result['seconds_per_iteration']:.3f}",
        "rss": lambda: f"{result['peak_memory_mb']:.0f}",
        "target": lambda: to_target(result, data),
        "converged": lambda: converged(result, data),
        "val_at": lambda: val_at(result, data, points),
        "best_val": lambda: pm(100 * result["best_val"]["mean"], 100 * result["best_val"]["ci95"]),
    }
    return simple[key]()


def _header(key: str, data: dict[str, Any], points: list[float]) -> str:
    if key.startswith("acc"):
        return f"{key[3:]}-shot acc %"
    target = data["summary"].get("target")
    names = {
        "method": "method",
        "train_s": "train s",
        "steps": "steps",
        "s_step": "s / step",
        "rss": "peak RSS MB",
        "target": "to target" + (f" ({100 * target:.2f}%)" if target is not None else ""),
        "converged": "converged",
        "best_val": "best val %",
        "val_at": "validation at " + " / ".join(f"{p:.0f}" for p in points) + f" {unit(data)}",
    }
    return names[key]


def compare_table(
    data: dict[str, Any],
    columns: Sequence[str],
    methods: Sequence[str] | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """A table of one ``metabridge compare`` result: one row per method (see :func:`runs_table`)."""
    labels = labels or {}
    entries = [(labels.get(m, LABELS.get(m, m)), data, m) for m in (methods or data["methods"])]
    return runs_table(entries, columns)


def runs_table(entries: Sequence[tuple[str, dict[str, Any], str]], columns: Sequence[str]) -> str:
    """A table of ``compare`` results, one row per ``(label, compare JSON, method)``; the best test accuracy of each
    shot in bold. The first column is the label; the budget points of ``val_at`` are the first entry's.

    ``columns`` (after the label): ``acc1``/``acc5`` (test accuracy at that shot), ``train_s``, ``steps``,
    ``s_step``, ``rss``, ``target`` (budget to the validation target), ``converged`` (the rule, with its margins),
    ``val_at`` (validation at a quarter, half, three quarters and all of the budget), ``best_val``.
    """
    columns = [c for c in columns if c != "method"]
    first = entries[0][1]
    points = checkpoints(first)
    rows = [[label, *[_cell(k, m, d["methods"][m], d, points) for k in columns]] for label, d, m in entries]
    for j, key in enumerate(columns, start=1):
        if key.startswith("acc") and len(entries) > 1:
            means = [d["methods"][m]["test"].get(key[3:], {}).get("mean", -1.0) for _, d, m in entries]
            for i, mean in enumerate(means):
                if mean == max(means):
                    rows[i][j] = f"**{rows[i][j]}**"
    return table(["method", *[_header(k, first, points) for k in columns]], rows)


def compare_machine(data: dict[str, Any]) -> str:
    """The machine line of a ``compare`` result (``merged_from`` runs share one machine: merge refuses others),
    with the run's wall time."""
    line = machine(data.get("machine"))
    if data["settings"].get("seed") is not None:
        line += f" Training seed {data['settings']['seed']} (one seed; validation and test episodes are fixed)."
    if data.get("total_seconds"):
        merged = data.get("merged_from")
        parts = f" (merged from {merged if isinstance(merged, int) else len(merged)} runs)" if merged else ""
        line += f" Wall time of the run{parts}: {data['total_seconds'] / 60:.1f} min."
    return line


# ---------------------------------------------------------------- over seeds
def over_seeds(values: Sequence[float], digits: int = 2, scale: float = 1.0) -> str:
    """``mean ± t-interval (n seeds)`` of one figure over independent runs (seeds), from
    :func:`metabridge.stats.mean_t_interval95`; ``scale=100`` writes fractions as percentages.
    One run: its value and "1 seed" (no interval)."""
    from metabridge.stats import mean_t_interval95

    if not values:
        return "—"
    r = mean_t_interval95([scale * v for v in values])
    seeds = f"{r.n} seed{'s' if r.n != 1 else ''}"
    if r.n == 1:
        return f"{num(r.mean, digits)} ({seeds})"
    return f"{num(r.mean, digits)} ± {num(r.ci95, digits)} ({seeds})"


def flips(outcomes: dict[Any, Any]) -> str:
    """A sentence on whether a categorical conclusion (``{seed: outcome}``) holds across seeds:
    "the same for seeds 0, 1, 2" or "flips: seed 0 X; seed 1 Y"."""
    if not outcomes:
        return "no seed run"
    seeds = ", ".join(str(s) for s in outcomes)
    if len(set(map(str, outcomes.values()))) == 1:
        return f"the same for seed{'s' if len(outcomes) > 1 else ''} {seeds}"
    return "flips between seeds: " + "; ".join(f"seed {s} {o}" for s, o in outcomes.items())
