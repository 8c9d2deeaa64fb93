"""How a multi-task method compares with single-task learning: relative changes, Delta_m %, mean rank.

**Delta_m %** (Maninis, Radosavovic & Kokkinos 2019, "Attentive Single-Tasking of Multiple
Tasks", CVPR; in the form and sign convention of Navon et al. 2022, "Multi-Task Learning as a
Bargaining Game" (Nash-MTL), eq. in Sec. 6)::

    Delta_m = (100 / K) * sum_k (-1)^{s_k} * (M_m,k - M_b,k) / M_b,k

where ``M_m,k`` is the method's metric on task k, ``M_b,k`` the single-task baseline's and
``s_k = 1`` when a higher value of task k's metric is better (accuracy), ``s_k = 0`` when a
lower value is better (MAE, error). Each term is therefore the *relative degradation* of task
k in percent: positive when the method is worse than the baseline on task k, negative when
it is better, whichever way the metric points. **Lower Delta_m is better; Delta_m < 0 means
the method beats single-task learning on average; Delta_m > 0 is net negative transfer.**

The relative change is only meaningful for metrics with a positive baseline (the division by
``M_b,k`` keeps its sign otherwise and flips the direction), so a baseline <= 0 is an error.

**Mean rank** (as reported next to Delta_m by e.g. Nash-MTL and Liu et al. 2021's CAGrad):
on each task, rank the methods from 1 (best) to M (worst), ties taking the average of the
ranks they span; the method's mean rank is the mean of its K ranks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["delta_m", "mean_rank", "relative_changes"]

Directions = bool | Sequence[Any]


def _as_floats(values: Any, what: str) -> list[float]:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().tolist()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be a sequence of numbers (got {type(values).__name__}).") from err
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one number per task (got shape {arr.shape}).")
    out = [float(v) for v in arr]
    for k, v in enumerate(out):
        if not math.isfinite(v):
            raise ValueError(f"{what}: task {k} has a non-finite value ({v}).")
    return out


def _directions(higher_is_better: Directions, num_tasks: int) -> list[bool]:
    """``higher_is_better`` as K booleans: one bool for every task, K bools, or K objects with a
    ``higher_is_better`` attribute (:class:`~metabridge.multitask.tasks.TaskSpec`)."""
    if isinstance(higher_is_better, bool):
        return [higher_is_better] * num_tasks
    flags = [getattr(h, "higher_is_better", h) for h in higher_is_better]
    if len(flags) != num_tasks:
        raise ValueError(f"higher_is_better has {len(flags)} entries for {num_tasks} tasks.")
    for k, f in enumerate(flags):
        if not isinstance(f, bool):
            raise TypeError(f"higher_is_better[{k}] must be a bool or a TaskSpec (got {type(f).__name__}).")
    return [bool(f) for f in flags]


def relative_changes(
    method_metrics: Sequence[float], baseline_metrics: Sequence[float], higher_is_better: Directions
) -> list[float]:
    """The K terms of Delta_m, in percent: ``(-1)^{s_k} * 100 * (M_m,k - M_b,k) / M_b,k``.

    Term k is the relative *degradation* of task k against its baseline: positive means the
    method is worse than the baseline on task k, negative means better (for higher-is-better
    metrics the sign of the raw relative change is flipped, ``s_k = 1``).

    Args:
        method_metrics: the method's metric on each of the K tasks.
        baseline_metrics: the single-task baselines' metrics on the same K tasks (each > 0).
        higher_is_better: per task, whether a higher metric is better: K bools, K
            :class:`TaskSpec` objects, or one bool for all tasks.

    Example: accuracy 0.90 vs baseline 0.80 (higher better) gives -12.5; MAE 1.1 vs 1.0 (lower
    better) gives +10.0.
    """
    m = _as_floats(method_metrics, "method_metrics")
    b = _as_floats(baseline_metrics, "baseline_metrics")
    if len(m) != len(b):
        raise ValueError(f"method_metrics has {len(m)} tasks but baseline_metrics has {len(b)}.")
    if not m:
        raise ValueError("relative_changes needs at least one task.")
    flags = _directions(higher_is_better, len(m))
    out = []
    for k, (mk, bk, hib) in enumerate(zip(m, b, flags)):
        if bk <= 0:
            raise ValueError(
                f"task {k}: the baseline metric must be > 0 for a relative change (got {bk}); Delta_m divides by it."
            )
        change = 100.0 * (mk - bk) / bk
        out.append(-change if hib else change)
    return out


def delta_m(method_metrics: Sequence[float], baseline_metrics: Sequence[float], higher_is_better: Directions) -> float:
    """Delta_m % = mean over tasks of :func:`relative_changes` (lower is better; < 0 beats the baselines).

    ``Delta_m = (100/K) * sum_k (-1)^{s_k} (M_m,k - M_b,k) / M_b,k`` with ``s_k = 1`` for a
    higher-is-better metric (Maninis et al. 2019; Navon et al. 2022's sign convention).
    """
    terms = relative_changes(method_metrics, baseline_metrics, higher_is_better)
    return sum(terms) / len(terms)


def _average_ranks(scores: list[float]) -> list[float]:
    """Ranks 1..n of ``scores`` (lower score = rank 1), ties averaged."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        tied_rank = (start + end) / 2 + 1  # mean of ranks start+1 .. end+1
        for pos in range(start, end + 1):
            ranks[order[pos]] = tied_rank
        start = end + 1
    return ranks


def mean_rank(table: Mapping[str, Sequence[float]], higher_is_better: Directions) -> dict[str, float]:
    """Mean over tasks of each method's rank among the methods (1 = best, ties averaged).

    Args:
        table: method name -> its metric on each of the K tasks (every method the same K tasks).
        higher_is_better: per task, whether a higher metric is better (as in :func:`relative_changes`).

    Returns:
        method name -> mean rank, in the table's order. With M methods the ranks lie in [1, M];
        two methods tied on a task both get the mean of the two ranks they span (e.g. 1.5).
    """
    if not table:
        raise ValueError("mean_rank needs at least one method.")
    methods = list(table)
    rows = {name: _as_floats(table[name], f"table[{name!r}]") for name in methods}
    k = len(rows[methods[0]])
    for name in methods:
        if len(rows[name]) != k:
            raise ValueError(
                f"every method needs the same number of tasks: {methods[0]!r} has {k}, {name!r} has {len(rows[name])}."
            )
    if k == 0:
        raise ValueError("mean_rank needs at least one task.")
    flags = _directions(higher_is_better, k)
    totals = dict.fromkeys(methods, 0.0)
    for task in range(k):
        # lower key = better; negate a higher-is-better metric
        keys = [(-rows[name][task] if flags[task] else rows[name][task]) for name in methods]
        for name, r in zip(methods, _average_ranks(keys)):
            totals[name] += r
    return {name: totals[name] / k for name in methods}
