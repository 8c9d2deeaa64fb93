"""ResNet-12 (Lee et al. 2019; Tian et al. 2020), in two variants.

Four residual blocks of widths 64-160-320-640; each block is three
[conv3x3, BatchNorm, LeakyReLU(0.1)] layers (no activation after the third before
the sum), a 1x1-conv + BatchNorm shortcut, a LeakyReLU after the sum, a 2x2 max-pool,
then (optionally) plain dropout in blocks 1-2 and DropBlock (Ghiasi et al. 2018) in
blocks 3-4. The embedding is the global average of the last feature map (640-d).

The two variants (``variant=``; each part can also be set on its own):

* ``"plain"`` (default, this library's ResNet-12 so far): no dropout in blocks 1-2,
  DropBlock at a constant rate 0.1 with block size 5 in blocks 3-4, PyTorch's default
  convolution initialisation.
* ``"official"``: the ResNet-12 of Wang et al.'s MTL code (GitHub
  AI-secure/multi-task-learning at 81ea1f5, ``models/resnet.py``, copied there from RFS;
  MetaOptNet's ``models/ResNet12_embedding.py`` has the same blocks):

  - dropout ``drop_rate`` = 0.1 after the max-pool of blocks 1-2 (resnet.py:158-165,
    178-181; ``--drop_rate`` default 0.1, train.py:56);
  - DropBlock in blocks 3-4 (resnet.py:182-185) at the same final rate, its block size
    5 on mini-/tiered-ImageNet (84 px) and 2 on CIFAR-FS / FC100 (32 px)
    (models/util.py:21, 30): here 5 for ``image_size >= 64``, else 2;
  - the DropBlock rate ramped linearly from 0 (resnet.py:161:
    ``keep_rate = max(1 - drop_rate / (20*2000) * num_batches_tracked, 1 - drop_rate)``,
    the counter incremented on every forward of the block, training or not,
    resnet.py:126, 135), reaching the final rate after 40,000 forwards and constant
    after. Their MTL runs one task per forward and validates 400 tasks after each epoch
    of 1,600 (train.py:60-61), so the ramp ends after 20 epochs; the run's length is set
    by early stopping (train.py:76, 176), so 20 epochs is no fixed fraction of it. Here
    the ramp is a fraction of training: :meth:`DropBlock.set_training_progress`
    (called by the trainer before each step) sets the rate to
    ``drop_prob * min(1, fraction / drop_ramp_end)``, ``drop_ramp_end = 1.0`` for this
    variant (linear over the whole run);
  - convolutions initialised ``kaiming_normal_(mode="fan_out",
    nonlinearity="leaky_relu")`` and batch norm (1, 0) (resnet.py:194-199);
  - the same block structure, widths 64-160-320-640 (resnet.py:115-156, 178-185) and
    global average pooling (``avg_pool=True`` from models/util.py:21, 30;
    ``AdaptiveAvgPool2d(1)``, resnet.py:186-188). (MetaOptNet's own code pools
    differently: it flattens the 5x5x640 map, ``avg_pool=False``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ResNet12Variant = Literal["plain", "official"]
ConvInit = Literal["pytorch", "official"]
VARIANTS: tuple[str, ...] = ("plain", "official")


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al., NeurIPS 2018): zero contiguous ``block_size`` squares.

    The seed rate is gamma = p / block_size^2 * H*W / ((H-bs+1)(W-bs+1)) (their Eq. 1;
    Wang et al.'s code: models/resnet.py:162), seeds are drawn on the (H-bs+1)(W-bs+1)
    positions whose block fits in the map and each seed zeroes the bs x bs square below
    and right of it (resnet.py:67, 76-106); kept activations are rescaled by
    numel / count(kept) so the expectation is unchanged (resnet.py:69-72). Inactive in eval
    mode or at rate 0.

    Args:
        drop_prob: the final drop rate p.
        block_size: side of a dropped square (clamped to the feature map).
        drop_ramp_end: 0 (default): the rate is ``drop_prob`` throughout. ``f > 0``: the
            rate follows training progress, ``drop_prob * min(1, fraction / f)``
            (linear from 0 as in Wang et al.'s code, resnet.py:161), set by
            :meth:`set_training_progress`; it is 0 until that is first called.
    """

    def __init__(self, drop_prob: float = 0.1, block_size: int = 5, drop_ramp_end: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"DropBlock drop_prob must lie in [0, 1) (got {drop_prob}).")
        if block_size < 1:
            raise ValueError(f"DropBlock block_size must be >= 1 (got {block_size}).")
        if not 0.0 <= drop_ramp_end <= 1.0:
            raise ValueError(f"DropBlock drop_ramp_end must lie in [0, 1] (got {drop_ramp_end}).")
        self.drop_prob = drop_prob
        self.block_size = block_size
        self.drop_ramp_end = drop_ramp_end
        #: the rate the next training forward uses (``drop_prob`` unless ramped)
        self.current_drop_prob = 0.0 if drop_ramp_end > 0 else drop_prob

    def set_training_progress(self, fraction: float) -> None:
        """Set the current rate for ``fraction`` in [0, 1] of training done (no-op without a ramp)."""
        if self.drop_ramp_end > 0:
            self.current_drop_prob = self.drop_prob * min(1.0, max(0.0, float(fraction)) / self.drop_ramp_end)

    def extra_repr(self) -> str:
        ramp = f", drop_ramp_end={self.drop_ramp_end}" if self.drop_ramp_end > 0 else ""
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}{ramp}"

    def forward(self, x: Tensor) -> Tensor:
        p = self.current_drop_prob
        if not self.training or p == 0.0:
            return x
        _, _, h, w = x.shape
        bs = min(self.block_size, h, w)
        valid = (h - bs + 1) * (w - bs + 1)
        gamma = p / (bs * bs) * (h * w) / valid
        seeds = (torch.rand(x.shape[0], x.shape[1], h - bs + 1, w - bs + 1, device=x.device) < gamma).to(x.dtype)
        seeds = F.pad(seeds, (bs // 2, (bs - 1) // 2, bs // 2, (bs - 1) // 2))
        block = F.max_pool2d(seeds, kernel_size=bs, stride=1, padding=bs // 2)[..., :h, :w]
        keep = 1.0 - block
        return x * keep * (keep.numel() / keep.sum().clamp_min(1.0))


@dataclass(frozen=True)
class ResNet12Recipe:
    """The resolved regularisation / initialisation settings of one ResNet-12."""

    dropout: float
    drop_prob: float
    block_size: int
    drop_ramp_end: float
    init: ConvInit


def resolve_recipe(
    variant: str = "plain",
    image_size: int | None = None,
    *,
    dropout: float | None = None,
    drop_prob: float | None = None,
    block_size: int | None = None,
    drop_ramp_end: float | None = None,
    init: str | None = None,
) -> ResNet12Recipe:
    """The settings of ``variant`` (module docstring), each overridden where given (not ``None``)."""
    if variant not in VARIANTS:
        raise ValueError(f"ResNet-12 variant must be one of {', '.join(map(repr, VARIANTS))} (got {variant!r}).")
    official = variant == "official"
    if block_size is None:
        # models/util.py:21, 30: 5 for the 84 px ImageNet subsets, 2 for the 32 px CIFAR ones
        block_size = (5 if image_size is None or image_size >= 64 else 2) if official else 5
    recipe = ResNet12Recipe(
        dropout=(0.1 if official else 0.0) if dropout is None else float(dropout),
        drop_prob=0.1 if drop_prob is None else float(drop_prob),
        block_size=int(block_size),
        drop_ramp_end=(1.0 if official else 0.0) if drop_ramp_end is None else float(drop_ramp_end),
        init=("official" if official else "pytorch") if init is None else init,  # type: ignore[arg-type]
    )
    if not 0.0 <= recipe.dropout < 1.0:
        raise ValueError(f"ResNet-12 dropout must lie in [0, 1) (got {recipe.dropout}).")
    if recipe.init not in ("pytorch", "official"):
        raise ValueError(f"ResNet-12 init must be 'pytorch' or 'official' (got {recipe.init!r}).")
    return recipe


class ResBlock12(nn.Module):
    """One ResNet-12 block (see module docstring): Wang et al.'s ``BasicBlock``, resnet.py:109-167."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        drop_prob: float,
        block_size: int,
        track_running_stats: bool = True,
        dropout: float = 0.0,
        drop_ramp_end: float = 0.0,
    ) -> None:
        super().__init__()
        trs = track_running_stats
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch, track_running_stats=trs)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, track_running_stats=trs)
        self.conv3 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, track_running_stats=trs)
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch, track_running_stats=trs)
        )
        self.dropblock = DropBlock(drop_prob, block_size, drop_ramp_end)
        #: element-wise dropout after the max-pool (Wang et al.'s blocks 1-2, resnet.py:165)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.bn1(self.conv1(x)), 0.1)
        out = F.leaky_relu(self.bn2(self.conv2(out)), 0.1)
        out = self.bn3(self.conv3(out))
        out = F.max_pool2d(F.leaky_relu(out + self.shortcut(x), 0.1), 2)
        if self.dropout > 0:
            out = F.dropout(out, self.dropout, self.training)
        return self.dropblock(out)


class ResNet12Backbone(nn.Module):
    """``[B, C, H, W] -> [B, widths[-1]]`` (global average pooled).

    Args:
        in_channels: image channels.
        widths: the four block widths.
        drop_prob: final DropBlock rate in blocks 3-4 [variant: 0.1].
        block_size: DropBlock square side [plain: 5; official: 5 at ``image_size >= 64``, else 2].
        track_running_stats: batch norm with running statistics.
        variant: ``"plain"`` or ``"official"`` (module docstring): the defaults of the
            settings left ``None``.
        image_size: input side, used only to choose the official block size.
        dropout: dropout rate after blocks 1-2 [plain: 0; official: 0.1].
        drop_ramp_end: fraction of training over which the DropBlock rate ramps up
            linearly from 0, 0 = no ramp [plain: 0; official: 1.0] (:class:`DropBlock`).
        init: convolution initialisation, ``"pytorch"`` (the default of ``nn.Conv2d``)
            or ``"official"`` (kaiming normal, fan out, leaky ReLU; resnet.py:194-199)
            [plain: pytorch; official: official].
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 160, 320, 640),
        drop_prob: float | None = None,
        block_size: int | None = None,
        track_running_stats: bool = True,
        *,
        variant: ResNet12Variant = "plain",
        image_size: int | None = None,
        dropout: float | None = None,
        drop_ramp_end: float | None = None,
        init: ConvInit | None = None,
    ) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"ResNet-12 has four blocks; got widths {tuple(widths)}.")
        r = resolve_recipe(
            variant,
            image_size,
            dropout=dropout,
            drop_prob=drop_prob,
            block_size=block_size,
            drop_ramp_end=drop_ramp_end,
            init=init,
        )
        self.recipe = r
        chans = [in_channels, *widths]
        self.blocks = nn.Sequential(
            *[
                ResBlock12(
                    chans[i],
                    chans[i + 1],
                    r.drop_prob if i >= 2 else 0.0,
                    r.block_size,
                    track_running_stats,
                    dropout=r.dropout if i < 2 else 0.0,
                    drop_ramp_end=r.drop_ramp_end,
                )
                for i in range(4)
            ]
        )
        if r.init == "official":
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
        self.feature_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x).mean(dim=(2, 3))


