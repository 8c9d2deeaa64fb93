"""ProtoNet's prototype head, batched over tasks.

Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017.
Prototype of class k (Eq. 1):   c_k = (1/|S_k|) sum_{(x_i, y_i) in S_k} f(x_i)
Class scores (Eq. 2, Bregman/squared Euclidean):   logit_k(x) = -||f(x) - c_k||^2
The cosine variant scores ``scale * cos(f(x), c_k)`` (as in e.g. Chen et al. 2019's
cosine classifier); softmax over the scores gives p(y = k | x).
Everything is differentiable with respect to the features (and ``scale``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_all_classes_present, check_support

__all__ = ["class_prototypes", "prototype_logits"]

_HEAD = "prototype_logits"


def class_prototypes(support: Tensor, support_labels: Tensor, n_way: int) -> Tensor:
    """Class means of the support embeddings (Snell et al. 2017, Eq. 1).

    Args:
        support: ``[T, S, D]`` support embeddings.
        support_labels: ``[T, S]`` int64 labels in ``0..n_way-1``.
        n_way: number of classes per task.

    Returns:
        ``[T, n_way, D]`` prototypes. Computed as ``onehot^T @ support / counts`` (one batched
        matmul), so any number of shots per class works, including unbalanced tasks.
    """
    check_support(support, support_labels, n_way, "class_prototypes")
    onehot = F.one_hot(support_labels, n_way).to(support.dtype)  # [T, S, N]
    counts = onehot.sum(dim=1)  # [T, N]
    check_all_classes_present(counts, "class_prototypes")
    sums = torch.bmm(onehot.transpose(1, 2), support)  # [T, N, D]
    return sums / counts.unsqueeze(-1)


def prototype_logits(
    support: Tensor,
    support_labels: Tensor,
    query: Tensor,
    n_way: int,
    *,
    metric: str = "euclidean",
    scale: float | Tensor = 1.0,
) -> Tensor:
    """Query logits from class prototypes (Snell et al. 2017, Eq. 2).

    Args:
        support: ``[T, S, D]`` support embeddings.
        support_labels: ``[T, S]`` int64 labels in ``0..n_way-1``.
        query: ``[T, Q, D]`` query embeddings.
        n_way: number of classes per task.
        metric: ``"euclidean"``: ``-scale * ||q - c_k||^2`` (ProtoNet); ``"cosine"``:
            ``scale * <q/||q||, c_k/||c_k||>``.
        scale: multiplies the scores (a float or a learnable scalar tensor owned by the caller;
            ProtoNet uses 1, cosine heads usually need ~10).

    Returns:
        ``[T, Q, n_way]`` logits.
    """
    check_support(support, support_labels, n_way, _HEAD, query)
    protos = class_prototypes(support, support_labels, n_way)  # [T, N, D]
    if metric == "euclidean":
        # ||q||^2 - 2 q.c + ||c||^2, one bmm; clamp tiny negatives from cancellation.
        q2 = (query * query).sum(-1, keepdim=True)  # [T, Q, 1]
        c2 = (protos * protos).sum(-1).unsqueeze(1)  # [T, 1, N]
        d2 = (q2 - 2.0 * torch.bmm(query, protos.transpose(1, 2)) + c2).clamp_min(0.0)
        return -scale * d2
    if metric == "cosine":
        qn = F.normalize(query, dim=-1)
        cn = F.normalize(protos, dim=-1)
        return scale * torch.bmm(qn, cn.transpose(1, 2))
    raise ValueError(f"{_HEAD}: metric must be 'euclidean' or 'cosine', got {metric!r}.")
