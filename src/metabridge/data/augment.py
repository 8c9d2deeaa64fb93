"""Training-time augmentation as batched tensor operations.

Every function takes a whole batch ``[..., C, H, W]`` (any leading dims: a batch of
images ``[B, C, H, W]`` or a batch of episodes ``[T, S, C, H, W]``), uint8 or float,
draws one set of random parameters **per image** from an optional
``torch.Generator``, and has no Python loop over images: a random crop pads once
and gathers every image's window with one advanced-indexing call; a flip is a
``torch.where`` between the batch and its mirror; colour jitter is a few
broadcast multiplications.

Float inputs are taken to be in ``[0, 1]`` (augment before normalising); uint8
inputs stay uint8 (jitter is computed in float and rounded back). Which
augmentations suit a dataset is opt-in (``AUGMENT_PRESETS``): characters and
glyphs are never flipped by default, since a mirrored letter is another letter
(or none), and grayscale sets get no colour jitter.

The colour presets are the training transform of Wang et al.'s official MTL code
(GitHub AI-secure/multi-task-learning, the ``'lee2019'`` augmentation of
``benchmarks/mini_imagenet_benchmark.py:44-52`` and ``tiered_imagenet_benchmark.py``:
``RandomCrop(84, padding=8)``, ``ColorJitter(0.4, 0.4, 0.4)``, ``RandomHorizontalFlip()``;
``benchmarks/cifarfs_benchmark.py:26-34`` and ``fc100_benchmark.py``: the same with
``RandomCrop(32, padding=4)``), itself MetaOptNet's (Lee et al. 2019). Two
differences, both immaterial to the distribution of augmented images up to the order
of the jitter factors: torchvision's ``ColorJitter`` applies brightness, contrast and
saturation in a random order per image, here always in that order; and the flip is
drawn before the jitter (the two commute: jitter is per pixel or uses the image
mean). Zero padding, per-image parameters and factor ranges ``U[1-a, 1+a]`` match.

:func:`resolve_augment` turns the ``augment`` setting of a run (``None``, ``"auto"`` or
a preset name) into the :class:`Augment` its training episodes get; a preset's crop
padding is scaled from the image size it was chosen for (:data:`PRESET_IMAGE_SIZES`)
to the size the data is loaded at, so ``mini-imagenet`` keeps "8 px at 84 px" as
about a tenth of the side at any resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .class_dataset import host_to_device


def _flat(images: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    if images.dim() < 3:
        raise ValueError(f"augment: expected [..., C, H, W] images, got shape {tuple(images.shape)}.")
    lead = tuple(images.shape[:-3])
    return images.reshape(-1, *images.shape[-3:]), lead


# Random parameters are drawn on the generator's device (the host, for the CPU generator a
# training run owns) and then sent to the images' device: the draws, and so the augmented
# images, do not depend on where the images are. The copy is pinned and asynchronous for
# CUDA (host_to_device), so augmenting device-resident episodes never makes the host wait.
def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    where = generator.device if generator is not None else device
    return host_to_device(torch.rand(n, generator=generator, device=where), device)


def _randint(high: int, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    where = generator.device if generator is not None else device
    return host_to_device(torch.randint(0, high, (n,), generator=generator, device=where), device)


def _constant(values: float | Sequence[float], like: Tensor) -> Tensor:
    """``values`` as a tensor of ``like``'s dtype on its device, built on the host and copied
    without a host wait (``torch.tensor(..., device=cuda)`` would synchronise)."""
    return host_to_device(torch.as_tensor(values, dtype=like.dtype), like.device)


def to_float(
    images: Tensor, mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None
) -> Tensor:
    """uint8 ``0..255`` -> float32 ``[0, 1]``, then ``(x - mean) / std`` per channel if given.

    Float input is taken as already in ``[0, 1]`` and only normalised.
    """
    x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
    if mean is None and std is None:
        return x
    shape = (-1, 1, 1)
    m = _constant(0.0 if mean is None else mean, x)
    s = _constant(1.0 if std is None else std, x)
    if m.dim():
        m = m.reshape(shape)
    if s.dim():
        s = s.reshape(shape)
    return (x - m) / s


def crop_at(images: Tensor, padding: int, dy: Tensor, dx: Tensor, fill: float = 0) -> Tensor:
    """Window ``[dy, dy+H) x [dx, dx+W)`` of each image after padding by ``padding`` on every side.

    ``dy``, ``dx``: ``[B]`` offsets in ``0..2*padding``; ``dy = dx = padding`` is the identity,
    ``dy = padding + s`` shows the image moved up by ``s`` rows.
    """
    x, lead = _flat(images)
    b, c, h, w = x.shape
    padded = x.new_full((b, c, h + 2 * padding, w + 2 * padding), fill)
    padded[:, :, padding : padding + h, padding : padding + w] = x
    rows = (dy.long().reshape(b, 1) + torch.arange(h, device=x.device)).reshape(b, 1, h, 1)
    cols = (dx.long().reshape(b, 1) + torch.arange(w, device=x.device)).reshape(b, 1, 1, w)
    bi = torch.arange(b, device=x.device).reshape(b, 1, 1, 1)
    ci = torch.arange(c, device=x.device).reshape(1, c, 1, 1)
    return padded[bi, ci, rows, cols].reshape(*lead, c, h, w)


def random_crop(images: Tensor, padding: int, generator: torch.Generator | None = None, fill: float = 0) -> Tensor:
    """Pad by ``padding`` (with ``fill``) and take a random ``H x W`` window per image."""
    if padding <= 0:
        return images
    n = images.reshape(-1, *images.shape[-3:]).shape[0]
    dy = _randint(2 * padding + 1, n, generator, images.device)
    dx = _randint(2 * padding + 1, n, generator, images.device)
    return crop_at(images, padding, dy, dx, fill)


def random_hflip(images: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability ``p``."""
    x, lead = _flat(images)
    flip = _rand(x.shape[0], generator, x.device) < p
    return torch.where(flip.reshape(-1, 1, 1, 1), x.flip(-1), x).reshape(images.shape)


