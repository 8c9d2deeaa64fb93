"""Trade-off maps of DRS against MAML (Gao & Sener, NeurIPS 2020, "Modeling and optimization
trade-off in meta-learning", Sec. 5).

Gao & Sener compare a domain-randomized search (DRS) and MAML over a grid of
(meta-training budget checkpoint c) x (number k of test-time fine-tuning updates). Each
cell of the *trade-off map* is the signed confidence of a one-sided Welch t-test between
the two methods, computed across training seeds. This module reproduces the statistics of
their reference script (``isl-org/MetaLearningTradeoffs``, ``experiments/benchmark/summary.py``)
in NumPy alone (no SciPy):

1. **Per seed** i (of n): the mean return over test trials and its standard error,
   ``m_i = mean(trials_i)``, ``e_i = std(trials_i) / sqrt(T_i)``.
2. **Across seeds**: ``m = mean_i m_i`` and the combined standard error
   ``se = sqrt((var_i m_i + mean_i e_i^2) / n)``  (between-seed plus within-seed variance).
   Their code uses ``np.std`` / ``np.var`` (``ddof=0``) for both; so does ``ddof=0`` here.
3. **Welch test** between DRS (1) and MAML (2) with sample standard deviations
   ``s_j = sqrt(n_j) se_j`` (so that ``s_j^2 / n_j = se_j^2``)::

       t  = (m1 - m2) / sqrt(s1^2/n1 + s2^2/n2)                                  (Welch 1947)
       nu = (s1^2/n1 + s2^2/n2)^2 / ((s1^2/n1)^2/(n1-1) + (s2^2/n2)^2/(n2-1))    (Welch-Satterthwaite)
       p  = P(T_nu > |t|) = 0.5 * I_{nu/(nu+t^2)}(nu/2, 1/2)                      (one-sided tail)

   ``I_x(a, b)`` is the regularized incomplete beta function.
4. **Map value** ``b (1 - 2p)`` in [-1, 1], with ``b = +1`` if DRS's mean exceeds MAML's and
   ``-1`` otherwise: positive (red in ``RdBu_r``) where DRS is better, negative (blue) where
   MAML is better, near 0 where the test cannot tell them apart. ``1 - 2p`` is one minus the
   two-sided p-value.

**Degrees of freedom.** The reference script writes the Welch-Satterthwaite denominator as
``s1^4/n1/(n1-1) + s2^4/n2/(n2-1)``, i.e. ``n1 (s1^2/n1)^2/(n1-1) + n2 (s2^2/n2)^2/(n2-1)``:
with equal seed counts that is the textbook value divided by n (nu between (n-1)/n and
2(n-1)/n instead of between n-1 and 2(n-1)), a much heavier-tailed t distribution and hence
larger p-values (paler maps). This module uses the textbook formula by default;
``paper_dof=True`` reproduces theirs.

The incomplete beta function is evaluated by its continued fraction (Abramowitz & Stegun
26.5.8) with the modified Lentz algorithm (Numerical Recipes, 2nd ed., Secs. 5.2 and 6.4),
using the symmetry ``I_x(a, b) = 1 - I_{1-x}(b, a)`` for ``x > (a+1)/(a+b+2)``, and a
Stirling-series log-beta that avoids the cancellation of ``lgamma`` differences for large a, b.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from metabridge.rl._special_functions import FloatArray, _as_f64, regularized_incomplete_beta, student_t_sf

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

__all__ = [
    "TradeoffMap",
    "plot_tradeoff_map",
    "regularized_incomplete_beta",
    "seed_statistics",
    "student_t_sf",
    "tradeoff_map",
    "welch_one_sided",
]

COLORBAR_LABEL = "sign(DRS - MAML) (1 - 2p)"
_ANNOTATE_MAX = (12, 8)  # (checkpoints, updates): annotate each cell up to this size


# --------------------------------------------------------------------------- Welch test


def welch_one_sided(
    mean1: ArrayLike,
    std1: ArrayLike,
    n1: ArrayLike,
    mean2: ArrayLike,
    std2: ArrayLike,
    n2: ArrayLike,
    *,
    paper_dof: bool = False,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Welch's unequal-variance t-test from summary statistics, one-sided in the observed direction.

    ``std1``, ``std2`` are *sample* standard deviations (``ddof=1`` of the raw samples, or
    ``sqrt(n) * stderr``), ``n1, n2 >= 2`` the sample sizes. Returns ``(t, dof, p)`` with
    ``t = (mean1 - mean2) / sqrt(std1^2/n1 + std2^2/n2)``, ``dof`` the Welch-Satterthwaite degrees
    of freedom ``(v1 + v2)^2 / (v1^2/(n1-1) + v2^2/(n2-1))``, ``v_j = std_j^2 / n_j`` (or, with
    ``paper_dof=True``, Gao & Sener's ``(v1 + v2)^2 / (std1^4/n1/(n1-1) + std2^4/n2/(n2-1))``), and
    ``p = P(T_dof > |t|)``: the p-value of ``alternative='greater'`` when ``mean1 > mean2`` and of
    ``'less'`` otherwise (``scipy.stats.ttest_ind(..., equal_var=False)``).

    Zero variance never yields NaN: both standard deviations zero gives ``p = 0.5``, ``t = 0`` for
    equal means and ``p = 0``, ``t = +-inf`` for different means, with ``dof = n1 + n2 - 2``; one of
    them zero is the ordinary limit (``dof = n_other - 1``). Arguments broadcast.
    """
    m1, s1, k1, m2, s2, k2 = np.broadcast_arrays(*(_as_f64(v) for v in (mean1, std1, n1, mean2, std2, n2)))
    with np.errstate(invalid="ignore"):
        if np.any(k1 < 2) or np.any(k2 < 2):
            raise ValueError("welch_one_sided needs n1 >= 2 and n2 >= 2 samples.")
        if np.any(s1 < 0) or np.any(s2 < 0):
            raise ValueError("welch_one_sided needs non-negative standard deviations.")
    v1, v2 = s1 * s1 / k1, s2 * s2 / k2
    total = v1 + v2
    diff = m1 - m2
    degenerate = total == 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(degenerate, np.where(diff == 0.0, 0.0, np.sign(diff) * np.inf), diff / np.sqrt(total))
        r1 = np.where(degenerate, 0.5, v1 / total)  # scale-free: no under/overflow of v^2
        r2 = 1.0 - r1
        if paper_dof:
            denom = k1 * r1 * r1 / (k1 - 1.0) + k2 * r2 * r2 / (k2 - 1.0)
        else:
            denom = r1 * r1 / (k1 - 1.0) + r2 * r2 / (k2 - 1.0)
        dof = np.where(degenerate, k1 + k2 - 2.0, 1.0 / denom)
        dof = np.where(np.isnan(total), np.nan, dof)
    p = np.full(t.shape, np.nan)
    ok = ~(np.isnan(t) | np.isnan(dof))
    if ok.any():
        p[ok] = student_t_sf(np.abs(t[ok]), dof[ok])
    return t[()], dof[()], p[()]


