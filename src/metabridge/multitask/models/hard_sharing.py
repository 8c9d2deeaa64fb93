"""Hard parameter sharing: one shared encoder, one head per task (Caruana 1997; Ruder 2017,
"An Overview of Multi-Task Learning in Deep Neural Networks", Sec. 3.1; CS330 lecture 2).

    f_k(x) = h_k(phi(x); theta_k),   k = 1..K

where phi is the shared encoder (``features = phi(x)``) and h_k is task k's head, linear
(``head_hidden=None``) or with one hidden ReLU layer. The heads are the task-specific
parameters theta_k; the encoder is shared.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from torch import Tensor, nn

from .base import MultiTaskModel, TaskOutputs
from .encoders import check_out_dims, encode, resolve_encoder

__all__ = ["HardSharing"]


class HardSharing(MultiTaskModel):
    """A shared encoder and K task heads.

    Args:
        encoder: the shared network, ``x -> [B, feature_dim]``.
        feature_dim: size of the encoder's output (``None``: read the encoder's ``out_dim``).
        out_dims: output size of every task's head (classes, or 1 for regression).
        head_hidden: ``None`` for linear heads, or the width of one hidden ReLU layer per head.

    ``forward(x)`` returns the K predictions and ``features = encoder(x)`` (every head reads it).
    """

    def __init__(
        self, encoder: nn.Module, feature_dim: int | None, out_dims: Sequence[int], head_hidden: int | None = None
    ) -> None:
        super().__init__()
        self.encoder, self.feature_dim = resolve_encoder("HardSharing", encoder, feature_dim, allow_none=False)
        self.out_dims = check_out_dims("HardSharing", out_dims)
        if head_hidden is not None and (not isinstance(head_hidden, int) or head_hidden <= 0):
            raise ValueError(f"HardSharing: head_hidden must be None or a positive int (got {head_hidden!r}).")
        self.num_tasks = len(self.out_dims)
        self.head_hidden = head_hidden
        d = self.feature_dim
        self.heads = nn.ModuleList(
            nn.Linear(d, k)
            if head_hidden is None
            else nn.Sequential(nn.Linear(d, head_hidden), nn.ReLU(), nn.Linear(head_hidden, k))
            for k in self.out_dims
        )

    def forward(self, x: Tensor) -> TaskOutputs:
        features = encode("HardSharing", self.encoder, x, self.feature_dim)
        return TaskOutputs([head(features) for head in self.heads], features)

    def task_parameters(self) -> Iterator[nn.Parameter]:
        return self.heads.parameters()