def _factors(n: int, amount: float, generator: torch.Generator | None, device: torch.device) -> Tensor:
    return 1.0 + amount * (2.0 * _rand(n, generator, device) - 1.0)


def color_jitter(
    images: Tensor,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-image brightness, contrast and saturation factors drawn from ``U[1-a, 1+a]``, applied in that order.

    brightness scales pixels; contrast blends with the image's mean gray level;
    saturation blends each pixel with its gray (luma) value (RGB only; skipped for
    other channel counts). Results are clamped to the valid range.
    """
    x, lead = _flat(images)
    b, c = x.shape[:2]
    top = 255.0 if images.dtype == torch.uint8 else 1.0
    y = x.float()
    luma = _constant([0.299, 0.587, 0.114], y)

    def gray(z: Tensor) -> Tensor:
        return (z * luma.reshape(1, 3, 1, 1)).sum(1, keepdim=True) if c == 3 else z.mean(1, keepdim=True)

    if brightness > 0:
        y = (y * _factors(b, brightness, generator, x.device).reshape(b, 1, 1, 1)).clamp(0, top)
    if contrast > 0:
        f = _factors(b, contrast, generator, x.device).reshape(b, 1, 1, 1)
        m = gray(y).mean(dim=(1, 2, 3), keepdim=True)
        y = ((y - m) * f + m).clamp(0, top)
    if saturation > 0 and c == 3:
        f = _factors(b, saturation, generator, x.device).reshape(b, 1, 1, 1)
        g = gray(y)
        y = ((y - g) * f + g).clamp(0, top)
    if images.dtype == torch.uint8:
        y = y.round().to(torch.uint8)
    else:
        y = y.to(images.dtype)
    return y.reshape(images.shape)


@dataclass(frozen=True)
class Augment:
    """A configured augmentation: crop with padding, then optional flip, then colour jitter.

    ``Augment()`` is the identity. Call it on any ``[..., C, H, W]`` batch.
    """

    crop_padding: int = 0
    hflip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self == Augment()

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = random_crop(images, self.crop_padding, generator)
        if self.hflip:
            x = random_hflip(x, 0.5, generator)
        if self.brightness or self.contrast or self.saturation:
            x = color_jitter(x, self.brightness, self.contrast, self.saturation, generator)
        return x


AUGMENT_PRESETS: dict[str, Augment] = {
    "none": Augment(),
    # characters: a shift of a couple of pixels, never a mirror image, no colour
    "glyphs": Augment(crop_padding=2),
    "omniglot": Augment(crop_padding=2),
    # Wang et al.'s official MTL code (see the module docstring)
    "mini-imagenet": Augment(crop_padding=8, hflip=True, brightness=0.4, contrast=0.4, saturation=0.4),
    "tiered-imagenet": Augment(crop_padding=8, hflip=True, brightness=0.4, contrast=0.4, saturation=0.4),
    "cifar-fs": Augment(crop_padding=4, hflip=True, brightness=0.4, contrast=0.4, saturation=0.4),
    "fc100": Augment(crop_padding=4, hflip=True, brightness=0.4, contrast=0.4, saturation=0.4),
    # the "auto" choice for a dataset without a preset (one's own folder, a registered
    # name): crop, plus jitter for RGB, and no flip, since whether a mirrored image keeps
    # its class (text, digits, arrows) cannot be known from the pixels
    "grayscale": Augment(crop_padding=2),
    "color": Augment(crop_padding=4, brightness=0.4, contrast=0.4, saturation=0.4),
}

#: The image side length each preset's ``crop_padding`` was chosen for.
PRESET_IMAGE_SIZES: dict[str, int] = {
    "glyphs": 28,
    "omniglot": 28,
    "mini-imagenet": 84,
    "tiered-imagenet": 84,
    "cifar-fs": 32,
    "fc100": 32,
    "grayscale": 28,
    "color": 32,
}

_ALIASES = {
    "miniimagenet": "mini-imagenet",
    "tieredimagenet": "tiered-imagenet",
    "cifarfs": "cifar-fs",
    "colour": "color",
    "greyscale": "grayscale",
    "gray": "grayscale",
    "grey": "grayscale",
}


def _normal(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    return _ALIASES.get(key, key)


def preset_for(dataset: str) -> str | None:
    """The name of the preset of ``dataset`` (``"mini_imagenet"``, ``"glyphs-background-28px"``, ...),
    or ``None`` when no preset names it (``"none"``, ``"grayscale"`` and ``"color"`` name no dataset)."""
    key = _normal(dataset)
    for name in AUGMENT_PRESETS:
        if name in ("none", "grayscale", "color"):
            continue
        if key == name or key.startswith(name + "-"):
            return name
    return None


def augment_for(dataset: str) -> Augment:
    """The default training augmentation of a dataset (identity for unknown names).

    It is the preset at the preset's own image size; :func:`resolve_augment` also
    scales the crop to the loaded size and chooses for datasets without a preset."""
    name = preset_for(dataset)
    return AUGMENT_PRESETS["none" if name is None else name]


def check_augment_name(spec: str) -> str:
    """``spec`` in canonical form (``"auto"`` or a preset name), or ``ValueError`` listing the choices."""
    key = _normal(spec)
    if key == "auto" or key in AUGMENT_PRESETS:
        return key
    raise ValueError(
        f"unknown augmentation {spec!r}; choose auto (the dataset's preset) or one of "
        f"{', '.join(AUGMENT_PRESETS)} (or leave --augment unset for none)."
    )


def scaled_padding(padding: int, reference_size: int, image_size: int) -> int:
    """``padding`` (chosen at ``reference_size`` px) for images of ``image_size`` px: the same
    fraction of the side, rounded, and at least 1 when ``padding`` is (never turned off)."""
    if padding <= 0 or image_size == reference_size:
        return padding
    return max(1, round(padding * image_size / reference_size))


def resolve_augment(spec: str | None, dataset: str | None, *, channels: int, image_size: int) -> Augment | None:
    """The :class:`Augment` a run's training episodes get (``None``: no augmentation).

    Args:
        spec: ``None`` or ``"none"`` (off); ``"auto"``: the preset of ``dataset`` when there is one
            (:func:`preset_for`), otherwise ``"color"`` for 3-channel images (crop with padding 4
            at 32 px + colour jitter 0.4, no flip) and ``"grayscale"`` for any other channel count
            (crop with padding 2 at 28 px); or a preset name, used as it is.
        dataset: the dataset's registered name; ``None`` for one's own folder / ``.npz``.
        channels, image_size: of the loaded images; the crop padding is scaled from the preset's
            size (:data:`PRESET_IMAGE_SIZES`) to ``image_size``.
    """
    if spec is None:
        return None
    name = check_augment_name(spec)
    if name == "auto":
        name = (preset_for(dataset) if dataset is not None else None) or ("color" if channels == 3 else "grayscale")
    if name == "none":
        return None
    aug = AUGMENT_PRESETS[name]
    padding = scaled_padding(aug.crop_padding, PRESET_IMAGE_SIZES.get(name, image_size), image_size)
    return replace(aug, crop_padding=padding)
