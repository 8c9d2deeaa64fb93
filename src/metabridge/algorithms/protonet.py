"""Prototypical networks (Snell, Swersky & Zemel, NeurIPS 2017).

phi_i are the class prototypes c_k = mean of f_theta(x) over class k's support
examples (their Eq. 1); p(y=k|x) = softmax_k(-||f_theta(x) - c_k||^2) (Eq. 2).
Training minimizes the query cross-entropy (first order: no inner loop).

Batch norm: a body with running statistics is run on all tasks of a batch at once (in
eval mode nothing is shared between tasks); a body whose batch norm has no running
statistics (e.g. a default ``Conv4Backbone()``) is run one task at a time, so each task is
normalized with its own statistics and scores do not depend on the evaluation batch
size (:func:`~metabridge.algorithms.embedding.embed_tasks`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor, nn

from ..heads.prototypes import prototype_logits
from ..tasks.batch import TaskBatch
from .base import MetaAlgorithm, Predictor, task_loss
from .embedding import autocast_off, embed_tasks, head_features


class ProtoNet(MetaAlgorithm):
    """ProtoNet over an embedding network ``body``.

    Args:
        body: embedding network ``[B, *x] -> [B, D]`` (batch norm: module docstring).
        metric: ``"euclidean"`` (Snell et al.) or ``"cosine"``.
        scale: multiplies the scores (cosine heads usually need ~10).
    """

    name: ClassVar[str] = "protonet"
    supports_autocast: ClassVar[bool] = True  # the body may run in bfloat16; the distances run in float32

    def __init__(
        self, body: nn.Module, metric: Literal["euclidean", "cosine"] = "euclidean", scale: float = 1.0
    ) -> None:
        super().__init__()
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"ProtoNet metric must be 'euclidean' or 'cosine' (got {metric!r}).")
        if not scale > 0:
            raise ValueError(f"ProtoNet scale must be > 0 (got {scale}).")
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
            query = embed_tasks(self.body, xq)
            with autocast_off(query):  # prototypes and distances in full precision (embedding.py)
                return prototype_logits(
                    head_features(support),
                    batch.support_y,
                    head_features(query),
                    n_way,
                    metric=self.metric,
                    scale=self.scale,
                )

        return predictor
