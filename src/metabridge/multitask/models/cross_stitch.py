"""Cross-stitch networks (Misra, Shrivastava, Gupta & Hebert 2016, "Cross-stitch Networks for
Multi-task Learning", CVPR, Sec. 3.2, eq. 1).

Every task k has its own column, an MLP with the same layer widths; after each hidden layer a
cross-stitch unit, a learned K x K matrix alpha^l, mixes the columns' activations:

    h~_k^l = sum_j alpha^l_{kj} h_j^l          (eq. 1, for K tasks instead of 2)

and the next layer of column k reads h~_k^l. alpha^l starts near the identity (Misra et al.'s
ablation of the initial values favours alpha_S = 0.9 on the diagonal and alpha_D = 0.1 off it):
``self_weight`` on the diagonal and (1 - self_weight) / (K - 1) elsewhere, so every row sums to 1.
The K columns are held as stacked weights (:class:`~.encoders.StackedLinear`) and computed
together, one ``einsum`` per layer.

For images the columns read the output of a shared encoder (Misra et al. stitch convolutional
columns; here the stitched part is the fully connected part after a shared encoder); with
``encoder=None`` they read the input vector.

Parameter split: the columns (hidden layers and output layer) are task-specific; the cross-stitch
units and the encoder are shared. ``features`` is None: after the first layer no single
representation is shared by every task (the columns mix, but each keeps its own activations).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from .base import MultiTaskModel, TaskOutputs
from .encoders import StackedLinear, check_out_dims, encode, resolve_encoder

__all__ = ["CrossStitch"]


def cross_stitch_init(num_tasks: int, self_weight: float) -> Tensor:
    """The K x K matrix with ``self_weight`` on the diagonal and (1 - self_weight) / (K - 1) off it."""
    if num_tasks == 1:
        return torch.ones(1, 1)
    off = (1.0 - self_weight) / (num_tasks - 1)
    return torch.full((num_tasks, num_tasks), off) + (self_weight - off) * torch.eye(num_tasks)


class CrossStitch(MultiTaskModel):
    """K task columns mixed by cross-stitch units after every hidden layer.

    Args:
        encoder: shared network ``x -> [B, feature_dim]`` before the columns, or ``None``: the
            columns read the input vector x [B, feature_dim].
        feature_dim: size of the columns' input (``None`` reads the encoder's ``out_dim``).
        out_dims: output size of every task (K = len(out_dims)); column k's output layer has
            max_k out_k units, of which task k reads the first out_k.
        hidden: widths of every column's hidden layers (at least one), each followed by ReLU and a
            cross-stitch unit.
        self_weight: initial diagonal of the cross-stitch matrices, in [0, 1] (Misra et al.: 0.9).
    """

    def __init__(
        self,
        encoder: nn.Module | None,
        feature_dim: int | None,
        out_dims: Sequence[int],
        hidden: Sequence[int] = (128,),
        self_weight: float = 0.9,
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if not hidden or any(not isinstance(h, int) or h <= 0 for h in hidden):
            raise ValueError(
                f"CrossStitch: hidden must be at least one positive width (got {hidden!r}); the "
                "cross-stitch units mix the hidden layers' activations."
            )
        if not 0.0 <= float(self_weight) <= 1.0:
            raise ValueError(f"CrossStitch: self_weight must lie in [0, 1] (got {self_weight!r}).")
        self.encoder, self.feature_dim = resolve_encoder("CrossStitch", encoder, feature_dim)
        self.out_dims = check_out_dims("CrossStitch", out_dims)
        self.num_tasks, self.hidden = len(self.out_dims), hidden
        k = self.num_tasks
        self.columns = nn.ModuleList()
        prev = self.feature_dim
        for h in hidden:
            self.columns.append(StackedLinear(k, prev, h))
            prev = h
        self.output = StackedLinear(k, prev, max(self.out_dims))
        self.alphas = nn.ParameterList(nn.Parameter(cross_stitch_init(k, float(self_weight))) for _ in hidden)

    def forward(self, x: Tensor) -> TaskOutputs:
        h = encode("CrossStitch", self.encoder, x, self.feature_dim)
        for layer, alpha in zip(self.columns, self.alphas):
            h = torch.relu(layer(h))  # [K, B, H]: every column in one einsum
            h = torch.einsum("kj,jbh->kbh", alpha.to(h.dtype), h)  # the cross-stitch unit
        out = self.output(h)
        return TaskOutputs([out[k, :, :d] for k, d in enumerate(self.out_dims)], None)

    def task_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.columns.parameters()
        yield from self.output.parameters()