class ResNet12(nn.Module):
    """ResNet-12 backbone (``self.body``) plus a linear classifier (``self.head``).

    Arguments as :class:`ResNet12Backbone` (``out_dim``: the head's output size).
    """

    def __init__(
        self,
        out_dim: int,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 160, 320, 640),
        drop_prob: float | None = None,
        block_size: int | None = None,
        track_running_stats: bool = True,
        *,
        variant: ResNet12Variant = "plain",
        image_size: int | None = None,
        dropout: float | None = None,
        drop_ramp_end: float | None = None,
        init: ConvInit | None = None,
    ) -> None:
        super().__init__()
        self.body = ResNet12Backbone(
            in_channels,
            widths,
            drop_prob,
            block_size,
            track_running_stats,
            variant=variant,
            image_size=image_size,
            dropout=dropout,
            drop_ramp_end=drop_ramp_end,
            init=init,
        )
        self.feature_dim = self.body.feature_dim
        self.head = nn.Linear(self.feature_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def official_keep_rate(num_forwards: int, drop_rate: float = 0.1) -> float:
    """Wang et al.'s DropBlock keep rate after ``num_forwards`` forwards of a block
    (models/resnet.py:161), for comparison with the fraction-based ramp here."""
    return max(1.0 - drop_rate / (20 * 2000) * num_forwards, 1.0 - drop_rate)
