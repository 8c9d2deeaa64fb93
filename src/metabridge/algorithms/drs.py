"""Domain-randomized search / joint training (DRS; Gao & Sener, NeurIPS 2020), also
Finn et al. (2017)'s "pretrained on all tasks" baseline.

One model for all tasks, trained on the pooled single-level objective

    min_theta  (1/T) sum_i  L(theta; D_i^tr u D_i^ts),

ignoring that tasks differ. In classification the pooled label space is the set
of training classes (``num_classes`` outputs, global labels from ``class_ids``).
At test time the model is adapted like MAML's inner loop: ``finetune_steps`` SGD
steps on the support set (all parameters, or only the head); in classification a
new zero-initialised N-way head replaces the global one first.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from ..tasks.batch import TaskBatch
from .base import task_loss
from .inner_loop import Params
from .maml import MAML


class DRS(MAML):
    """Joint training with gradient fine-tuning at test time."""

    name: ClassVar[str] = "drs"

    def __init__(self, model: nn.Module, finetune_lr: float = 0.01, finetune_steps: int = 10,
                 finetune: Literal["all", "head"] = "all") -> None:
        if finetune not in ("all", "head"):
            raise ValueError(f"finetune must be 'all' or 'head' (got {finetune!r}).")
        self.finetune = finetune
        super().__init__(model, finetune_lr, finetune_steps, True, None, finetune_steps, "vmap")

    def adapted_names(self) -> list[str]:
        names = [n for n, _ in self.model.named_parameters()]
        return names if self.finetune == "all" else [n for n in names if n.startswith("head.")]

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        x = torch.cat([batch.support_x, batch.query_x], 1).flatten(0, 1)
        y = torch.cat([batch.support_y, batch.query_y], 1)
        if batch.is_classification:
            if batch.class_ids is None:
                raise ValueError("DRS classification needs class_ids (global labels) in the batch.")
            y = batch.class_ids.gather(1, y)
        return task_loss(self.model(x), y.flatten(0, 1))

    def _test_init_params(self, batch: TaskBatch) -> Params:
        params = super()._test_init_params(batch)
        if batch.is_classification:
            w = params["head.weight"]
            params["head.weight"] = torch.zeros(batch.n_way, w.shape[1], dtype=w.dtype, device=w.device)
            params["head.bias"] = torch.zeros(batch.n_way, dtype=w.dtype, device=w.device)
        return params
