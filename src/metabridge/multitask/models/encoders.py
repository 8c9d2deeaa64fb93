"""Small shared encoders for the multi-task benchmarks, and a stacked linear layer.

* :class:`ConvEncoder`: a LeNet-style encoder like the one Sener & Koltun (2018, "Multi-Task
  Learning as Multi-Objective Optimization", NeurIPS, Sec. 6.1) share between the two MultiMNIST
  tasks (two conv/pool stages and a fully connected layer), here for 36x36 Multi-(Fashion-)MNIST
  images: ``conv 5x5 -> max-pool 2 -> ReLU -> conv 5x5 -> max-pool 2 -> ReLU -> fc -> ReLU``.
  Input uint8 images are scaled to [0, 1] inside (x / 255); float images are used as they are.
* :class:`MLPEncoder`: ``in_dim -> hidden[0] -> ... -> out_dim`` with ReLU after every layer,
  for vector inputs (QM9 descriptors).
* :class:`StackedLinear`: G independent linear layers held as one [G, out, in] weight and
  evaluated in one ``einsum`` (the experts of MMoE, the columns of a cross-stitch network).

Both encoders map ``x -> [B, D]`` and expose ``D`` as ``out_dim`` (and ``feature_dim``, the name
the few-shot backbones use). Neither has batch norm, so per-task gradients can be batched
(:func:`metabridge.multitask.gradients.per_task_gradients`) and the models hold no buffers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ConvEncoder", "MLPEncoder", "StackedLinear", "check_out_dims", "encode", "resolve_encoder"]


def _check_sizes(owner: str, **sizes: int | Sequence[int]) -> None:
    for name, value in sizes.items():
        values = [value] if isinstance(value, int) else list(value)
        if any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in values):
            raise ValueError(f"{owner}: {name} must be positive integers (got {value!r}).")


def _as_float(x: Tensor, like: Tensor) -> Tensor:
    """uint8 images -> [0, 1]; other integer tensors -> float; float tensors unchanged (but cast to
    the parameters' dtype)."""
    if x.dtype == torch.uint8:
        return x.to(like.dtype) / 255.0
    return x.to(like.dtype)


def check_out_dims(owner: str, out_dims: int | Sequence[int], num_tasks: int | None = None) -> list[int]:
    """``out_dims`` as a list of K positive ints (an int is repeated ``num_tasks`` times)."""
    if isinstance(out_dims, int) and not isinstance(out_dims, bool):
        if num_tasks is None:
            raise ValueError(f"{owner}: give one output size per task (a list), not {out_dims!r}.")
        out_dims = [out_dims] * num_tasks
    try:
        dims = list(out_dims)  # type: ignore[arg-type]  # a bool is refused below
    except TypeError:
        raise ValueError(f"{owner}: out_dims must be an int or a sequence of ints (got {out_dims!r}).") from None
    if not dims:
        raise ValueError(f"{owner}: at least one task is needed (out_dims is empty).")
    if any(not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in dims):
        raise ValueError(f"{owner}: every task's output size must be a positive int (got {dims!r}).")
    if num_tasks is not None and len(dims) != num_tasks:
        raise ValueError(f"{owner}: {len(dims)} output sizes for {num_tasks} tasks.")
    return dims


def resolve_encoder(
    owner: str, encoder: nn.Module | None, feature_dim: int | None, allow_none: bool = True
) -> tuple[nn.Module, int]:
    """The encoder module (``None`` -> ``nn.Identity``: the input vector is the representation) and
    its output size (``feature_dim``, or the encoder's ``out_dim``/``feature_dim`` attribute)."""
    if encoder is None:
        if not allow_none:
            raise ValueError(f"{owner} needs an encoder module (its output is the shared representation).")
        encoder = nn.Identity()
    elif not isinstance(encoder, nn.Module):
        raise TypeError(f"{owner}: encoder must be an nn.Module or None (got {type(encoder).__name__}).")
    if feature_dim is None:
        feature_dim = getattr(encoder, "out_dim", None) or getattr(encoder, "feature_dim", None)
        if feature_dim is None:
            raise ValueError(
                f"{owner}: give feature_dim, the size of the encoder's output (the encoder has no "
                "out_dim or feature_dim attribute to read it from)."
            )
    _check_sizes(owner, feature_dim=feature_dim)
    return encoder, int(feature_dim)


def encode(owner: str, encoder: nn.Module, x: Tensor, feature_dim: int) -> Tensor:
    """``encoder(x)``, checked to be [B, feature_dim] (integer inputs to an identity encoder are cast
    to float)."""
    u = encoder(x)
    if isinstance(encoder, nn.Identity) and not u.is_floating_point():
        u = u.to(torch.get_default_dtype())
    if u.dim() != 2 or u.shape[1] != feature_dim:
        raise ValueError(
            f"{owner}: the encoder must map x to [B, {feature_dim}] (feature_dim) but gave "
            f"{tuple(u.shape)} for input {tuple(x.shape)}."
        )
    return u


class ConvEncoder(nn.Module):
    """LeNet-style image encoder (after Sener & Koltun 2018's MultiMNIST encoder): ``[B, C, S, S] -> [B, out_dim]``.

    ``conv(C -> width, 5x5) -> maxpool 2 -> ReLU -> conv(width -> 2 width, 5x5) -> maxpool 2 ->
    ReLU -> flatten -> linear -> ReLU``. For S = 36: 36 -> 32 -> 16 -> 12 -> 6, so the linear
    layer reads 2 width * 6 * 6 values.

    Args:
        in_channels: image channels C.
        image_size: side S of the square images (at least 3 * kernel_size + 1, 16 for 5x5 kernels).
        width: filters of the first convolution (the second has ``2 * width``).
        out_dim: size D of the representation.
        kernel_size: side of both convolution kernels.

    ``forward`` takes uint8 images (scaled by 1/255 inside) or float images, of shape
    [B, C, S, S], or [B, S, S] when C = 1.
    """

    def __init__(
        self, in_channels: int = 1, image_size: int = 36, width: int = 10, out_dim: int = 50, kernel_size: int = 5
    ) -> None:
        super().__init__()
        _check_sizes(
            "ConvEncoder",
            in_channels=in_channels,
            image_size=image_size,
            width=width,
            out_dim=out_dim,
            kernel_size=kernel_size,
        )
        side = (image_size - kernel_size + 1) // 2
        side = (side - kernel_size + 1) // 2
        if side < 1:
            raise ValueError(
                f"ConvEncoder: images of side {image_size} are too small for two "
                f"{kernel_size}x{kernel_size} convolutions each followed by a 2x2 pool "
                f"(need side >= {3 * kernel_size + 1})."
            )
        self.in_channels = in_channels
        self.image_size = image_size
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size)
        self.conv2 = nn.Conv2d(width, 2 * width, kernel_size)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(2 * width * side * side, out_dim)
        self.out_dim = self.feature_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3 and self.in_channels == 1:
            x = x.unsqueeze(1)
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"ConvEncoder expects images [B, {expected[0]}, {expected[1]}, {expected[2]}] (got {tuple(x.shape)})."
            )
        x = _as_float(x, self.fc.weight)
        x = torch.relu(self.pool(self.conv1(x)))
        x = torch.relu(self.pool(self.conv2(x)))
        return torch.relu(self.fc(torch.flatten(x, 1)))


