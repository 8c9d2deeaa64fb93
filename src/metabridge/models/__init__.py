"""Backbones with a ``body`` (embedding) and a ``head`` (linear output layer).

Every model here is an ordinary ``nn.Module`` used functionally through
``torch.func.functional_call`` in inner loops, so no module is ever deep-copied.
"""

from __future__ import annotations

from torch import nn

from .conv4 import Conv4, Conv4Backbone
from .mlp import MLP
from .resnet12 import ResNet12, ResNet12Backbone

MODEL_NAMES = ("mlp", "conv4", "resnet12")


def build_model(name: str, out_dim: int, in_channels: int = 1, image_size: int = 28,
                hidden: int = 64, **kwargs) -> nn.Module:
    """Build a backbone+head model by name (``mlp``, ``conv4``, ``resnet12``)."""
    if name == "mlp":
        return MLP(in_dim=in_channels, out_dim=out_dim, **kwargs)
    if name == "conv4":
        return Conv4(out_dim, in_channels=in_channels, hidden=hidden, image_size=image_size, **kwargs)
    if name == "resnet12":
        return ResNet12(out_dim, in_channels=in_channels, **kwargs)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}.")


__all__ = ["MLP", "Conv4", "Conv4Backbone", "ResNet12", "ResNet12Backbone", "build_model", "MODEL_NAMES"]
