"""ResNet-12 (64-160-320-640), DropBlock (Ghiasi et al. 2018), and the plain and official variants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from metabridge.models import ResNet12, ResNet12Backbone, build_model
from metabridge.models.resnet12 import DropBlock, official_keep_rate, resolve_recipe

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


# ------------------------------------------------------------------ variants: plain and official
def _blocks(net) -> list:
    body = net.body if hasattr(net, "body") else net
    return list(body.blocks)


def test_plain_variant_is_the_resnet12_as_before():
    """No dropout, DropBlock 0.1 (block size 5 at any image size) in blocks 3-4, constant rate."""
    net = build_model("resnet12", 5, in_channels=3, image_size=32, widths=SMALL)
    blocks = _blocks(net)
    assert [b.dropout for b in blocks] == [0.0] * 4
    assert [b.dropblock.drop_prob for b in blocks] == [0.0, 0.0, 0.1, 0.1]
    assert [b.dropblock.block_size for b in blocks] == [5] * 4
    for b in blocks:
        b.dropblock.set_training_progress(0.0)  # no ramp: a no-op
    assert [b.dropblock.current_drop_prob for b in blocks] == [0.0, 0.0, 0.1, 0.1]
    assert net.body.recipe == resolve_recipe("plain")


@pytest.mark.parametrize("side, block", [(84, 5), (32, 2)])
def test_official_variant_dropout_in_blocks_1_2_dropblock_in_3_4_block_size_by_image_size(side, block):
    """models/util.py:21, 30 (block 5 at 84 px, 2 at 32 px); resnet.py:158-165, 178-185."""
    torch.manual_seed(0)
    net = build_model("resnet12", 5, in_channels=3, image_size=side, widths=SMALL, variant="official")
    blocks = _blocks(net)
    assert [b.dropout for b in blocks] == [0.1, 0.1, 0.0, 0.0]
    assert [b.dropblock.drop_prob for b in blocks] == [0.0, 0.0, 0.1, 0.1]
    assert [b.dropblock.block_size for b in blocks[2:]] == [block, block]
    assert [b.dropblock.drop_ramp_end for b in blocks[2:]] == [1.0, 1.0]
    x = torch.rand(2, 3, side, side)
    with torch.no_grad():
        assert net.body(x).shape == (2, SMALL[-1]) and net(x).shape == (2, 5)
    overridden = build_model(
        "resnet12",
        5,
        in_channels=3,
        image_size=side,
        widths=SMALL,
        variant="official",
        block_size=3,
        dropout=0.0,
        drop_ramp_end=0.0,
    )
    assert [b.dropblock.block_size for b in _blocks(overridden)] == [3] * 4
    assert [b.dropout for b in _blocks(overridden)] == [0.0] * 4
    assert [b.dropblock.current_drop_prob for b in _blocks(overridden)] == [0.0, 0.0, 0.1, 0.1]
    with pytest.raises(ValueError, match="variant"):
        build_model("resnet12", 5, in_channels=3, image_size=side, variant="metaoptnet")


def test_official_ramp_is_linear_from_zero_and_matches_their_formula():
    """resnet.py:161: drop = min(p * n / 40000, p) after n forwards; here as a fraction of training:
    drop = p * min(1, fraction / drop_ramp_end)."""
    net = ResNet12Backbone(3, SMALL, variant="official")
    db = net.blocks[3].dropblock
    assert db.current_drop_prob == 0.0  # before any progress: their counter starts at 0
    for fraction, rate in [(0.0, 0.0), (0.25, 0.025), (0.5, 0.05), (1.0, 0.1)]:
        db.set_training_progress(fraction)
        assert db.current_drop_prob == pytest.approx(rate)
    # a run of 80,000 forwards: their ramp ends at half of it, i.e. drop_ramp_end = 0.5
    half = DropBlock(0.1, 5, drop_ramp_end=0.5)
    for n in (0, 10_000, 20_000, 40_000, 60_000, 80_000):
        half.set_training_progress(n / 80_000)
        assert half.current_drop_prob == pytest.approx(1 - official_keep_rate(n, 0.1)), n
    with pytest.raises(ValueError, match="drop_ramp_end"):
        DropBlock(0.1, 5, drop_ramp_end=1.5)


def test_dropout_acts_only_in_blocks_1_2_and_dropblock_only_in_3_4():
    torch.manual_seed(0)
    net = ResNet12Backbone(3, (8, 8, 8, 8), variant="official", image_size=32).train()
    zeros: list[float] = []
    for b in net.blocks:
        b.register_forward_hook(lambda _m, _a, out: zeros.append(float((out == 0).double().mean())))
    x = torch.rand(16, 3, 32, 32)
    for m in net.modules():  # DropBlock off (fraction 0): only the plain dropout drops
        if hasattr(m, "set_training_progress"):
            m.set_training_progress(0.0)
    net(x)
    assert zeros[0] == pytest.approx(0.1, abs=0.02) and zeros[1] == pytest.approx(0.1, abs=0.03)
    assert zeros[2] == 0.0 and zeros[3] == 0.0
    zeros.clear()
    for b in net.blocks:
        b.dropblock.set_training_progress(1.0)
        b.dropout = 0.0
    net(x)
    assert zeros[0] == 0.0 and zeros[1] == 0.0
    assert zeros[2] > 0.02 and zeros[3] > 0.02


def test_official_variant_is_the_identity_in_eval_and_initialises_like_their_code():
    torch.manual_seed(0)
    official = ResNet12(5, 3, SMALL, variant="official", image_size=32)
    plain = ResNet12(5, 3, SMALL)
    plain.load_state_dict(official.state_dict())  # same parameters and buffers
    for m in official.modules():
        if hasattr(m, "set_training_progress"):
            m.set_training_progress(1.0)
    x = torch.rand(3, 3, 32, 32)
    official.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(official(x), plain(x), rtol=0, atol=0)
        official.train()
        assert not torch.equal(official(x), official(x))
    # resnet.py:194-199: kaiming_normal_(mode="fan_out", nonlinearity="leaky_relu"): std sqrt(2 / fan_out)
    torch.manual_seed(0)
    wide = ResNet12Backbone(3, (64, 160, 320, 640), variant="official")
    conv = wide.blocks[2].conv2  # 320 -> 320, 3x3
    assert float(conv.weight.detach().std()) == pytest.approx(math.sqrt(2 / (320 * 9)), rel=0.02)
    assert float(conv.weight.detach().mean()) == pytest.approx(0.0, abs=1e-3)
    torch.manual_seed(0)
    default = ResNet12Backbone(3, (64, 160, 320, 640), init="pytorch").blocks[2].conv2
    assert float(default.weight.detach().std()) == pytest.approx(1 / math.sqrt(3 * 320 * 9), rel=0.02)