class MLPEncoder(nn.Module):
    """Fully connected encoder ``in_dim -> hidden[0] -> ... -> hidden[-1] -> out_dim``, ReLU after
    every layer (the representation is the last ReLU's output): ``[B, in_dim] -> [B, out_dim]``.

    Args:
        in_dim: input features.
        hidden: widths of the hidden layers (may be empty: one linear layer and a ReLU).
        out_dim: size D of the representation.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (256, 256), out_dim: int = 128) -> None:
        super().__init__()
        hidden = tuple(hidden)
        _check_sizes("MLPEncoder", in_dim=in_dim, hidden=hidden, out_dim=out_dim)
        layers: list[nn.Module] = []
        prev = in_dim
        for h in (*hidden, out_dim):
            layers += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        self.in_dim = in_dim
        self.net = nn.Sequential(*layers)
        self.out_dim = self.feature_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"MLPEncoder expects inputs [B, {self.in_dim}] (got {tuple(x.shape)}).")
        return self.net(_as_float(x, self.net[0].weight))  # type: ignore[arg-type]  # a Linear's weight


class StackedLinear(nn.Module):
    """G independent linear layers ``y_g = W_g x_g + b_g`` in one ``einsum``.

    ``weight`` is [G, out, in] and ``bias`` [G, out], each slice initialised as ``nn.Linear``
    initialises its weight and bias (uniform on +-1/sqrt(in)). ``forward`` takes either one input
    shared by every group, [B, in] (-> [G, B, out]), or one input per group, [G, B, in].
    """

    def __init__(self, groups: int, in_features: int, out_features: int) -> None:
        super().__init__()
        _check_sizes("StackedLinear", groups=groups, in_features=in_features, out_features=out_features)
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(groups, out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, out_features).uniform_(-bound, bound))
        self.groups, self.in_features, self.out_features = groups, in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2 and x.shape[1] == self.in_features:
            return torch.einsum("bi,goi->gbo", x, self.weight) + self.bias[:, None, :]
        if x.dim() == 3 and x.shape[0] == self.groups and x.shape[2] == self.in_features:
            return torch.einsum("gbi,goi->gbo", x, self.weight) + self.bias[:, None, :]
        raise ValueError(
            f"StackedLinear({self.groups} x {self.in_features} -> {self.out_features}) takes [B, "
            f"{self.in_features}] or [{self.groups}, B, {self.in_features}] (got {tuple(x.shape)})."
        )

    def extra_repr(self) -> str:
        return f"groups={self.groups}, in_features={self.in_features}, out_features={self.out_features}"
