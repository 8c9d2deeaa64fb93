"""What a multi-task problem is: K tasks over one input space, each with its own label
space, loss and metric (CS330 lecture 2: a task is {p_i(x), p_i(y|x), L_i}).

A :class:`MultiTaskData` holds one split in memory: ``inputs`` [N, ...] (uint8 images or
float features) and ``targets`` [N, K] (class indices as float-castable integers, or
regression values), plus the :class:`TaskSpec` of every column. A benchmark is three
splits with the same specs (:class:`MultiTaskBenchmark`).

Per-task losses are ``TaskSpec.loss(prediction, target)``; the objective a weighting
method then builds is sum_i w_i L_i (lecture 2, eq. "min_theta sum_i w_i L_i(theta, D_i)").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MultiTaskBenchmark", "MultiTaskData", "TaskSpec"]

TaskKind = Literal["classification", "regression"]


@dataclass(frozen=True)
class TaskSpec:
    """One task of a multi-task problem.

    Args:
        name: the task's name (a column of the targets).
        kind: ``"classification"`` (cross-entropy on ``out_dim`` logits, metric accuracy, higher is
            better) or ``"regression"`` (MSE on one output of the *standardised* target, metric MAE in
            the target's original units, lower is better).
        out_dim: number of classes, or 1 for regression.
        target_mean, target_std: regression only: the training split's mean and standard deviation;
            the model predicts (y - mean) / std and the metric is reported in the original units.
        unit: the metric's unit, for tables (e.g. ``"eV"``, ``"%"``).
    """

    name: str
    kind: TaskKind
    out_dim: int
    target_mean: float = 0.0
    target_std: float = 1.0
    unit: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("classification", "regression"):
            raise ValueError(f"task {self.name!r}: kind must be 'classification' or 'regression' (got {self.kind!r}).")
        if self.kind == "classification" and self.out_dim < 2:
            raise ValueError(f"task {self.name!r}: a classification task needs out_dim >= 2 (got {self.out_dim}).")
        if self.kind == "regression" and self.out_dim != 1:
            raise ValueError(f"task {self.name!r}: a regression task has out_dim 1 (got {self.out_dim}).")
        if not self.target_std > 0:
            raise ValueError(f"task {self.name!r}: target_std must be > 0 (got {self.target_std}).")

    @property
    def metric_name(self) -> str:
        return "accuracy" if self.kind == "classification" else "mae"

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "classification"

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Mean loss over the batch: cross-entropy, or MSE on the standardised target."""
        if self.kind == "classification":
            return F.cross_entropy(prediction, target.long())
        return F.mse_loss(prediction.reshape(-1), (target.to(prediction.dtype) - self.target_mean) / self.target_std)

    def metric_sum(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Sum over the batch of the per-example metric (correct predictions, or absolute error in
        original units), so that splits are scored exactly by summing over batches."""
        if self.kind == "classification":
            return (prediction.argmax(-1) == target.long()).sum().to(torch.float64)
        value = prediction.reshape(-1).to(torch.float64) * self.target_std + self.target_mean
        return (value - target.to(torch.float64)).abs().sum()


@dataclass
class MultiTaskData:
    """One split: ``inputs`` [N, ...] and ``targets`` [N, K], column k for ``tasks[k]``."""

    inputs: Tensor
    targets: Tensor
    tasks: list[TaskSpec]
    name: str = ""

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise ValueError(
                f"{self.name or 'multi-task data'}: {self.inputs.shape[0]} inputs but "
                f"{self.targets.shape[0]} target rows."
            )
        if self.targets.dim() != 2 or self.targets.shape[1] != len(self.tasks):
            raise ValueError(
                f"{self.name or 'multi-task data'}: targets must be [N, K={len(self.tasks)}] "
                f"(got {tuple(self.targets.shape)})."
            )

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def select_tasks(self, indices: list[int]) -> MultiTaskData:
        """The same examples with only the given task columns (for single-task baselines and groups)."""
        return MultiTaskData(self.inputs, self.targets[:, indices], [self.tasks[i] for i in indices], self.name)


@dataclass
class MultiTaskBenchmark:
    """Train/validation/test splits of one multi-task problem."""

    name: str
    train: MultiTaskData
    val: MultiTaskData
    test: MultiTaskData
    input_kind: Literal["image", "vector"] = "vector"
    info: dict = field(default_factory=dict)

    @property
    def tasks(self) -> list[TaskSpec]:
        return self.train.tasks

    def select_tasks(self, indices: list[int]) -> MultiTaskBenchmark:
        return MultiTaskBenchmark(
            self.name,
            self.train.select_tasks(indices),
            self.val.select_tasks(indices),
            self.test.select_tasks(indices),
            self.input_kind,
            dict(self.info),
        )
