"""Sweep of P(MAML beats DRS) over M, N and alpha (Gao & Sener, NeurIPS 2020, Sec. 5).

For every cell (alpha, M, N) we draw ``trials`` independent training sets of M
tasks x (N inner + N outer) points, fit DRS (E1) and one-step MAML (E3) from
:mod:`metabridge.theory.linreg`, and score both with the *exact* expected test loss
(E8) before (alpha = 0) and after one test-time step of size alpha on N support
points. "MAML beats DRS" for a training set means its exact expected loss is lower;
the reported probability is the fraction over training sets, with its binomial
standard error. The modeling / optimization split (E9) is reported per cell too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from metabridge.tasks.linear_regression import LinearRegressionFamily

from .linreg import expected_loss_form, sample_estimators

__all__ = ["linreg_sweep", "plot_beat_probability", "plot_error_split", "save_json"]


def linreg_sweep(
    family: LinearRegressionFamily,
    num_tasks: Sequence[int],
    n_points: Sequence[int],
    alphas: Sequence[float],
    trials: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the sweep; returns a JSON-ready dict with arrays indexed ``[alpha][M][N]``."""
    if trials <= 0:
        raise ValueError(f"trials must be positive (got {trials}).")
    if any(a < 0 for a in alphas):
        raise ValueError(f"step sizes must be >= 0 (got {list(alphas)}).")
    g = torch.Generator().manual_seed(seed)
    keys = (
        "p_before", "p_after", "p_before_se", "p_after_se",
        "drs_before", "maml_before", "drs_after", "maml_after",
        "drs_modeling", "maml_modeling", "drs_optimization", "maml_optimization",
    )  # fmt: skip
    res: dict[str, list] = {k: [] for k in keys}
    t0 = time.perf_counter()
    for alpha in alphas:
        rows: dict[str, list] = {k: [] for k in keys}
        for m in num_tasks:
            cells: dict[str, list] = {k: [] for k in keys}
            for n in n_points:
                pre = expected_loss_form(family, 0.0, n)
                post = expected_loss_form(family, alpha, n)
                w_drs, w_maml = sample_estimators(family, m, n, alpha, trials, g)
                fb_d, fb_m = pre(w_drs), pre(w_maml)
                fa_d, fa_m = post(w_drs), post(w_maml)
                pb = float((fb_m < fb_d).double().mean())
                pa = float((fa_m < fa_d).double().mean())
                star_d = float(post(pre.argmin))  # F_alpha at DRS's population solution
                vals = {
                    "p_before": pb,
                    "p_after": pa,
                    "p_before_se": math.sqrt(pb * (1 - pb) / trials),
                    "p_after_se": math.sqrt(pa * (1 - pa) / trials),
                    "drs_before": float(fb_d.mean()),
                    "maml_before": float(fb_m.mean()),
                    "drs_after": float(fa_d.mean()),
                    "maml_after": float(fa_m.mean()),
                    "drs_modeling": star_d - post.minimum,
                    "maml_modeling": 0.0,
                    "drs_optimization": float(fa_d.mean()) - star_d,
                    "maml_optimization": float(fa_m.mean()) - post.minimum,
                }
                for k in keys:
                    cells[k].append(vals[k])
            for k in keys:
                rows[k].append(cells[k])
        for k in keys:
            res[k].append(rows[k])
    fam = asdict(family)
    fam["weight_mean"] = family.mean_weights().tolist()
    return {
        "experiment": "gao_sener_linreg",
        "reference": "Gao & Sener, Modeling and Optimization Trade-off in Meta-learning, NeurIPS 2020, Sec. 5",
        "family": fam,
        "num_tasks_M": list(num_tasks),
        "points_per_split_N": list(n_points),
        "alphas": list(alphas),
        "trials": trials,
        "seed": seed,
        "index_order": "[alpha][M][N]",
        "seconds": time.perf_counter() - t0,
        **res,
    }


def save_json(obj: dict[str, Any], path: Path) -> None:
    """Write ``obj`` as indented JSON, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def plot_beat_probability(result: dict[str, Any], path: Path) -> None:
    """Heatmaps of P(MAML beats DRS): rows before / after the test-time step, one column per alpha."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas, ms, ns = result["alphas"], result["num_tasks_M"], result["points_per_split_N"]
    fig, axes = plt.subplots(2, len(alphas), figsize=(3.3 * len(alphas) + 1.4, 5.8), squeeze=False)
    fig.subplots_adjust(wspace=0.35, hspace=0.3, right=0.84)
    im = None
    for row, key, label in ((0, "p_before", "before step"), (1, "p_after", "after 1 step")):
        for col, alpha in enumerate(alphas):
            ax = axes[row][col]
            data = result[key][col]
            im = ax.imshow(data, vmin=0.0, vmax=1.0, cmap="RdBu", origin="lower", aspect="auto")
            for i in range(len(ms)):
                for j in range(len(ns)):
                    ax.text(j, i, f"{data[i][j]:.2f}", ha="center", va="center", fontsize=7)
            ax.set_xticks(range(len(ns)), [str(n) for n in ns])
            ax.set_yticks(range(len(ms)), [str(m) for m in ms])
            if row == 1:
                ax.set_xlabel("N (points per split)")
            if col == 0:
                ax.set_ylabel(f"{label}\nM (tasks)")
            if row == 0:
                ax.set_title(f"alpha = {alpha:g}")
    fam = result["family"]
    fig.suptitle(
        f"P(MAML beats DRS), exact expected test loss, {result['trials']} training sets/cell "
        f"(p={fam['dim']}, beta={fam['beta']}, kappa={fam['coupling']})",
        fontsize=9,
    )
    cax = fig.add_axes((0.87, 0.15, 0.02, 0.7))
    fig.colorbar(im, cax=cax, label="P(MAML beats DRS)")  # type: ignore[arg-type]  # im is the image drawn above
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_error_split(result: dict[str, Any], path: Path, alpha_index: int | None = None) -> None:
    """Modeling and optimization error (E9) of DRS and MAML against M, at the smallest and largest N.

    ``alpha_index`` defaults to the middle step size of the sweep. MAML's modeling
    error is zero by construction (E9) and is not drawn on the log axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms, ns = result["num_tasks_M"], result["points_per_split_N"]
    ai = len(result["alphas"]) // 2 if alpha_index is None else alpha_index
    alpha = result["alphas"][ai]
    n_indices = sorted({0, len(ns) - 1})
    fig, axes = plt.subplots(1, len(n_indices), figsize=(4.6 * len(n_indices), 3.6), squeeze=False)
    for ax, ni in zip(axes[0], n_indices):

        def col(key: str, ni: int = ni) -> list[float]:
            return [result[key][ai][i][ni] for i in range(len(ms))]

        for alg, color in (("drs", "tab:blue"), ("maml", "tab:red")):
            mod, opt = col(f"{alg}_modeling"), col(f"{alg}_optimization")
            ax.plot(ms, [a + b for a, b in zip(mod, opt)], "-o", color=color, label=f"{alg.upper()} total excess")
            ax.plot(ms, [max(o, 1e-12) for o in opt], "--", color=color, label=f"{alg.upper()} optimization")
            if alg == "drs" and max(mod) > 0:
                ax.plot(ms, mod, ":", color=color, label="DRS modeling (MAML's is 0)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("M (training tasks)")
        ax.set_ylabel("excess post-adaptation loss")
        ax.set_title(f"alpha={alpha:g}, N={ns[ni]}", fontsize=9)
        ax.legend(fontsize=7)
    fam = result["family"]
    fig.suptitle(f"Gao & Sener error split (E9), kappa={fam['coupling']}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