# --------------------------------------------------------------------------- seeds and maps


def seed_statistics(
    per_seed_trials: ArrayLike | Sequence[ArrayLike] | None = None,
    *,
    seed_means: ArrayLike | None = None,
    seed_stderrs: ArrayLike | None = None,
    ddof: int = 0,
) -> tuple[FloatArray, FloatArray]:
    """Across-seed mean and combined standard error (Gao & Sener's ``summary.py``).

    Either ``per_seed_trials`` of shape ``[seeds, trials, *rest]`` (or a list of 1-D per-seed
    trial arrays of different lengths), from which ``m_i = mean(trials_i)`` and
    ``e_i = std(trials_i, ddof) / sqrt(T_i)``; or those directly as ``seed_means`` /
    ``seed_stderrs`` of shape ``[seeds, *rest]`` (stderrs default to zero). Returns
    ``(mean_i m_i, sqrt((var(m_i, ddof) + mean_i e_i^2) / n))`` of shape ``rest``. ``ddof=0``
    matches the reference code (``np.std`` / ``np.var``); ``ddof=1`` gives the unbiased versions.
    """
    if per_seed_trials is not None:
        if seed_means is not None or seed_stderrs is not None:
            raise ValueError("seed_statistics takes per_seed_trials or seed_means/seed_stderrs, not both.")
        trials: list[FloatArray] | FloatArray
        if isinstance(per_seed_trials, Sequence) and not isinstance(per_seed_trials, np.ndarray):
            trials = [_as_f64(row) for row in per_seed_trials]
            ragged = len({row.shape for row in trials}) > 1
        else:
            trials, ragged = _as_f64(per_seed_trials), False
        if ragged:
            if any(row.ndim != 1 or row.size == 0 for row in trials):
                raise ValueError("seed_statistics: ragged per_seed_trials must be non-empty 1-D arrays.")
            means = np.array([row.mean() for row in trials])
            stderrs = np.array([row.std(ddof=ddof) / math.sqrt(row.size) for row in trials])
        else:
            arr = np.asarray(trials, dtype=np.float64)
            if arr.ndim < 2 or arr.shape[1] == 0:
                raise ValueError(f"seed_statistics: per_seed_trials must be [seeds, trials, ...] (got {arr.shape}).")
            means = arr.mean(axis=1)
            stderrs = arr.std(axis=1, ddof=ddof) / math.sqrt(arr.shape[1])
    else:
        if seed_means is None:
            raise ValueError("seed_statistics needs per_seed_trials or seed_means.")
        means = _as_f64(seed_means)
        stderrs = np.zeros_like(means) if seed_stderrs is None else _as_f64(seed_stderrs)
        if means.ndim < 1 or stderrs.shape != means.shape:
            raise ValueError(
                f"seed_statistics: seed_means {means.shape} and seed_stderrs {stderrs.shape} "
                "must share a shape [seeds, ...]."
            )
    n = means.shape[0]
    if n == 0:
        raise ValueError("seed_statistics needs at least one seed.")
    if np.any(stderrs < 0):
        raise ValueError("seed_statistics: standard errors must be non-negative.")
    mean = means.mean(axis=0)
    var = means.var(axis=0, ddof=ddof) if n > ddof else np.zeros_like(mean)
    stderr = np.sqrt((var + np.mean(stderrs * stderrs, axis=0)) / n)
    return np.asarray(mean)[()], np.asarray(stderr)[()]


