"""Aligned-MTL: Senushkin, Patakin, Kuznetsov & Konushin, "Independent Component Alignment
for Multi-Task Learning", CVPR 2023 (Alg. 1).

The gradient matrix G [K, P] is replaced by the closest (in Frobenius norm) matrix with
orthogonal rows of equal norm, i.e. with condition number 1: with the eigendecomposition of
the Gram matrix M = G G^T = V diag(lambda) V^T and sigma = sqrt(lambda) (the singular values of G),

    B = sigma_min V diag(1 / sigma) V^T,        G_aligned = B G    (rows orthogonal, norms sigma_min),

over the non-null eigen-directions (lambda > lambda_max K eps of the gradients' dtype: a
rank-deficient G is aligned on its range; sigma_min is then the smallest nonzero singular
value). The update is d = G_aligned^T w = G^T (B w) for pre-weights w (default ones), so the
effective weights on the raw gradients (returned, and used for the heads) are alpha = B w.

``scale`` picks the common singular value: ``"min"`` (sigma_min, the paper's default),
``"median"`` or ``"rmse"`` (sqrt(mean lambda)), as in the paper's code. The eigendecomposition
is :func:`torch.linalg.eigh` on the K x K matrix in float64 (float32 on MPS).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import Tensor

from .base import Needs, Weighting
from .min_norm import check_grads, gram_matrix
from .registry import register_weighting

__all__ = ["AlignedMTL", "alignment_matrix"]

Scale = Literal["min", "median", "rmse"]


def alignment_matrix(gram: Tensor, eps: float, scale: Scale = "min") -> Tensor:
    """B [K, K] with B G having orthogonal rows of equal norm (on the range of G), from M = G G^T.

    ``eps`` is the machine epsilon of the dtype M was formed in (the rank threshold is
    lambda_max K eps). All-zero M gives B = 0."""
    k = gram.shape[0]
    lam, vec = torch.linalg.eigh(gram)
    lam_max = lam.max()
    keep = lam > lam_max.clamp_min(0.0) * k * eps
    if not bool(keep.any()):
        return torch.zeros_like(gram)
    lam_r = lam[keep]
    vec_r = vec[:, keep]
    sigma = lam_r.sqrt()
    if scale == "min":
        target = sigma.min()
    elif scale == "median":
        target = sigma.median()
    else:
        target = lam_r.mean().sqrt()
    return target * (vec_r / sigma) @ vec_r.T


@register_weighting("aligned_mtl")
class AlignedMTL(Weighting):
    """Aligned-MTL (Senushkin et al. 2023).

    Args:
        num_tasks: K.
        pre_weights: the weights w of the aligned gradients (default: ones), K finite numbers.
        scale: ``"min"`` (default), ``"median"`` or ``"rmse"``.
    """

    pre_weights: Tensor

    name: ClassVar[str] = "aligned_mtl"
    needs: ClassVar[Needs] = Needs.PARAM_GRADS

    def __init__(
        self, num_tasks: int, pre_weights: Sequence[float] | Tensor | None = None, scale: Scale = "min"
    ) -> None:
        super().__init__(num_tasks)
        if scale not in ("min", "median", "rmse"):
            raise ValueError(f"AlignedMTL: scale must be 'min', 'median' or 'rmse' (got {scale!r}).")
        if pre_weights is None:
            w = torch.ones(num_tasks)
        else:
            try:
                w = torch.as_tensor(pre_weights, dtype=torch.float64).flatten().float()
            except (TypeError, ValueError) as err:
                raise ValueError(f"AlignedMTL: pre_weights must be {num_tasks} numbers (got {pre_weights!r}).") from err
            if w.numel() != num_tasks or not bool(torch.isfinite(w).all()):
                raise ValueError(f"AlignedMTL: pre_weights must be {num_tasks} finite numbers (got {pre_weights!r}).")
        self.scale = scale
        self.register_buffer("pre_weights", w)

    def combine(self, grads: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        check_grads(grads, self.num_tasks, "AlignedMTL")
        gram = gram_matrix(grads)
        b = alignment_matrix(gram, torch.finfo(grads.dtype).eps, self.scale)
        if not bool(b.abs().max() > 0):
            warnings.warn(
                "AlignedMTL: every task gradient is zero; the shared update is zero and the heads get the pre-weights.",
                RuntimeWarning,
                stacklevel=2,
            )
            w = self.pre_weights.to(device=grads.device, dtype=grads.dtype)
            return torch.zeros_like(grads[0]), w
        alpha = (b @ self.pre_weights.to(device=b.device, dtype=b.dtype)).to(grads.dtype)
        return alpha @ grads, alpha

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale!r}"
