"""Batched augmentation: crops are shifts, flips flip, parameters are per image, seeded runs repeat."""

import pytest
import torch

from metabridge.data.augment import (
    AUGMENT_PRESETS,
    PRESET_IMAGE_SIZES,
    Augment,
    augment_for,
    check_augment_name,
    color_jitter,
    crop_at,
    random_crop,
    random_hflip,
    resolve_augment,
    scaled_padding,
    to_float,
)


def _framed(b: int = 8, c: int = 1, size: int = 12, border: int = 3, dtype=torch.uint8) -> torch.Tensor:
    """Random images whose outer ``border`` pixels are zero (so a small crop only moves background)."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(b, c, size, size, dtype=dtype)
    inner = torch.randint(1, 256, (b, c, size - 2 * border, size - 2 * border), generator=g)
    x[:, :, border:-border, border:-border] = inner.to(dtype) if dtype == torch.uint8 else inner.to(dtype) / 255
    return x


def test_crop_at_identity_and_shift_equals_rolled_copy():
    x = _framed()
    p = 2
    same = torch.full((8,), p)
    assert torch.equal(crop_at(x, p, same, same), x)
    dy = torch.tensor([0, 1, 2, 3, 4, 0, 4, 2])
    dx = torch.tensor([4, 3, 2, 1, 0, 0, 4, 2])
    out = crop_at(x, p, dy, dx)
    for i in range(8):  # the reference, image by image
        ref = torch.roll(x[i], shifts=(p - int(dy[i]), p - int(dx[i])), dims=(-2, -1))
        assert torch.equal(out[i], ref)


def test_random_crop_is_a_shift_per_image_and_parameters_differ():
    x = _framed(b=1).expand(64, -1, -1, -1).contiguous()
    p = 2
    out = random_crop(x, p, torch.Generator().manual_seed(1))
    shifts = set()
    for i in range(64):
        match = [
            (sy, sx)
            for sy in range(-p, p + 1)
            for sx in range(-p, p + 1)
            if torch.equal(out[i], torch.roll(x[i], shifts=(sy, sx), dims=(-2, -1)))
        ]
        assert match, "every crop is a shifted copy"
        shifts.add(match[0])
    assert len(shifts) > 10  # 25 possible shifts, drawn per image


def test_flips_flip_exactly_the_chosen_images():
    x = _framed(b=64, dtype=torch.float32)
    out = random_hflip(x, 0.5, torch.Generator().manual_seed(2))
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(64)])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(64)])
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54
    assert torch.equal(random_hflip(x, 1.0), x.flip(-1))
    assert torch.equal(random_hflip(x, 0.0), x)


def test_seeded_runs_repeat_and_shapes_dtypes_are_kept():
    aug = Augment(crop_padding=3, hflip=True, brightness=0.4, contrast=0.4, saturation=0.4)
    for dtype in (torch.uint8, torch.float32):
        x = _framed(b=6, c=3, dtype=dtype).reshape(2, 3, 3, 12, 12)  # episodes [T, S, C, H, W]
        a = aug(x, torch.Generator().manual_seed(5))
        b = aug(x, torch.Generator().manual_seed(5))
        c = aug(x, torch.Generator().manual_seed(6))
        assert a.shape == x.shape and a.dtype == dtype
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_color_jitter_per_image_factors_and_ranges():
    x = torch.full((32, 3, 4, 4), 0.5)
    x[:, 0] = 0.2
    bright = color_jitter(x, brightness=0.5, generator=torch.Generator().manual_seed(3))
    ratio = bright / x
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), atol=1e-6)  # one factor per image
    assert ratio[:, 0, 0, 0].unique().numel() == 32
    gray = torch.full((4, 3, 5, 5), 0.3)
    assert torch.allclose(color_jitter(gray, saturation=0.9, generator=torch.Generator().manual_seed(0)), gray)
    u8 = (x * 255).to(torch.uint8)
    out = color_jitter(u8, 0.9, 0.9, 0.9, torch.Generator().manual_seed(4))
    assert out.dtype == torch.uint8
    f = color_jitter(x, 0.9, 0.9, 0.9, torch.Generator().manual_seed(4))
    assert float(f.min()) >= 0.0 and float(f.max()) <= 1.0


def test_to_float_and_normalisation():
    x = torch.tensor([0, 255], dtype=torch.uint8).reshape(1, 1, 1, 2)
    assert torch.equal(to_float(x), torch.tensor([[[[0.0, 1.0]]]]))
    y = to_float(torch.full((2, 3, 2, 2), 255, dtype=torch.uint8), mean=[0.5, 0.5, 0.0], std=[0.5, 0.25, 1.0])
    assert torch.allclose(y[:, 0], torch.ones(2, 2, 2)) and torch.allclose(y[:, 1], torch.full((2, 2, 2), 2.0))


def test_presets_never_flip_characters():
    assert not augment_for("glyphs").hflip and not augment_for("omniglot").hflip
    assert augment_for("glyphs-background-28px").crop_padding > 0
    assert augment_for("mini-imagenet").hflip
    assert augment_for("unknown").is_identity
    with pytest.raises(ValueError):
        random_hflip(torch.zeros(4, 4))


def test_colour_presets_are_the_official_mtl_training_transform():
    """AI-secure/multi-task-learning benchmarks/*_benchmark.py ('lee2019'): RandomCrop(84, padding=8)
    for mini-/tiered-ImageNet and RandomCrop(32, padding=4) for CIFAR-FS / FC100, each with
    ColorJitter(0.4, 0.4, 0.4) and RandomHorizontalFlip()."""
    jitter = dict(brightness=0.4, contrast=0.4, saturation=0.4)
    for name, padding, size in (
        ("mini-imagenet", 8, 84),
        ("tiered-imagenet", 8, 84),
        ("cifar-fs", 4, 32),
        ("fc100", 4, 32),
    ):
        assert AUGMENT_PRESETS[name] == Augment(crop_padding=padding, hflip=True, **jitter), name
        assert PRESET_IMAGE_SIZES[name] == size
    for name in ("glyphs", "omniglot"):  # characters: crop only
        assert AUGMENT_PRESETS[name] == Augment(crop_padding=2) and PRESET_IMAGE_SIZES[name] == 28


def test_resolve_augment_auto_by_name_then_by_channels_and_scales_the_crop():
    assert resolve_augment(None, "glyphs", channels=1, image_size=28) is None
    assert resolve_augment("none", "glyphs", channels=1, image_size=28) is None
    assert resolve_augment("auto", "mini_imagenet", channels=3, image_size=84) == AUGMENT_PRESETS["mini-imagenet"]
    assert resolve_augment("auto", "cifar_fs", channels=3, image_size=32) == AUGMENT_PRESETS["cifar-fs"]
    assert resolve_augment("auto", "glyphs", channels=1, image_size=28) == Augment(crop_padding=2)
    # the same fraction of the side at another size: mini-ImageNet at 32 px, glyphs at 84 px
    assert resolve_augment("auto", "mini-imagenet", channels=3, image_size=32).crop_padding == 3
    assert resolve_augment("glyphs", None, channels=1, image_size=84).crop_padding == 6
    # one's own images (no name) or a name without a preset: by channel count, never flipped
    colour = resolve_augment("auto", None, channels=3, image_size=32)
    assert colour == Augment(crop_padding=4, brightness=0.4, contrast=0.4, saturation=0.4)
    assert resolve_augment("auto", "my_photos", channels=3, image_size=64).crop_padding == 8
    assert resolve_augment("auto", None, channels=1, image_size=28) == Augment(crop_padding=2)
    assert not resolve_augment("auto", "my_scans", channels=1, image_size=28).hflip
    # an explicit preset is used as it is, on any data
    assert resolve_augment("cifar-fs", None, channels=3, image_size=32).hflip
    with pytest.raises(ValueError, match="unknown augmentation 'blur'.*auto.*cifar-fs"):
        resolve_augment("blur", None, channels=3, image_size=32)


def test_augment_names_and_padding_scaling():
    assert check_augment_name("Mini_ImageNet") == "mini-imagenet" and check_augment_name("AUTO") == "auto"
    assert check_augment_name("colour") == "color"
    assert scaled_padding(8, 84, 84) == 8 and scaled_padding(8, 84, 32) == 3
    assert scaled_padding(2, 28, 8) == 1  # never switched off by rounding
    assert scaled_padding(0, 28, 84) == 0