def _json_list(x: FloatArray) -> Any:
    """Nested lists with non-finite entries as None (strict JSON)."""
    obj = np.asarray(x, dtype=object)
    obj[~np.isfinite(np.asarray(x, dtype=np.float64))] = None
    return obj.tolist()


@dataclass(frozen=True, eq=False)
class TradeoffMap:
    """A DRS-vs-MAML trade-off map over ``[checkpoints, updates]`` (Gao & Sener 2020, Sec. 5).

    ``value = sign * (1 - 2 p)`` in [-1, 1] (positive: DRS better); ``sign`` is +1 where DRS's mean
    exceeds MAML's and -1 elsewhere; ``p``, ``t``, ``dof`` are the one-sided Welch test per cell;
    ``*_mean`` / ``*_stderr`` the across-seed statistics of each method; ``n_drs`` / ``n_maml`` the
    seed counts; ``paper_dof`` whether the reference code's degrees of freedom were used.
    """

    value: FloatArray
    sign: FloatArray
    p: FloatArray
    t: FloatArray
    dof: FloatArray
    drs_mean: FloatArray
    drs_stderr: FloatArray
    maml_mean: FloatArray
    maml_stderr: FloatArray
    n_drs: int
    n_maml: int
    paper_dof: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        """``(checkpoints, updates)``."""
        c, k = self.value.shape
        return int(c), int(k)

    def significant(self, alpha: float = 0.05) -> NDArray[np.bool_]:
        """Cells where the one-sided test rejects equal means at level ``alpha`` (``p < alpha``)."""
        return np.asarray(self.p < alpha)

    def to_json(self) -> dict[str, Any]:
        """A ``json.dumps``-able dict: nested lists ``[checkpoints][updates]`` (non-finite ``t`` -> None)."""
        return {
            "value": _json_list(self.value),
            "sign": _json_list(self.sign),
            "p": _json_list(self.p),
            "t": _json_list(self.t),
            "dof": _json_list(self.dof),
            "drs_mean": _json_list(self.drs_mean),
            "drs_stderr": _json_list(self.drs_stderr),
            "maml_mean": _json_list(self.maml_mean),
            "maml_stderr": _json_list(self.maml_stderr),
            "n_drs": self.n_drs,
            "n_maml": self.n_maml,
            "paper_dof": self.paper_dof,
            "checkpoints": self.shape[0],
            "updates": self.shape[1],
        }


