"""Conv-4, the standard few-shot backbone (Vinyals et al. 2016; Finn et al. 2017).

Four blocks of [conv 3x3 with ``hidden`` filters, BatchNorm, ReLU, 2x2 max-pool];
the flattened output is the embedding (64 for 28x28 inputs, 1600 for 84x84).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv_block(in_channels: int, out_channels: int, track_running_stats: bool) -> nn.Sequential:
    """conv3x3 (padding 1) -> BatchNorm -> ReLU -> maxpool 2x2."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels, track_running_stats=track_running_stats),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class Conv4Backbone(nn.Module):
    """The four conv blocks, flattened: ``[B, C, H, W] -> [B, D]``.

    ``track_running_stats=False`` (default) normalizes with the statistics of the
    batch at hand in training and testing, as MAML does (transductive batch norm);
    it also keeps the module free of buffers, so ``torch.func`` transforms apply cleanly.
    """

    def __init__(
        self, in_channels: int = 1, hidden: int = 64, image_size: int = 28, track_running_stats: bool = False
    ) -> None:
        super().__init__()
        if image_size < 16:
            raise ValueError(
                f"Conv-4 needs images of at least 16x16 (got {image_size}); four 2x2 pools halve it 4 times."
            )
        self.blocks = nn.Sequential(
            conv_block(in_channels, hidden, track_running_stats),
            conv_block(hidden, hidden, track_running_stats),
            conv_block(hidden, hidden, track_running_stats),
            conv_block(hidden, hidden, track_running_stats),
        )
        side = image_size
        for _ in range(4):
            side //= 2
        self.feature_dim = hidden * side * side

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.blocks(x), 1)


class Conv4(nn.Module):
    """Conv-4 backbone (``self.body``) plus a linear classifier (``self.head``)."""

    def __init__(
        self,
        out_dim: int,
        in_channels: int = 1,
        hidden: int = 64,
        image_size: int = 28,
        track_running_stats: bool = False,
    ) -> None:
        super().__init__()
        self.body = Conv4Backbone(in_channels, hidden, image_size, track_running_stats)
        self.feature_dim = self.body.feature_dim
        self.head = nn.Linear(self.feature_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))
