"""Negative-transfer diagnostics for multi-task learning, one job per module:

* :mod:`.delta_m`: relative change against single-task baselines, Delta_m % (Maninis et al.
  2019, Nash-MTL's sign: lower is better) and mean rank across methods;
* :mod:`.gradient_conflict`: per-layer pairwise task-gradient cosines and conflict rates over training;
* :mod:`.task_affinity`: the lookahead inter-task affinity of Task Affinity Grouping (Fifty et al. 2021);
* :mod:`.grouping`: TAG's task-grouping search from affinities (exhaustive for K <= 10, greedy);
* :mod:`.plots`: PNG figures of the above (matplotlib Figure objects, no pyplot state).
"""

from .delta_m import delta_m, mean_rank, relative_changes
from .gradient_conflict import ALL_SHARED, GradientConflictTracker, conflict_rate, cosine_matrix, owning_module
from .grouping import (
    MAX_EXHAUSTIVE_TASKS,
    TaskGrouping,
    exhaustive_grouping,
    greedy_grouping,
    group_score,
    group_tasks,
    grouping_score,
)
from .plots import plot_affinity, plot_gradient_conflict, plot_loss_trajectories, plot_weight_trajectories
from .task_affinity import AffinityAccumulator, LookaheadMode, lookahead_affinity

__all__ = [
    "ALL_SHARED",
    "AffinityAccumulator",
    "GradientConflictTracker",
    "LookaheadMode",
    "MAX_EXHAUSTIVE_TASKS",
    "TaskGrouping",
    "conflict_rate",
    "cosine_matrix",
    "delta_m",
    "exhaustive_grouping",
    "greedy_grouping",
    "group_score",
    "group_tasks",
    "grouping_score",
    "lookahead_affinity",
    "mean_rank",
    "owning_module",
    "plot_affinity",
    "plot_gradient_conflict",
    "plot_loss_trajectories",
    "plot_weight_trajectories",
    "relative_changes",
]