def tradeoff_map(
    drs: ArrayLike,
    maml: ArrayLike,
    drs_stderr: ArrayLike | None = None,
    maml_stderr: ArrayLike | None = None,
    *,
    paper_dof: bool = False,
    ddof: int = 0,
) -> TradeoffMap:
    """The trade-off map of DRS against MAML (Gao & Sener 2020, Sec. 5; ``get_tradeoff_map`` of their code).

    ``drs`` and ``maml`` are per-seed mean returns of shape ``[seeds, checkpoints, updates]`` (the
    seed counts may differ, each >= 2); ``drs_stderr`` / ``maml_stderr`` the per-seed standard
    errors over test trials, same shapes, zero by default. Per cell: across-seed mean and combined
    stderr (:func:`seed_statistics`), the one-sided Welch test (:func:`welch_one_sided`) with
    ``s_j = sqrt(n_j) stderr_j``, and ``value = sign(DRS - MAML) (1 - 2p)``.
    """
    d, m = _as_f64(drs), _as_f64(maml)
    if d.ndim != 3 or m.ndim != 3:
        raise ValueError(f"tradeoff_map needs [seeds, checkpoints, updates] arrays (got {d.shape} and {m.shape}).")
    if d.shape[1:] != m.shape[1:]:
        raise ValueError(f"tradeoff_map: DRS grid {d.shape[1:]} differs from MAML grid {m.shape[1:]}.")
    n_drs, n_maml = d.shape[0], m.shape[0]
    if n_drs < 2 or n_maml < 2:
        raise ValueError(f"tradeoff_map needs at least 2 seeds per method (got {n_drs} and {n_maml}).")
    d_mean, d_se = seed_statistics(seed_means=d, seed_stderrs=drs_stderr, ddof=ddof)
    m_mean, m_se = seed_statistics(seed_means=m, seed_stderrs=maml_stderr, ddof=ddof)
    t, dof, p = welch_one_sided(
        d_mean, math.sqrt(n_drs) * d_se, n_drs, m_mean, math.sqrt(n_maml) * m_se, n_maml, paper_dof=paper_dof
    )
    sign = np.where(d_mean > m_mean, 1.0, -1.0)
    value = sign * (1.0 - 2.0 * p)
    return TradeoffMap(
        value=np.asarray(value),
        sign=sign,
        p=np.asarray(p),
        t=np.asarray(t),
        dof=np.asarray(dof),
        drs_mean=np.asarray(d_mean),
        drs_stderr=np.asarray(d_se),
        maml_mean=np.asarray(m_mean),
        maml_stderr=np.asarray(m_se),
        n_drs=n_drs,
        n_maml=n_maml,
        paper_dof=paper_dof,
    )


