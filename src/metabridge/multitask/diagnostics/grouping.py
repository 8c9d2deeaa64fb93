"""Which tasks to train together, from inter-task affinities (Task Affinity Grouping, Fifty et al.
2021, "Efficiently Identifying Task Groupings for Multi-Task Learning", NeurIPS, Sec. 3.2).

Given the affinity matrix ``Z[i, j] = Z_{i->j}`` (:mod:`.task_affinity`, averaged over training),
the affinity of a group G of tasks onto one of its members j is the mean affinity of the
*other* members onto j::

    S(G, j) = (1 / (|G| - 1)) * sum_{i in G, i != j} Z_{i->j}        (|G| >= 2)
    S({j}, j) = singleton_score                                       (default 0)

Rule for singletons (TAG leaves it implicit): a task trained alone receives no inter-task
transfer, which is what ``Z = 0`` means, so by default a singleton scores 0 (a task whose
partners all hurt it, Z < 0, is better alone). ``singleton_score`` changes this.

As in TAG, groups may **overlap**: a grouping is a set of at most ``num_groups`` groups such that
every task is in at least one; each task is *served* by the group containing it that scores
best for it (the network trained for that group is the one used to predict the task), and the
grouping's score is::

    score(C) = sum_j max_{G in C, j in G} S(G, j)

which the search maximises. With ``overlap=False`` the groups must be disjoint (a partition)
and every member is served by its own group.

Searches:

* ``"exhaustive"`` (K <= :data:`MAX_EXHAUSTIVE_TASKS` = 10): exact over all 2^K - 1 candidate groups.
  Choosing <= n overlapping groups is equivalent to partitioning the tasks into <= n *served
  sets* A and giving each the best superset group ``best(A) = max_{G >= A} sum_{j in A} S(G, j)``
  (a grouping induces such a partition by who serves whom, and the groups ``argmax best(A)`` of a
  partition score at least ``sum best(A)`` since each task may only find a better group), so the
  search computes ``best`` for every subset (3^K pairs, vectorised) and the best partition into
  <= n blocks by dynamic programming over subsets (O(n 3^K)). Ties go to smaller groups.
* ``"greedy"`` (any K): start from singletons, merge the best pair until <= n groups remain, then
  hill-climb (merge two groups, add/remove/move one task, drop a group, open a new pair group
  while there is room) while the score strictly rises. Never better than the exhaustive search.
* ``"auto"``: exhaustive up to 10 tasks, greedy above.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "MAX_EXHAUSTIVE_TASKS",
    "TaskGrouping",
    "exhaustive_grouping",
    "greedy_grouping",
    "group_score",
    "group_tasks",
    "grouping_score",
]

MAX_EXHAUSTIVE_TASKS = 10
GroupingMethod = Literal["auto", "exhaustive", "greedy"]


@dataclass(frozen=True)
class TaskGrouping:
    """A selected grouping.

    Attributes:
        groups: the groups, each a sorted tuple of task indices (sorted list; no duplicates).
        served_by: for each task j, the index in ``groups`` of the group that serves it.
        task_scores: for each task j, ``S(groups[served_by[j]], j)``.
        score: ``sum(task_scores)``, the quantity maximised.
        method: ``"exhaustive"`` or ``"greedy"``.
    """

    groups: list[tuple[int, ...]]
    served_by: list[int]
    task_scores: list[float]
    score: float
    method: str

    def named(self, task_names: Sequence[str]) -> list[tuple[str, ...]]:
        """The groups with task names instead of indices."""
        return [tuple(task_names[i] for i in g) for g in self.groups]

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [list(g) for g in self.groups],
            "served_by": list(self.served_by),
            "task_scores": list(self.task_scores),
            "score": self.score,
            "method": self.method,
        }


def _as_affinity(affinity: Any) -> np.ndarray:
    if hasattr(affinity, "detach"):
        affinity = affinity.detach().cpu().numpy()
    z = np.asarray(affinity, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] != z.shape[1] or z.shape[0] < 1:
        raise ValueError(f"the affinity must be a square [K, K] matrix (got shape {z.shape}).")
    if not np.isfinite(z).all():
        raise ValueError("the affinity matrix has non-finite entries.")
    return z


def group_score(affinity: Any, group: Iterable[int], task: int, singleton_score: float = 0.0) -> float:
    """``S(G, j)``: mean of ``Z[i, j]`` over the other members i of G (``singleton_score`` if G = {j})."""
    z = _as_affinity(affinity)
    return _score(z, tuple(group), task, singleton_score)


def _score(z: np.ndarray, group: Sequence[int], j: int, singleton_score: float) -> float:
    others = [i for i in group if i != j]
    if len(others) == len(group):
        raise ValueError(f"task {j} is not in group {tuple(group)}.")
    return float(z[others, j].mean()) if others else float(singleton_score)


def _evaluate(
    z: np.ndarray, groups: Sequence[Sequence[int]], singleton_score: float, overlap: bool = True
) -> tuple[list[int], list[float]]:
    k = z.shape[0]
    served = [-1] * k
    scores = [float("-inf")] * k
    for gi, g in enumerate(groups):
        for j in g:
            if not overlap and served[j] >= 0:
                raise ValueError(f"task {j} is in two groups but overlap=False.")
            s = _score(z, g, j, singleton_score)
            if served[j] < 0 or s > scores[j]:
                served[j], scores[j] = gi, s
    missing = [j for j in range(k) if served[j] < 0]
    if missing:
        raise ValueError(f"task(s) {missing} are in no group: every task must be covered.")
    return served, scores


def _canonical(groups: Iterable[Iterable[int]], k: int) -> list[tuple[int, ...]]:
    out = sorted({tuple(sorted(set(int(i) for i in g))) for g in groups if g})
    for g in out:
        if any(i < 0 or i >= k for i in g):
            raise ValueError(f"group {g} has a task index outside 0..{k - 1}.")
    return out


def grouping_score(affinity: Any, groups: Iterable[Iterable[int]], singleton_score: float = 0.0) -> float:
    """``sum_j max_{G in groups, j in G} S(G, j)``; every task must be in some group."""
    z = _as_affinity(affinity)
    _, scores = _evaluate(z, _canonical(groups, z.shape[0]), singleton_score)
    return float(sum(scores))


def _result(
    z: np.ndarray, groups: Iterable[Iterable[int]], singleton_score: float, method: str, overlap: bool
) -> TaskGrouping:
    canon = _canonical(groups, z.shape[0])
    served, scores = _evaluate(z, canon, singleton_score, overlap)
    used = sorted(set(served))  # drop groups that serve nobody (they cannot raise the score)
    canon = [canon[i] for i in used]
    served, scores = _evaluate(z, canon, singleton_score, overlap)
    return TaskGrouping(canon, served, scores, float(sum(scores)), method)


def _check_num_groups(num_groups: int, k: int) -> int:
    if not isinstance(num_groups, (int, np.integer)) or isinstance(num_groups, bool) or num_groups < 1:
        raise ValueError(f"num_groups must be a positive integer (got {num_groups!r}).")
    return min(int(num_groups), k)  # more groups than tasks never helps: each task is served by one


def exhaustive_grouping(
    affinity: Any, num_groups: int, *, singleton_score: float = 0.0, overlap: bool = True
) -> TaskGrouping:
    """The best grouping into at most ``num_groups`` groups, exactly, over all 2^K - 1 candidate groups.

    Raises ValueError for K > :data:`MAX_EXHAUSTIVE_TASKS` (use :func:`greedy_grouping`).
    """
    z = _as_affinity(affinity)
    k = z.shape[0]
    if k > MAX_EXHAUSTIVE_TASKS:
        raise ValueError(
            f"the exhaustive grouping search is limited to {MAX_EXHAUSTIVE_TASKS} tasks (got {k}: "
            f"2^{k} candidate groups); use method='greedy' (greedy_grouping) instead."
        )
    n = _check_num_groups(num_groups, k)
    full = (1 << k) - 1
    # candidate groups ordered by size then mask, so that argmax breaks ties towards smaller groups
    masks = np.array(sorted(range(1, full + 1), key=lambda m: (bin(m).count("1"), m)), dtype=np.int64)
    member = ((masks[:, None] >> np.arange(k)[None, :]) & 1).astype(bool)  # [M, K]
    size = member.sum(1)
    colsum = member.astype(np.float64) @ z  # [G, j] = sum_{i in G} Z[i, j]
    s = (colsum - np.diag(z)[None, :]) / np.maximum(size - 1, 1)[:, None]
    s[size == 1] = singleton_score
    s = np.where(member, s, 0.0)  # S(G, j), 0 outside G (never read: only A subset of G is allowed)
    # value[A, G] = sum_{j in A} S(G, j) for A subset of G
    value = member.astype(np.float64) @ s.T
    if overlap:
        subset = (masks[:, None] & ~masks[None, :]) == 0  # A subset of G
    else:
        subset = masks[:, None] == masks[None, :]  # a partition: each block is its own group
    value = np.where(subset, value, -np.inf)
    best_col = value.argmax(1)
    best = {int(a): float(value[r, best_col[r]]) for r, a in enumerate(masks)}
    best_group = {int(a): int(masks[best_col[r]]) for r, a in enumerate(masks)}

    # f[mask] with <= m blocks, built for m = 1..n; choice[m][mask] = the block holding mask's lowest task
    f = {0: 0.0, **best}
    choice: list[dict[int, int]] = [{}, {m: m for m in best}]
    for m in range(2, n + 1):
        g, ch = {0: 0.0}, {}
        for mask in range(1, full + 1):
            low = mask & -mask
            rest = mask ^ low
            top_val, top_block = f[mask], choice[m - 1].get(mask, mask)  # fewer blocks
            sub = rest
            while True:  # blocks = low | (every submask of rest)
                block = low | sub
                if block != mask:
                    v = best[block] + f[mask ^ block]
                    if v > top_val:
                        top_val, top_block = v, block
                if sub == 0:
                    break
                sub = (sub - 1) & rest
            g[mask], ch[mask] = top_val, top_block
        f = g
        choice.append(ch)
    blocks, mask, m = [], full, n
    while mask:
        block = choice[m][mask]
        if block == mask or m == 1:
            blocks.append(mask)
            break
        blocks.append(block)
        mask ^= block
        m -= 1
    groups = [[i for i in range(k) if best_group[b] >> i & 1] for b in blocks]
    return _result(z, groups, singleton_score, "exhaustive", overlap)


def greedy_grouping(
    affinity: Any,
    num_groups: int,
    *,
    singleton_score: float = 0.0,
    overlap: bool = True,
    max_iterations: int | None = None,
) -> TaskGrouping:
    """A grouping into at most ``num_groups`` groups by agglomerative merging then hill climbing.

    Polynomial in K (each move evaluation is O(K^2)); a local optimum, so its score is at most the
    exhaustive search's. ``max_iterations`` bounds the hill climbing (default 50 K^2).
    """
    z = _as_affinity(affinity)
    k = z.shape[0]
    n = _check_num_groups(num_groups, k)
    limit = max_iterations if max_iterations is not None else 50 * k * k

    def total(groups: list[frozenset]) -> float:
        try:
            _, sc = _evaluate(z, [tuple(sorted(g)) for g in groups], singleton_score, overlap)
        except ValueError:  # uncovered task, or a task twice without overlap
            return float("-inf")
        return float(sum(sc))

    groups = [frozenset([j]) for j in range(k)]

    def merges(gs: list[frozenset]) -> Iterable[list[frozenset]]:
        for a, b in itertools.combinations(range(len(gs)), 2):
            yield [g for i, g in enumerate(gs) if i not in (a, b)] + [gs[a] | gs[b]]

    while len(groups) > n:
        groups = max(merges(groups), key=total)

    def neighbours(gs: list[frozenset]) -> Iterable[list[frozenset]]:
        yield from merges(gs)
        for gi, g in enumerate(gs):
            rest = gs[:gi] + gs[gi + 1 :]
            if len(gs) > 1:
                yield rest  # drop a group
            for t in range(k):
                if t in g:
                    if len(g) > 1:
                        yield rest + [g - {t}]  # remove t from g
                        for hi, h in enumerate(gs):  # move t from g to h
                            if hi != gi and t not in h:
                                yield [x for i, x in enumerate(gs) if i not in (gi, hi)] + [g - {t}, h | {t}]
                elif overlap:
                    yield rest + [g | {t}]  # add t to g
        if len(gs) < n:
            for a, b in itertools.combinations(range(k), 2):
                yield gs + [frozenset((a, b))]
            for t in range(k):
                yield gs + [frozenset([t])]

    current = total(groups)
    for _ in range(limit):
        best_val, best_groups = current, None
        for cand in neighbours(groups):
            v = total(cand)
            if v > best_val + 1e-12:
                best_val, best_groups = v, cand
        if best_groups is None:
            break
        groups, current = best_groups, best_val
    return _result(z, groups, singleton_score, "greedy", overlap)


def group_tasks(
    affinity: Any,
    num_groups: int,
    method: GroupingMethod = "auto",
    *,
    singleton_score: float = 0.0,
    overlap: bool = True,
) -> TaskGrouping:
    """Select at most ``num_groups`` (overlapping, unless ``overlap=False``) task groups maximising
    ``sum_j max_{G containing j} S(G, j)``.

    Args:
        affinity: ``[K, K]`` with ``affinity[i, j] = Z_{i->j}`` (tensor, array or nested lists).
        num_groups: the most groups (networks) allowed; capped at K.
        method: ``"exhaustive"`` (exact, K <= 10), ``"greedy"``, or ``"auto"`` (exhaustive when K <= 10).
        singleton_score: ``S({j}, j)``, the score of a task trained alone (default 0).
        overlap: allow a task in several groups (TAG); False searches partitions only.
    """
    k = _as_affinity(affinity).shape[0]
    if method == "auto":
        method = "exhaustive" if k <= MAX_EXHAUSTIVE_TASKS else "greedy"
    if method == "exhaustive":
        return exhaustive_grouping(affinity, num_groups, singleton_score=singleton_score, overlap=overlap)
    if method == "greedy":
        return greedy_grouping(affinity, num_groups, singleton_score=singleton_score, overlap=overlap)
    raise ValueError(f"method must be 'auto', 'exhaustive' or 'greedy' (got {method!r}).")
