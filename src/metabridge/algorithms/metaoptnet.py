"""MetaOptNet (Lee, Maji, Ravichandran & Soatto, CVPR 2019) and R2D2 (Bertinetto,
Henriques, Torr & Vedaldi, ICLR 2019): a closed-form or convex head fitted on the
support embeddings, differentiated through its solution.

    phi_i = argmin_phi  R(phi) + sum_{(x,y) in D_i^tr} l(phi; f_theta(x), y)
    min_theta  (1/T) sum_i  CE( s * phi_i(f_theta(x)) ; D_i^ts )

with phi_i the multi-class (Crammer-Singer) SVM (``head="svm"``, C = 0.1, solved in
the dual, gradients through the KKT conditions) or ridge regression to one-hot
targets (``head="ridge"``, R2D2, W = X^T (X X^T + lambda I)^{-1} Y). The logit
scale s (and R2D2's bias) are learned, as in both papers.

Batch norm: a body with running statistics embeds all tasks of a batch in one forward
(in eval mode nothing is shared between tasks); a body whose batch norm has no running
statistics (e.g. a default ``Conv4Backbone()``) embeds one task at a time, so scores do
not depend on the evaluation batch size (:func:`~metabridge.algorithms.embedding.embed_tasks`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from ..heads.ridge import r2d2_logits
from ..heads.svm import metaoptnet_svm_logits
from ..tasks.batch import TaskBatch
from .base import MetaAlgorithm, Predictor, task_loss
from .embedding import autocast_off, embed_tasks, head_features
from .inner_loop import check_positive


class MetaOptNet(MetaAlgorithm):
    """Differentiable-solver head on a shared embedding ``body``.

    Args:
        body: embedding network ``[B, *x] -> [B, D]`` (batch norm: module docstring).
        head: ``"svm"`` (MetaOptNet-SVM) or ``"ridge"`` (R2D2 / MetaOptNet-RR).
        C: SVM cost. lam: ridge strength (learned in R2D2's log space when ``learn_lambda``).
        scale: initial logit scale (learned).
    """

    name: ClassVar[str] = "metaoptnet"
    supports_autocast: ClassVar[bool] = True  # the body may run in bfloat16; the solvers run in float32/64

    def __init__(
        self,
        body: nn.Module,
        head: Literal["svm", "ridge"] = "svm",
        C: float = 0.1,
        lam: float = 50.0,
        scale: float = 1.0,
        learn_lambda: bool = True,
    ) -> None:
        super().__init__()
        if head not in ("svm", "ridge"):
            raise ValueError(f"MetaOptNet head must be 'svm' or 'ridge' (got {head!r}).")
        check_positive(C=C, lam=lam, scale=scale)
        self.body = body
        self.head = head
        self.C = C
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(0.0))
        self.log_lam = nn.Parameter(torch.tensor(float(lam)).log(), requires_grad=learn_lambda)

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        return task_loss(self.predict(batch), batch.query_y)

    def adapt(self, batch: TaskBatch) -> Predictor:
        if not batch.is_classification:
            raise ValueError("MetaOptNet heads classify; give it N-way tasks (n_way set).")
        n_way = int(batch.n_way)  # type: ignore[arg-type]
        support = embed_tasks(self.body, batch.support_x)

        def predictor(xq: Tensor) -> Tensor:
            query = embed_tasks(self.body, xq)
            with autocast_off(query):  # the solvers in full precision (embedding.py)
                fs, fq = head_features(support), head_features(query)
                if self.head == "svm":
                    return metaoptnet_svm_logits(fs, batch.support_y, fq, n_way, self.C, scale=self.scale)
                return r2d2_logits(fs, batch.support_y, fq, n_way, self.log_lam.exp(), scale=self.scale, bias=self.bias)

        return predictor
