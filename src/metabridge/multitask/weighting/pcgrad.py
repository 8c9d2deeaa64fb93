"""PCGrad: Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020 (Alg. 1).

For each task i, in a random order of the other tasks j != i, when the (already projected)
g_i conflicts with the ORIGINAL g_j, it is projected onto the normal plane of g_j:

    if g_i^PC . g_j < 0:   g_i^PC <- g_i^PC - (g_i^PC . g_j / ||g_j||^2) g_j,

and the update is d = sum_i g_i^PC (the paper sums; ``reduction="mean"`` divides by K).

Every g_i^PC is a combination of the original gradients, g_i^PC = sum_k C_ik g_k, so the
projections run on the K x K Gram matrix M = G G^T (g_i^PC . g_j = (C M)_ij) and
d = (sum_i C_i) G: no [K, P] copies, cost independent of P after M. The effective weights
sum_i C_i on the raw gradients of the last call are kept in :attr:`PCGrad.last_projection_weights`.

The heads are trained with weights 1 (``"sum"``) or 1/K (``"mean"``): PCGrad changes the
shared parameters' update only, each head gets its own task's gradient (as in the paper).

The random orders come from a :class:`torch.Generator` owned by the method (``seed``);
the global RNG is never used. Its state travels in the module's ``state_dict``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from .base import Needs, Weighting
from .min_norm import check_grads, gram_matrix
from .registry import register_weighting

__all__ = ["PCGrad"]


@register_weighting("pcgrad")
class PCGrad(Weighting):
    """Projecting conflicting gradients (Yu et al. 2020).

    Args:
        num_tasks: K.
        reduction: ``"sum"`` (default, the paper) or ``"mean"`` of the projected gradients.
        seed: seed of the method's own generator of the random task orders (default 0);
            None seeds it from the operating system's entropy (not reproducible).
    """

    name: ClassVar[str] = "pcgrad"
    needs: ClassVar[Needs] = Needs.PARAM_GRADS

    def __init__(self, num_tasks: int, reduction: Literal["sum", "mean"] = "sum", seed: int | None = 0) -> None:
        super().__init__(num_tasks)
        if reduction not in ("sum", "mean"):
            raise ValueError(f"PCGrad: reduction must be 'sum' or 'mean' (got {reduction!r}).")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"PCGrad: seed must be a non-negative integer or None (got {seed!r}).")
        self.reduction = reduction
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.last_projection_weights: Tensor | None = None

    def _orders(self, k: int) -> Tensor:
        """[K, K-1]: row i is a random order of the tasks j != i (on the CPU generator)."""
        rows = []
        for i in range(k):
            perm = torch.randperm(k - 1, generator=self.generator)
            rows.append(perm + (perm >= i).long())  # skip i
        return torch.stack(rows) if rows else torch.zeros(0, 0, dtype=torch.long)

    def combine(self, grads: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        check_grads(grads, self.num_tasks, "PCGrad")
        k = self.num_tasks
        gram = gram_matrix(grads)
        coef = torch.eye(k, dtype=gram.dtype, device=gram.device)  # g_i^PC = coef[i] @ G
        if k > 1:
            orders = self._orders(k).to(gram.device)
            rows = torch.arange(k, device=gram.device)
            sq = gram.diagonal()
            tiny = torch.finfo(gram.dtype).tiny
            for step in range(k - 1):
                j = orders[:, step]  # task j_i for each i
                dots = (coef @ gram)[rows, j]  # g_i^PC . g_{j_i}
                shift = torch.where(dots < 0, dots / sq[j].clamp_min(tiny), torch.zeros_like(dots))
                coef[rows, j] -= shift
        w = coef.sum(dim=0)
        if self.reduction == "mean":
            w = w / k
        w = w.to(grads.dtype)
        self.last_projection_weights = w
        head = torch.full((k,), 1.0 if self.reduction == "sum" else 1.0 / k, dtype=grads.dtype, device=grads.device)
        return w @ grads, head

    def get_extra_state(self) -> Any:
        return {"generator_state": self.generator.get_state()}

    def set_extra_state(self, state: Any) -> None:
        self.generator.set_state(state["generator_state"])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reduction={self.reduction!r}"
