"""Backbones with a ``body`` (embedding) and a ``head`` (linear output layer), and the
backbone registry.

Every model here is an ordinary ``nn.Module`` used functionally through
``torch.func.functional_call`` in inner loops, so no module is ever deep-copied.

Register a backbone factory of your own with (:data:`MODELS` is a
:class:`metabridge.registry.Registry`, with every registry's rules)::

    @register_model("tiny")
    def tiny(out_dim: int, *, in_channels: int, image_size: int, width: int = 32) -> nn.Module:
        ...  # a module with .body [B, *x] -> [B, D], .head (D -> out_dim) and .feature_dim = D

after which ``build_model("tiny", 5, width=16)``, ``build_algorithm(..., model="tiny")`` and
``--model tiny`` build it. A factory that declares ``track_running_stats`` lets the
algorithm registry choose per-task batch norm (MAML family) or running statistics
(embedding methods).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ..registry import Registry
from .conv4 import Conv4, Conv4Backbone
from .mlp import MLP
from .resnet12 import ConvInit, ResNet12, ResNet12Backbone, ResNet12Variant

#: ``factory(out_dim, *, in_channels, image_size, **kwargs) -> nn.Module`` with ``.body``,
#: ``.head`` and ``.feature_dim``.
ModelFactory = Callable[..., nn.Module]


def _check_factory(name: str, factory: object) -> None:
    if not callable(factory):
        raise TypeError(f"register_model({name!r}) takes a factory function or class (got {factory!r}).")


#: name -> backbone factory (a :class:`~metabridge.registry.Registry`; add one with :func:`register_model`).
#: The factory is called as ``factory(out_dim, in_channels=..., image_size=..., **kwargs)`` and must return
#: an ``nn.Module`` with ``.body``, ``.head`` and ``.feature_dim`` (checked by :func:`build_model`).
MODELS: Registry[ModelFactory] = Registry(
    "model", "models", register_hint="metabridge.register_model", check=_check_factory
)

#: ``@register_model("name")`` or ``register_model("name", factory)``; ``replace=True`` replaces a name.
register_model = MODELS.register

#: Remove a registered backbone (returns its factory); built-in ones cannot be removed.
unregister_model = MODELS.unregister


def resolve_model_factory(model: str | ModelFactory) -> ModelFactory:
    """The factory a registered name stands for (a callable is returned as it is)."""
    if callable(model):
        return model
    return MODELS.get(model)


def _valid_keywords(factory: ModelFactory) -> list[str]:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return []
    return [k for k, p in list(params.items())[1:] if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def build_model(
    name: str | ModelFactory, out_dim: int, in_channels: int = 1, image_size: int = 28, **kwargs: Any
) -> nn.Module:
    """Build a backbone+head model by registered name (``mlp``, ``conv4``, ``resnet12``, ...).

    Args:
        name: a key of :data:`MODELS`, or a factory with the registry's signature.
        out_dim: the head's output size.
        in_channels: image channels (the input dimension for ``mlp``).
        image_size: image side in pixels (``mlp`` ignores it).
        kwargs: the factory's own keywords (e.g. ``hidden=(40, 40)`` for ``mlp``,
            ``hidden=32`` for ``conv4``); an unknown one is an error naming the valid ones.
    """
    factory = resolve_model_factory(name)
    label = name if isinstance(name, str) else getattr(name, "__qualname__", repr(name))
    try:
        signature: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature (some builtins): let the call decide
        signature = None
    if signature is not None:
        open_kwargs = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        valid = [k for k in _valid_keywords(factory) if k not in ("in_channels", "image_size")]
        unknown = sorted(set(kwargs) - set(valid))
        if unknown and not open_kwargs:
            raise ValueError(
                f"model {label!r} has no keyword {', '.join(map(repr, unknown))}; its keywords are "
                f"{', '.join(valid) or '(none)'} (besides in_channels and image_size)."
            )
        try:
            signature.bind(out_dim, in_channels=in_channels, image_size=image_size, **kwargs)
        except TypeError as exc:
            raise ValueError(
                f"model factory {label!r} must accept factory(out_dim, *, in_channels, image_size, **kwargs): {exc}."
            ) from None
    net = factory(out_dim, in_channels=in_channels, image_size=image_size, **kwargs)
    missing = [a for a in ("body", "head", "feature_dim") if not hasattr(net, a)]
    if not isinstance(net, nn.Module) or missing:
        what = f"lacks {', '.join(missing)}" if isinstance(net, nn.Module) else f"returned {type(net).__name__}"
        raise TypeError(
            f"model factory {label!r} {what}: it must return an nn.Module with .body (the embedding "
            "network), .head (the linear output layer) and .feature_dim (the embedding size)."
        )
    return net


@register_model("mlp")
def mlp(out_dim: int, *, in_channels: int = 1, image_size: int | None = None, hidden: Sequence[int] = (40, 40)) -> MLP:
    """:class:`MLP` ``in_channels -> hidden... -> out_dim`` (``image_size`` is ignored)."""
    return MLP(in_dim=in_channels, out_dim=out_dim, hidden=tuple(hidden))


@register_model("conv4")
def conv4(
    out_dim: int, *, in_channels: int = 1, image_size: int = 28, hidden: int = 64, track_running_stats: bool = False
) -> Conv4:
    """:class:`Conv4` with ``hidden`` filters per block."""
    return Conv4(
        out_dim, in_channels=in_channels, hidden=hidden, image_size=image_size, track_running_stats=track_running_stats
    )


@register_model("resnet12")
def resnet12(
    out_dim: int,
    *,
    in_channels: int = 3,
    image_size: int | None = None,
    widths: Sequence[int] = (64, 160, 320, 640),
    variant: ResNet12Variant = "plain",
    drop_prob: float | None = None,
    block_size: int | None = None,
    dropout: float | None = None,
    drop_ramp_end: float | None = None,
    init: ConvInit | None = None,
    track_running_stats: bool = True,
) -> ResNet12:
    """:class:`ResNet12` (global average pooled, so any ``image_size`` works).

    ``variant="plain"`` (default: no dropout, constant DropBlock 0.1 of block size 5 in
    blocks 3-4) or ``"official"`` (Wang et al.'s MTL code: dropout 0.1 in blocks 1-2,
    DropBlock 0.1 ramped from 0 over training in blocks 3-4 with block size 5 at
    ``image_size >= 64`` and 2 below, kaiming-normal fan-out convolutions); ``drop_prob``,
    ``block_size``, ``dropout``, ``drop_ramp_end`` and ``init`` override single parts
    (``None``: the variant's). ``image_size`` only chooses the official block size. See
    :mod:`metabridge.models.resnet12` for the official file:line of each part.
    """
    return ResNet12(
        out_dim,
        in_channels=in_channels,
        widths=tuple(widths),
        drop_prob=drop_prob,
        block_size=block_size,
        track_running_stats=track_running_stats,
        variant=variant,
        image_size=image_size,
        dropout=dropout,
        drop_ramp_end=drop_ramp_end,
        init=init,
    )


__all__ = [
    "MLP",
    "MODELS",
    "Conv4",
    "Conv4Backbone",
    "ModelFactory",
    "ResNet12",
    "ResNet12Backbone",
    "build_model",
    "register_model",
    "resolve_model_factory",
    "unregister_model",
]
