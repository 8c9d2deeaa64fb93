"""Multi-task architectures by name: :func:`register_mtl_model`, :func:`build_mtl_model`,
:func:`available_mtl_models`.

``build_mtl_model(name, input_kind=..., input_shape=..., out_dims=...)`` builds the default shared
encoder for the input (a :class:`~.encoders.ConvEncoder` for images, an :class:`~.encoders.MLPEncoder`
for vectors) and hands it to the architecture's factory. Keywords starting with ``encoder_`` go to
the encoder (``encoder_out_dim=64``, ``encoder_width=16``, ``encoder_hidden=(128,)``); the rest go to
the architecture (``hidden=(64,)``, ``num_experts=8``, ...). ``encoder=`` replaces the default with a
module of your own (its output size from ``feature_dim=`` or its ``out_dim`` attribute), or
``encoder="none"`` (vector inputs) lets the architecture read the raw input vector, where it can.

Register an architecture of your own with (:data:`MTL_MODELS` is a :class:`metabridge.registry.Registry`,
with every registry's rules)::

    @register_mtl_model("my_arch")
    def my_arch(*, encoder, feature_dim, input_kind, input_shape, out_dims, width=64) -> MultiTaskModel:
        ...

``encoder`` is the built encoder module (None with ``encoder="none"``) and ``feature_dim`` its output
size; ``input_kind`` and ``input_shape`` are passed on for factories that build their own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal

from torch import nn

from ...registry import Registry
from .base import MultiTaskModel
from .conditioned import TaskConditioned
from .cross_stitch import CrossStitch
from .encoders import ConvEncoder, MLPEncoder, check_out_dims
from .hard_sharing import HardSharing
from .hypernetwork import HypernetworkHead
from .mmoe import MMoE

__all__ = [
    "MTL_MODELS",
    "InputKind",
    "available_mtl_models",
    "build_default_encoder",
    "build_mtl_model",
    "register_mtl_model",
    "unregister_mtl_model",
]

InputKind = Literal["image", "vector"]
MTLFactory = Callable[..., MultiTaskModel]


def _check_factory(name: str, factory: object) -> None:
    if not callable(factory):
        raise TypeError(f"register_mtl_model({name!r}) takes a factory (got {factory!r}).")


#: name -> architecture factory (a :class:`~metabridge.registry.Registry`; add one with
#: :func:`register_mtl_model`). The factory is called as ``factory(encoder=..., feature_dim=...,
#: input_kind=..., input_shape=..., out_dims=..., **kwargs)`` and must return a :class:`MultiTaskModel`
#: with ``num_tasks == len(out_dims)``.
MTL_MODELS: Registry[MTLFactory] = Registry(
    "multi-task model", "multitask-models", register_hint="metabridge.register_mtl_model", check=_check_factory
)

_PASSED = ("encoder", "feature_dim", "input_kind", "input_shape", "out_dims")

#: ``@register_mtl_model("name")`` or ``register_mtl_model("name", factory)``; ``replace=True`` replaces a name.
register_mtl_model = MTL_MODELS.register

#: Remove a registered architecture (returns its factory); built-in ones cannot be removed.
unregister_mtl_model = MTL_MODELS.unregister


def available_mtl_models() -> list[str]:
    """The registered architecture names, sorted."""
    return MTL_MODELS.names()


def _image_shape(input_shape: Sequence[int]) -> tuple[int, int]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise ValueError(f"an image input_shape is (C, S, S) or (S, S) (got {input_shape!r}).") from None
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or shape[1] != shape[2] or min(shape) <= 0:
        raise ValueError(f"an image input_shape is (C, S, S) or (S, S) for square images (got {tuple(input_shape)}).")
    return shape[0], shape[1]


def _vector_dim(input_shape: int | Sequence[int]) -> int:
    try:
        shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    except TypeError:
        raise ValueError(f"a vector input_shape is (D,) (got {input_shape!r}).") from None
    if len(shape) != 1 or int(shape[0]) <= 0:
        raise ValueError(f"a vector input_shape is (D,) (got {input_shape!r}).")
    return int(shape[0])


def build_default_encoder(input_kind: InputKind, input_shape: int | Sequence[int], **kwargs: Any) -> nn.Module:
    """``ConvEncoder(C, S, **kwargs)`` for images (C, S, S), ``MLPEncoder(D, **kwargs)`` for vectors (D,)."""
    if input_kind == "image":
        channels, side = _image_shape(input_shape)  # type: ignore[arg-type]
        return ConvEncoder(in_channels=channels, image_size=side, **kwargs)
    if input_kind == "vector":
        return MLPEncoder(_vector_dim(input_shape), **kwargs)
    raise ValueError(f"input_kind must be 'image' or 'vector' (got {input_kind!r}).")


def _resolve_encoder(
    input_kind: InputKind,
    input_shape: int | Sequence[int],
    encoder: nn.Module | str | None,
    feature_dim: int | None,
    encoder_kwargs: dict[str, Any],
) -> tuple[nn.Module | None, int]:
    """:func:`build_mtl_model`'s ``encoder`` argument -> ``(encoder module or None, feature size)``:
    the default encoder built from the ``encoder_*`` keywords, your own module, or none (``"none"``)."""
    if encoder is None:
        if feature_dim is not None:
            raise ValueError(
                "feature_dim is only for an encoder module of your own; size the default encoder with "
                "encoder_out_dim=..."
            )
        try:
            built: nn.Module | None = build_default_encoder(input_kind, input_shape, **encoder_kwargs)
        except TypeError as exc:
            raise ValueError(f"bad encoder_* keyword for the default {input_kind} encoder: {exc}.") from None
        feature_dim = built.out_dim  # type: ignore[assignment, union-attr]
    else:
        if encoder_kwargs:
            raise ValueError(
                f"encoder_* keywords ({', '.join(sorted(encoder_kwargs))}) configure the default encoder; "
                "they cannot be combined with encoder=..."
            )
        if isinstance(encoder, str):
            if encoder != "none":
                raise ValueError(f"encoder must be None (default encoder), an nn.Module or 'none' (got {encoder!r}).")
            if input_kind != "vector":
                raise ValueError("encoder='none' is for vector inputs; images need an encoder.")
            built, feature_dim = None, _vector_dim(input_shape)
        elif isinstance(encoder, nn.Module):
            built = encoder
            feature_dim = feature_dim or getattr(encoder, "out_dim", None) or getattr(encoder, "feature_dim", None)
            if feature_dim is None:
                raise ValueError("give feature_dim=, the output size of your encoder (it has no out_dim attribute).")
        else:
            raise ValueError(f"encoder must be None, an nn.Module or 'none' (got {type(encoder).__name__}).")
    return built, feature_dim  # type: ignore[return-value]


def build_mtl_model(
    name: str,
    *,
    input_kind: InputKind,
    input_shape: int | Sequence[int],
    out_dims: Sequence[int],
    encoder: nn.Module | str | None = None,
    feature_dim: int | None = None,
    **kwargs: Any,
) -> MultiTaskModel:
    """Build the architecture registered as ``name`` for inputs of ``input_kind``/``input_shape`` and
    K = len(out_dims) tasks.

    Args:
        name: one of :func:`available_mtl_models` (``"hard_sharing"``, ``"concat"``, ``"add"``,
            ``"multiply"``, ``"film"``, ``"hypernetwork"``, ``"mmoe"``, ``"cross_stitch"``, or your own).
        input_kind: ``"image"`` (input_shape (C, S, S)) or ``"vector"`` (input_shape (D,)).
        input_shape: the shape of one input.
        out_dims: every task's output size (classes, or 1 for regression).
        encoder: ``None`` for the default encoder, a module of your own, or ``"none"`` for no encoder
            (vector inputs; the architecture then reads x itself).
        feature_dim: the output size of an encoder module of your own (default: its ``out_dim``).
        kwargs: ``encoder_*`` keywords for the default encoder, the rest for the architecture.
    """
    factory = MTL_MODELS.get(name)
    if input_kind not in ("image", "vector"):
        raise ValueError(f"input_kind must be 'image' or 'vector' (got {input_kind!r}).")
    dims = check_out_dims(f"build_mtl_model({name!r})", out_dims)
    encoder_kwargs = {k[len("encoder_") :]: v for k, v in kwargs.items() if k.startswith("encoder_")}
    model_kwargs = {k: v for k, v in kwargs.items() if not k.startswith("encoder_")}
    built, feature_dim = _resolve_encoder(input_kind, input_shape, encoder, feature_dim, encoder_kwargs)
    passed = dict(encoder=built, feature_dim=feature_dim, input_kind=input_kind, input_shape=input_shape, out_dims=dims)
    try:
        signature: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(**passed, **model_kwargs)
        except TypeError:
            valid = [
                k
                for k, p in signature.parameters.items()
                if k not in _PASSED and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            raise ValueError(
                f"multi-task model {name!r} does not take {', '.join(sorted(model_kwargs)) or 'these'} "
                f"keywords; its keywords are {', '.join(valid) or '(none)'} (plus encoder_* for the "
                "default encoder)."
            ) from None
    model = factory(**passed, **model_kwargs)
    if not isinstance(model, MultiTaskModel):
        raise TypeError(f"multi-task model factory {name!r} returned {type(model).__name__}, not a MultiTaskModel.")
    if getattr(model, "num_tasks", None) != len(dims):
        raise TypeError(
            f"multi-task model factory {name!r} built a model for {getattr(model, 'num_tasks', None)} "
            f"tasks; {len(dims)} were asked for."
        )
    return model


@register_mtl_model("hard_sharing")
def hard_sharing(
    *,
    encoder: nn.Module | None,
    feature_dim: int,
    input_kind: InputKind,
    input_shape: Any,
    out_dims: list[int],
    head_hidden: int | None = None,
) -> HardSharing:
    """:class:`HardSharing`: the encoder and one linear head per task (``head_hidden``: one hidden layer)."""
    if encoder is None:
        raise ValueError(
            "hard_sharing needs an encoder (its output is the shared representation); drop encoder='none'."
        )
    return HardSharing(encoder, feature_dim, out_dims, head_hidden=head_hidden)


def _conditioned(mode: str) -> MTLFactory:
    def factory(
        *,
        encoder: nn.Module | None,
        feature_dim: int,
        input_kind: InputKind,
        input_shape: Any,
        out_dims: list[int],
        descriptor: str = "onehot",
        embedding_dim: int | None = None,
        hidden: Sequence[int] = (128,),
    ) -> TaskConditioned:
        return TaskConditioned(
            encoder,
            feature_dim,
            len(out_dims),
            out_dims,
            mode=mode,  # type: ignore[arg-type]
            descriptor=descriptor,  # type: ignore[arg-type]
            embedding_dim=embedding_dim,
            hidden=hidden,
        )

    factory.__name__ = factory.__qualname__ = f"conditioned_{mode}"
    factory.__doc__ = (
        f":class:`TaskConditioned` with mode={mode!r}: the encoder, then an MLP trunk (``hidden``) "
        "conditioned on a one-hot or learned task descriptor."
    )
    return factory


for _mode in ("concat", "add", "multiply", "film"):
    register_mtl_model(_mode)(_conditioned(_mode))


@register_mtl_model("hypernetwork")
def hypernetwork(
    *,
    encoder: nn.Module | None,
    feature_dim: int,
    input_kind: InputKind,
    input_shape: Any,
    out_dims: list[int],
    embedding_dim: int = 16,
    hidden: Sequence[int] = (64,),
    share_generator: bool = True,
) -> HypernetworkHead:
    """:class:`HypernetworkHead`: the encoder and linear heads generated from learned task embeddings."""
    if encoder is None:
        raise ValueError(
            "hypernetwork needs an encoder (its output is the shared representation); drop encoder='none'."
        )
    return HypernetworkHead(
        encoder,
        feature_dim,
        len(out_dims),
        out_dims,
        embedding_dim=embedding_dim,
        hidden=hidden,
        share_generator=share_generator,
    )


@register_mtl_model("mmoe")
def mmoe(
    *,
    encoder: nn.Module | None,
    feature_dim: int,
    input_kind: InputKind,
    input_shape: Any,
    out_dims: list[int],
    num_experts: int = 4,
    expert_hidden: Sequence[int] = (64,),
    tower_hidden: Sequence[int] = (32,),
) -> MMoE:
    """:class:`MMoE`: experts and per-task gates over the encoder's output, per-task towers."""
    return MMoE(
        encoder, feature_dim, out_dims, num_experts=num_experts, expert_hidden=expert_hidden, tower_hidden=tower_hidden
    )


@register_mtl_model("cross_stitch")
def cross_stitch(
    *,
    encoder: nn.Module | None,
    feature_dim: int,
    input_kind: InputKind,
    input_shape: Any,
    out_dims: list[int],
    hidden: Sequence[int] = (128,),
    self_weight: float = 0.9,
) -> CrossStitch:
    """:class:`CrossStitch`: per-task MLP columns after the encoder, mixed by cross-stitch units."""
    return CrossStitch(encoder, feature_dim, out_dims, hidden=hidden, self_weight=self_weight)