def plot_tradeoff_map(
    result: TradeoffMap | ArrayLike,
    budgets: ArrayLike | None = None,
    updates: ArrayLike | None = None,
    title: str | None = None,
    *,
    xlabel: str = "Meta-training budget",
    ylabel: str = "Test-time updates",
    kind: str = "pcolormesh",
    annotate: bool | None = None,
    figsize: tuple[float, float] = (6.0, 3.2),
) -> Figure:
    """Draw a trade-off map: x = training budget (samples or iterations), y = fine-tuning updates.

    ``result`` is a :class:`TradeoffMap` or a ``[checkpoints, updates]`` array of values;
    ``budgets`` / ``updates`` are the axis coordinates (default ``0..C-1`` / ``0..K-1``). ``kind`` is
    ``"pcolormesh"`` (one cell per grid point) or ``"contourf"`` (filled contours, as in the paper's
    figures; needs at least 2 x 2 points). Colours: ``RdBu_r`` on [-1, 1] (red: DRS better), with a
    colorbar labelled ``sign(DRS - MAML) (1 - 2p)``. With ``annotate=None`` each pcolormesh cell is
    labelled with its value when the grid is at most 12 x 8 checkpoints x updates (contours only
    when ``annotate=True``: their labels sit on the grid points, half of them on the frame). Uses ``matplotlib.figure.Figure``
    directly (no pyplot state): save with ``fig.savefig(path)``.
    """
    from matplotlib.figure import Figure

    values = result.value if isinstance(result, TradeoffMap) else _as_f64(result)
    if values.ndim != 2:
        raise ValueError(f"plot_tradeoff_map needs a [checkpoints, updates] map (got {values.shape}).")
    n_c, n_k = values.shape
    xs = np.arange(n_c, dtype=np.float64) if budgets is None else _as_f64(budgets).ravel()
    ys = np.arange(n_k, dtype=np.float64) if updates is None else _as_f64(updates).ravel()
    if xs.size != n_c or ys.size != n_k:
        raise ValueError(f"plot_tradeoff_map: {xs.size} budgets and {ys.size} updates for a {n_c} x {n_k} map.")
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    grid = values.T  # rows: updates (y), columns: checkpoints (x)
    if kind == "pcolormesh":
        artist: Any = ax.pcolormesh(xs, ys, grid, cmap="RdBu_r", vmin=-1.0, vmax=1.0, shading="nearest")
    elif kind == "contourf":
        if n_c < 2 or n_k < 2:
            raise ValueError("plot_tradeoff_map(kind='contourf') needs at least 2 checkpoints and 2 updates.")
        artist = ax.contourf(
            xs, ys, np.clip(grid, -1.0, 1.0), levels=np.linspace(-1.01, 1.01, 51), cmap="RdBu_r", vmin=-1.0, vmax=1.0
        )
    else:
        raise ValueError(f"plot_tradeoff_map: kind must be 'pcolormesh' or 'contourf' (got {kind!r}).")
    cbar = fig.colorbar(artist, ax=ax, ticks=[-1.0, -0.5, 0.0, 0.5, 1.0])
    cbar.set_label(COLORBAR_LABEL)
    if annotate is None:
        annotate = kind == "pcolormesh" and n_c <= _ANNOTATE_MAX[0] and n_k <= _ANNOTATE_MAX[1]
    if annotate:
        for i in range(n_c):
            for j in range(n_k):
                v = float(values[i, j])
                text = "nan" if math.isnan(v) else f"{v:+.2f}"
                ax.text(
                    xs[i], ys[j], text, ha="center", va="center", fontsize=7, color="white" if abs(v) > 0.6 else "black"
                )
    if n_k <= 12 and np.allclose(ys, np.round(ys)):
        ax.set_yticks(ys)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return fig
