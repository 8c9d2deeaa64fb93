"""ResNet-12 as used by MetaOptNet (Lee et al. 2019) and RFS (Tian et al. 2020).

Four residual blocks of widths 64-160-320-640; each block is three
[conv3x3, BatchNorm, LeakyReLU(0.1)] layers (no activation after the third before
the sum), a 1x1-conv + BatchNorm shortcut, a LeakyReLU after the sum, a 2x2 max-pool,
and DropBlock (Ghiasi et al. 2018) in the last two blocks. The embedding is the
global average of the last feature map (640-d), as in RFS.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al., NeurIPS 2018): zero contiguous ``block_size`` squares.

    The seed rate is gamma = drop_prob / block_size^2 * H*W / ((H-bs+1)(W-bs+1)) (their
    Eq. 1); kept activations are rescaled by numel / count(kept) so the expectation
    is unchanged. Inactive in eval mode or with ``drop_prob == 0``.
    """

    def __init__(self, drop_prob: float = 0.1, block_size: int = 5) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"DropBlock drop_prob must lie in [0, 1) (got {drop_prob}).")
        self.drop_prob = drop_prob
        self.block_size = block_size

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        _, _, h, w = x.shape
        bs = min(self.block_size, h, w)
        valid = (h - bs + 1) * (w - bs + 1)
        gamma = self.drop_prob / (bs * bs) * (h * w) / valid
        seeds = (torch.rand(x.shape[0], x.shape[1], h - bs + 1, w - bs + 1, device=x.device) < gamma).to(x.dtype)
        seeds = F.pad(seeds, (bs // 2, (bs - 1) // 2, bs // 2, (bs - 1) // 2))
        block = F.max_pool2d(seeds, kernel_size=bs, stride=1, padding=bs // 2)[..., :h, :w]
        keep = 1.0 - block
        return x * keep * (keep.numel() / keep.sum().clamp_min(1.0))


class ResBlock12(nn.Module):
    """One ResNet-12 block (see module docstring)."""

    def __init__(self, in_ch: int, out_ch: int, drop_prob: float, block_size: int,
                 track_running_stats: bool = True) -> None:
        super().__init__()
        trs = track_running_stats
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch, track_running_stats=trs)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, track_running_stats=trs)
        self.conv3 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, track_running_stats=trs)
        self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False),
                                      nn.BatchNorm2d(out_ch, track_running_stats=trs))
        self.dropblock = DropBlock(drop_prob, block_size)

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.bn1(self.conv1(x)), 0.1)
        out = F.leaky_relu(self.bn2(self.conv2(out)), 0.1)
        out = self.bn3(self.conv3(out))
        out = F.leaky_relu(out + self.shortcut(x), 0.1)
        return self.dropblock(F.max_pool2d(out, 2))


class ResNet12Backbone(nn.Module):
    """``[B, C, H, W] -> [B, widths[-1]]`` (global average pooled)."""

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (64, 160, 320, 640),
                 drop_prob: float = 0.1, block_size: int = 5, track_running_stats: bool = True) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"ResNet-12 has four blocks; got widths {tuple(widths)}.")
        chans = [in_channels, *widths]
        self.blocks = nn.Sequential(*[
            ResBlock12(chans[i], chans[i + 1], drop_prob if i >= 2 else 0.0,
                       block_size, track_running_stats)
            for i in range(4)
        ])
        self.feature_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x).mean(dim=(2, 3))


class ResNet12(nn.Module):
    """ResNet-12 backbone (``self.body``) plus a linear classifier (``self.head``)."""

    def __init__(self, out_dim: int, in_channels: int = 3, widths: Sequence[int] = (64, 160, 320, 640),
                 drop_prob: float = 0.1, block_size: int = 5, track_running_stats: bool = True) -> None:
        super().__init__()
        self.body = ResNet12Backbone(in_channels, widths, drop_prob, block_size, track_running_stats)
        self.feature_dim = self.body.feature_dim
        self.head = nn.Linear(self.feature_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))
