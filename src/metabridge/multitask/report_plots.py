"""PNG figures of a ``metabridge multitask`` report: Delta_m per method, the loss and weight
trajectories of every method (seed of the first run), and, when diagnostics were recorded,
the affinity heatmap and the gradient-conflict curves (:mod:`.diagnostics.plots`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .diagnostics import plot_affinity, plot_gradient_conflict, plot_loss_trajectories, plot_weight_trajectories

__all__ = ["write_plots"]


def _plot_delta_m(report: dict[str, Any], path: Path) -> Path | None:
    rows = [
        (name, row["delta_m"], row.get("delta_m_ci95", 0.0))
        for name, row in report["methods"].items()
        if row.get("delta_m") is not None
    ]
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows.sort(key=lambda r: r[1])
    fig = Figure(figsize=(7, 0.35 * len(rows) + 1.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh([r[0] for r in rows], [r[1] for r in rows], xerr=[r[2] for r in rows], color="tab:blue")
    ax.axvline(0, color="k", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("Delta_m % vs single-task (lower is better)")
    ax.set_title(report.get("benchmark", ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _steps(series: dict[str, list], every: int) -> list[int] | None:
    """Training steps of the logged points (one every ``every`` steps), when every method has as many."""
    lengths = {len(v) for v in series.values()}
    return [i * every for i in range(lengths.pop())] if len(lengths) == 1 else None


def write_plots(report: dict[str, Any], method_runs: dict[str, list[dict[str, Any]]], out: Path) -> list[Path]:
    """Write every figure the report supports under ``out``; returns their paths."""
    paths: list[Path] = []
    dm = _plot_delta_m(report, out / "delta_m.png")
    if dm is not None:
        paths.append(dm)
    every = report.get("settings", {}).get("log_every", 10)
    losses = {m: runs[0]["train_losses"] for m, runs in method_runs.items() if runs[0]["train_losses"]}
    if losses:
        paths.append(
            plot_loss_trajectories(
                losses, out / "loss_trajectories.png", task_names=report["tasks"], steps=_steps(losses, every)
            )
        )
    weights = {m: runs[0]["weights"] for m, runs in method_runs.items() if runs[0]["weights"]}
    if weights:
        paths.append(
            plot_weight_trajectories(
                weights, out / "weight_trajectories.png", task_names=report["tasks"], steps=_steps(weights, every)
            )
        )
    diag = report.get("diagnostics")
    if diag:
        aff = diag["affinity"]
        if aff.get("steps"):
            paths.append(plot_affinity(aff["mean"], out / "affinity.png", task_names=report["tasks"]))
        paths.append(plot_gradient_conflict(diag["gradient_conflict"], out / "gradient_conflict.png"))
    return paths
