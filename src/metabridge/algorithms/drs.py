"""Domain-randomized search / joint training (DRS; Gao & Sener, NeurIPS 2020), also
Finn et al. (2017)'s "pretrained on all tasks" baseline.

One model for all tasks, trained on the pooled single-level objective

    min_theta  (1/T) sum_i  L(theta; D_i^tr u D_i^ts),

ignoring that tasks differ. In classification the pooled label space is the set
of training classes (``num_classes`` outputs, global labels from ``class_ids``).
At test time the model is adapted like MAML's inner loop: ``finetune_steps`` SGD
steps on the support set (all parameters, or only the head); in classification a
new zero-initialised N-way head replaces the global one first.

``finetune_steps=0`` is the zero-shot joint model: in regression it predicts with the
jointly trained weights as they are (Finn et al.'s "pretrained" curve at 0 steps; the
reference point of Gao & Sener's trade-off). In classification the fresh zero head
would predict chance, so adapting with 0 steps is refused there.

Batch norm keeps running statistics (the registry builds JointTraining that way): joint training
updates them and test-time fine-tuning, in eval mode, normalizes with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..tasks.batch import TaskBatch
from .base import DataInfo, ModelMaker, Predictor, task_loss
from .execution import ExecutionOptions
from .inner_loop import LossFn, Params, check_positive
from .maml import MAML, check_steps, running_stat_buffers


class JointTraining(MAML):
    """Joint training with gradient fine-tuning at test time.

    Args:
        model: an ``nn.Module`` with a linear ``head`` (``head.weight`` / ``head.bias``),
            whose output spans the training classes (classification) or d_y (regression).
        finetune_lr: SGD step size of the test-time fine-tuning; > 0.
        finetune_steps: SGD steps on the support set at test time; 0 predicts with the
            joint model unchanged (regression only, see the module docstring).
        finetune: ``"all"`` parameters or only the ``"head"``.
        finetune_loss: the fine-tuning loss for one task; default :func:`task_loss`.
        execution: :class:`ExecutionOptions` for the fine-tuning (or a dict of its fields).
    """

    name: ClassVar[str] = "joint"

    def __init__(
        self,
        model: nn.Module,
        finetune_lr: float = 0.01,
        finetune_steps: int = 10,
        finetune: Literal["all", "head"] = "all",
        *,
        finetune_loss: LossFn | None = None,
        execution: ExecutionOptions | Mapping[str, Any] | None = None,
    ) -> None:
        if finetune not in ("all", "head"):
            raise ValueError(f"finetune must be 'all' or 'head' (got {finetune!r}).")
        check_positive(finetune_lr=finetune_lr)
        check_steps(allow_zero=True, finetune_steps=finetune_steps)
        self.finetune = finetune
        super().__init__(model, finetune_lr, 1, True, None, None, inner_loss=finetune_loss, execution=execution)
        self.inner_steps = self.eval_steps = finetune_steps
        #: train-mode batch norm would update running statistics in place, which torch.func
        #: refuses: a fine-tuning forward in train mode normalizes with batch statistics instead
        self._train_mode_stats = running_stat_buffers(model)

    @classmethod
    def build(cls, make_model: ModelMaker, data: DataInfo, **hparams: Any) -> JointTraining:
        """Registry rule: one network with running statistics whose head spans the training
        classes (classification) or the targets (regression)."""
        width = data.num_train_classes if data.is_classification else data.out_dim
        return cls(make_model(int(width), running_stats=True, channels_last=True), **hparams)  # type: ignore[arg-type]

    def _hidden_buffers(self) -> dict[str, Any]:
        return {}  # joint training keeps running statistics; fine-tuning in eval mode reads them

    def _forward(self, params: Params, x: Tensor) -> Tensor:
        if self.training:
            params = {**params, **self._train_mode_stats}
        return functional_call(self.model, params, (x,))

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

    def adapt(self, batch: TaskBatch) -> Predictor:
        if batch.is_classification and self.eval_steps == 0:
            raise ValueError(
                "DRS with finetune_steps=0 cannot classify: the new N-way head starts at zero and "
                "would predict chance; set finetune_steps >= 1 (0 is meaningful for regression only)."
            )
        return super().adapt(batch)

    def _test_init_params(self, batch: TaskBatch) -> Params:
        params = super()._test_init_params(batch)
        if batch.is_classification and batch.n_way is not None:
            w = params["head.weight"]
            params["head.weight"] = torch.zeros(batch.n_way, w.shape[1], dtype=w.dtype, device=w.device)
            params["head.bias"] = torch.zeros(batch.n_way, dtype=w.dtype, device=w.device)
        return params


#: The 0.x name of :class:`JointTraining` (registered name ``drs``, now an alias of ``joint``).
DRS = JointTraining
