"""Figures of the negative-transfer diagnostics, each written as a PNG.

Every function builds its own :class:`matplotlib.figure.Figure` rendered by the Agg canvas
(``matplotlib.backends.backend_agg.FigureCanvasAgg``): no pyplot, no global figure registry,
no ``matplotlib.use`` and no rcParams change, so plotting is safe inside a training process,
a thread or a notebook with another backend. matplotlib is imported on the first call only.

* :func:`plot_affinity`: the ``[K, K]`` lookahead affinity ``Z[i, j] = Z_{i->j}`` as a heatmap
  (diverging colours centred at 0: blue helps, red hurts).
* :func:`plot_loss_trajectories`: per-task training losses over steps (one method, or one line
  per method on a panel per task).
* :func:`plot_weight_trajectories`: the task weights a weighting method used at each step, a
  panel per method.
* :func:`plot_gradient_conflict`: the conflict rate per shared layer over the recorded steps
  (from :meth:`GradientConflictTracker.history`).

Each writes to ``path`` (which must end in ``.png``; missing parent folders are created) and
returns it as a :class:`pathlib.Path`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_affinity", "plot_gradient_conflict", "plot_loss_trajectories", "plot_weight_trajectories"]

PathLike = str | os.PathLike


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: PathLike, dpi: int) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=dpi)
    return out


def _check_path(path: PathLike) -> None:
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"plots are written as PNG: the path must end in .png (got {str(path)!r}).")


def _matrix(values: Any, what: str) -> np.ndarray:
    """Per-step vectors as a float [T, K] array (tensor, array, or a list of K-vectors)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    rows = [
        np.asarray(r.detach().cpu().numpy() if hasattr(r, "detach") else r, dtype=np.float64).reshape(-1)
        for r in values
    ]
    if not rows:
        raise ValueError(f"{what}: no steps to plot.")
    k = rows[0].shape[0]
    if any(r.shape[0] != k for r in rows):
        raise ValueError(f"{what}: every step needs the same number of tasks.")
    return np.stack(rows)


def _names(task_names: Sequence[str] | None, k: int) -> list[str]:
    if task_names is None:
        return [f"task {i}" for i in range(k)]
    if len(task_names) != k:
        raise ValueError(f"{len(task_names)} task names for {k} tasks.")
    return [str(n) for n in task_names]


def _steps(steps: Sequence[float] | None, t: int) -> np.ndarray:
    if steps is None:
        return np.arange(t)
    s = np.asarray(list(steps), dtype=np.float64)
    if s.shape != (t,):
        raise ValueError(f"{len(s)} steps for {t} recorded points.")
    return s


