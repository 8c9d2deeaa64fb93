"""ResNet-12 (64-160-320-640) and DropBlock (Ghiasi et al. 2018)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metabridge.models import ResNet12, ResNet12Backbone
from metabridge.models.resnet12 import DropBlock

SMALL = (4, 8, 8, 16)


@pytest.fixture(scope="module")
def full_resnet12() -> ResNet12:
    torch.manual_seed(0)
    return ResNet12(5).eval()


@pytest.mark.parametrize("side", [84, 32])
def test_output_shapes_at_mini_imagenet_and_cifar_sizes(full_resnet12, side):
    x = torch.rand(1, 3, side, side)
    with torch.no_grad():
        features, logits = full_resnet12.body(x), full_resnet12(x)
    assert full_resnet12.feature_dim == 640
    assert features.shape == (1, 640) and logits.shape == (1, 5)
    assert torch.isfinite(logits).all()


def test_dropblock_sits_in_the_last_two_blocks_and_batch_norm_follows_the_flag():
    net = ResNet12Backbone(3, SMALL, drop_prob=0.2, block_size=3, track_running_stats=False)
    assert [b.dropblock.drop_prob for b in net.blocks] == [0.0, 0.0, 0.2, 0.2]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 16 and all(m.running_mean is None for m in norms)  # 3 per block + shortcut
    with pytest.raises(ValueError, match="four blocks"):
        ResNet12Backbone(3, (8, 16, 32))


def test_dropblock_is_the_identity_in_eval_mode_and_at_rate_zero():
    x = torch.randn(2, 4, 12, 12)
    assert torch.equal(DropBlock(0.3, 5).eval()(x), x)
    assert torch.equal(DropBlock(0.0, 5).train()(x), x)
    torch.manual_seed(0)
    net = ResNet12(3, 3, SMALL, drop_prob=0.5, block_size=2).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))  # eval: deterministic
        net.train()
        assert not torch.equal(net(x), net(x))  # train: blocks are dropped at random


def _expected_drop_fraction(p: float, bs: int, h: int, w: int) -> float:
    """Ghiasi et al.'s construction: seeds Bernoulli(gamma) on the (h-bs+1)(w-bs+1) positions whose
    bs x bs block fits inside the map; a cell is dropped when any block covering it was seeded."""
    gamma = p / bs**2 * h * w / ((h - bs + 1) * (w - bs + 1))

    def cover(n: int) -> torch.Tensor:  # how many block origins cover each row / column
        i = torch.arange(n)
        return (torch.clamp(i, max=n - bs) - torch.clamp(i - bs + 1, min=0) + 1).double()

    c = cover(h)[:, None] * cover(w)[None, :]
    return float((1 - (1 - gamma) ** c).mean())


@pytest.mark.parametrize("keep", [0.9, 0.7])
def test_dropblock_drops_the_expected_fraction_and_keeps_the_mean(keep):
    torch.manual_seed(0)
    x = torch.ones(8, 16, 40, 40)
    out = DropBlock(1 - keep, 5).train()(x)
    dropped = float((out == 0).double().mean())
    assert dropped == pytest.approx(_expected_drop_fraction(1 - keep, 5, 40, 40), abs=0.015)
    assert abs(dropped - (1 - keep)) < 0.2 * (1 - keep)  # about the nominal rate (blocks overlap)
    kept = out[out != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, x.numel() / kept.numel()))  # rescaled kept units
    assert float(out.sum()) == pytest.approx(x.numel(), rel=1e-5)


def test_dropped_units_form_whole_block_size_squares_per_channel():
    """The zero pattern is a union of bs x bs squares inside the map: a morphological opening
    (erode, then dilate, with a bs x bs box) leaves it unchanged; single dropped pixels would not survive."""
    torch.manual_seed(0)
    bs = 3
    out = DropBlock(0.15, bs).train()(torch.ones(4, 6, 20, 20))
    mask = (out == 0).float()
    assert 0 < mask.mean() < 0.5
    eroded = -F.max_pool2d(-mask, bs, stride=1)  # 1 where a whole bs x bs square is dropped
    opened = F.max_pool2d(F.pad(eroded, (bs - 1,) * 4), bs, stride=1)
    assert torch.equal(opened, mask)
    assert not torch.equal(mask, mask.roll(1, dims=0))  # each map gets its own blocks


def test_gradients_flow_through_the_network_and_only_through_kept_units():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 10, 10, requires_grad=True)
    torch.manual_seed(1)
    out = DropBlock(0.3, 3).train()(x)
    out.sum().backward()
    keep = (out != 0) | (x == 0)
    scale = x.numel() / keep.sum()
    torch.testing.assert_close(x.grad, keep.float() * scale)

    net = ResNet12(3, 3, SMALL, drop_prob=0.1, block_size=2, track_running_stats=True).train()
    images = torch.rand(4, 3, 32, 32, requires_grad=True)
    F.cross_entropy(net(images), torch.tensor([0, 1, 2, 0])).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert images.grad.abs().sum() > 0
