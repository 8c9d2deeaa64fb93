"""Prototypical networks (Snell, Swersky & Zemel, NeurIPS 2017).

phi_i are the class prototypes c_k = mean of f_theta(x) over class k's support
examples (their Eq. 1); p(y=k|x) = softmax_k(-||f_theta(x) - c_k||^2) (Eq. 2).
Training minimizes the query cross-entropy (first order: no inner loop).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor, nn

from ..heads.prototypes import prototype_logits
from ..tasks.batch import TaskBatch
from .base import MetaAlgorithm, Predictor, task_loss
from .embedding import embed_tasks


class ProtoNet(MetaAlgorithm):
    """ProtoNet over an embedding network ``body``."""

    name: ClassVar[str] = "protonet"

    def __init__(self, body: nn.Module, metric: Literal["euclidean", "cosine"] = "euclidean",
                 scale: float = 1.0) -> None:
        super().__init__()
        self.body = body
        self.metric = metric
        self.scale = scale

    def _require_classification(self, batch: TaskBatch) -> int:
        if not batch.is_classification:
            raise ValueError("ProtoNet needs classification tasks (n_way set); use MAML/ANIL/MTL for regression.")
        return int(batch.n_way)  # type: ignore[arg-type]

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        return task_loss(self.predict(batch), batch.query_y)

    def adapt(self, batch: TaskBatch) -> Predictor:
        n_way = self._require_classification(batch)
        support = embed_tasks(self.body, batch.support_x)

        def predictor(xq: Tensor) -> Tensor:
            return prototype_logits(support, batch.support_y, embed_tasks(self.body, xq), n_way,
                                    metric=self.metric, scale=self.scale)

        return predictor