def plot_affinity(
    affinity: Any,
    path: PathLike,
    *,
    task_names: Sequence[str] | None = None,
    title: str = "Lookahead inter-task affinity $Z_{i \\to j}$",
    annotate: bool = True,
    dpi: int = 120,
) -> Path:
    """Heatmap of ``affinity[i, j] = Z_{i->j}`` (rows: the task stepped on; columns: the task measured)."""
    _check_path(path)
    z = np.asarray(affinity.detach().cpu().numpy() if hasattr(affinity, "detach") else affinity, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] != z.shape[1]:
        raise ValueError(f"the affinity must be a square [K, K] matrix (got shape {z.shape}).")
    k = z.shape[0]
    names = _names(task_names, k)
    finite = z[np.isfinite(z)]
    vmax = float(np.abs(finite).max()) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    side = 2.0 + 0.6 * k
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    im = ax.imshow(z, cmap="RdBu", vmin=-vmax, vmax=vmax)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("target task j (loss measured)")
    ax.set_ylabel("source task i (step taken)")
    ax.set_title(title)
    if annotate and k <= 16:
        for i in range(k):
            for j in range(k):
                if math.isfinite(z[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{z[i, j]:.2g}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if abs(z[i, j]) > 0.6 * vmax else "black",
                    )
    return _save(fig, path, dpi)


def plot_loss_trajectories(
    losses: Any,
    path: PathLike,
    *,
    task_names: Sequence[str] | None = None,
    steps: Sequence[float] | None = None,
    log_scale: bool = False,
    title: str = "Per-task training loss",
    dpi: int = 120,
) -> Path:
    """Per-task losses over steps.

    Args:
        losses: ``[T, K]`` (a tensor, an array or a list of per-step K-vectors): one line per task
            on one panel; or ``{method: [T, K]}``: one panel per task, one line per method.
        steps: the x values (default 0..T-1); with several methods, every method must then have
            that many points (without ``steps`` each method may have its own T).
    """
    _check_path(path)
    if isinstance(losses, Mapping):
        if not losses:
            raise ValueError("no methods to plot.")
        series = {str(m): _matrix(v, f"losses[{m!r}]") for m, v in losses.items()}
        k = next(iter(series.values())).shape[1]
        if any(v.shape[1] != k for v in series.values()):
            raise ValueError("every method needs the same number of tasks.")
        names = _names(task_names, k)
        cols = min(k, 3)
        rows = math.ceil(k / cols)
        fig = _figure(4.2 * cols, 3.2 * rows)
        axes = fig.subplots(rows, cols, squeeze=False)
        for t in range(k):
            ax = axes[t // cols][t % cols]
            for m, v in series.items():
                ax.plot(_steps(steps, v.shape[0]), v[:, t], label=m)
            ax.set_title(names[t])
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            if log_scale:
                ax.set_yscale("log")
        for t in range(k, rows * cols):
            axes[t // cols][t % cols].set_visible(False)
        axes[0][0].legend(fontsize=8)
        fig.suptitle(title)
    else:
        v = _matrix(losses, "losses")
        names = _names(task_names, v.shape[1])
        fig = _figure(6.0, 4.0)
        ax = fig.add_subplot()
        x = _steps(steps, v.shape[0])
        for t in range(v.shape[1]):
            ax.plot(x, v[:, t], label=names[t])
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if log_scale:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set_title(title)
    return _save(fig, path, dpi)


def plot_weight_trajectories(
    weights: Mapping[str, Any] | Any,
    path: PathLike,
    *,
    task_names: Sequence[str] | None = None,
    steps: Sequence[float] | None = None,
    title: str = "Task weights over training",
    dpi: int = 120,
) -> Path:
    """The per-step task weights of one or more weighting methods: a panel per method, a line per task.

    Args:
        weights: ``{method: [per-step weight vector, ...]}`` (each vector K long, e.g. the
            ``StepRecord.weights`` of :func:`weighted_backward`), or one method's ``[T, K]``.
    """
    _check_path(path)
    series = (
        {str(m): _matrix(v, f"weights[{m!r}]") for m, v in weights.items()}
        if isinstance(weights, Mapping)
        else {"": _matrix(weights, "weights")}
    )
    if not series:
        raise ValueError("no methods to plot.")
    k = next(iter(series.values())).shape[1]
    if any(v.shape[1] != k for v in series.values()):
        raise ValueError("every method needs the same number of tasks.")
    names = _names(task_names, k)
    n = len(series)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = _figure(4.2 * cols, 3.2 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for idx, (m, v) in enumerate(series.items()):
        ax = axes[idx // cols][idx % cols]
        x = _steps(steps, v.shape[0])
        for t in range(k):
            ax.plot(x, v[:, t], label=names[t])
        ax.set_title(m or title)
        ax.set_xlabel("step")
        ax.set_ylabel("weight")
    for idx in range(n, rows * cols):
        axes[idx // cols][idx % cols].set_visible(False)
    axes[0][0].legend(fontsize=8)
    if n > 1 or list(series)[0]:
        fig.suptitle(title)
    return _save(fig, path, dpi)


def plot_gradient_conflict(
    history: Mapping[str, Any] | Any,
    path: PathLike,
    *,
    layers: Sequence[str] | None = None,
    title: str = "Gradient conflict rate per shared layer",
    dpi: int = 120,
) -> Path:
    """Conflict rate (fraction of task pairs with negative gradient cosine) over the recorded steps.

    Args:
        history: :meth:`GradientConflictTracker.history` (or the tracker itself).
        layers: which layers to draw (default: every layer and the all-shared entry ``"*"``).
    """
    _check_path(path)
    if hasattr(history, "history") and callable(history.history):
        history = history.history()
    if not isinstance(history, Mapping) or "steps" not in history:
        raise TypeError("plot_gradient_conflict takes GradientConflictTracker.history() (a dict with 'steps').")
    recorded = history["steps"]
    if not recorded:
        raise ValueError("the gradient-conflict history has no recorded steps.")
    steps = sorted(recorded, key=lambda s: float(s))
    available = list(recorded[steps[0]])
    chosen = list(layers) if layers is not None else available
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise KeyError(f"layer(s) {unknown} are not in the history; layers: {available}.")
    x = [float(s) for s in steps]
    fig = _figure(6.5, 4.0)
    ax = fig.add_subplot()
    for name in chosen:
        y = [recorded[s][name]["conflict_rate"] for s in steps]
        style = {"color": "black", "linewidth": 2.0} if name == "*" else {}
        ax.plot(x, y, marker="o" if len(x) < 30 else None, label="all shared" if name == "*" else name, **style)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("conflict rate")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path, dpi)
