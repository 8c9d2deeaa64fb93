"""Fully connected networks, e.g. Finn et al. (2017)'s 1-40-40-1 ReLU regressor."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class MLP(nn.Module):
    """``in_dim -> hidden[0] -> ... -> out_dim`` with ReLU between layers.

    The last linear layer is exposed as ``self.head`` and everything before it as
    ``self.body`` (body ``[B, in_dim] -> [B, hidden[-1]]``), so that ANIL and MTL can
    treat the head as the per-task parameters phi_i (Wang et al. 2021, Sec. 3).
    """

    def __init__(self, in_dim: int = 1, out_dim: int = 1, hidden: Sequence[int] = (40, 40)) -> None:
        super().__init__()
        if in_dim <= 0 or out_dim <= 0 or any(h <= 0 for h in hidden):
            raise ValueError(f"MLP sizes must be positive (in_dim={in_dim}, out_dim={out_dim}, hidden={hidden}).")
        layers: list[nn.Module] = []
        prev = in_dim
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        self.body = nn.Sequential(*layers)
        self.feature_dim = prev
        self.head = nn.Linear(prev, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))
