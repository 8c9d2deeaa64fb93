"""The algorithm registry: build any algorithm by name over any registered backbone, so
that the CLI, the training loop, the benchmarks and users' own algorithms go through
one path.

Register an algorithm (a :class:`MetaAlgorithm` subclass) with the decorator::

    @register_algorithm()               # the name is the class attribute ``name``
    class MyMethod(MetaAlgorithm):
        name = "mymethod"
        def __init__(self, model: nn.Module, lr: float = 0.1) -> None: ...

    register_algorithm("other", OtherMethod)        # or under an explicit name

(:data:`ALGORITHMS` is a :class:`metabridge.registry.Registry`: its rules for names,
``replace=True`` and unknown names are every registry's.)
:func:`build_algorithm` then constructs it with ``cls.build(make_model, data, **hparams)``
(:meth:`MetaAlgorithm.build`). The rule: a constructor that takes ``model`` receives the
whole backbone+head network (``.body``, ``.head``, ``.feature_dim``) with per-task batch
norm; one that takes ``body`` receives the embedding network with running statistics;
``feature_dim``, ``num_train_heads``, ``task`` and ``out_dim`` are filled in from the data
when the constructor declares them (:data:`~metabridge.algorithms.base.SUPPLIED_ARGS`).
Every other constructor argument is a hyperparameter (:func:`algorithm_hparams`). A
class that needs another rule overrides the classmethod ``build``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..models import ModelFactory, build_model, resolve_model_factory
from ..registry import Registry
from .anil import ANIL
from .base import DataInfo, MetaAlgorithm, ModelMaker
from .drs import JointTraining
from .fomaml import FOMAML
from .maml import MAML
from .meta_sgd import MetaSGD
from .metaoptnet import MetaOptNet
from .mtl import MTL
from .protonet import ProtoNet
from .reptile import Reptile


def _check_algorithm(name: str, cls: object) -> None:
    """Only a concrete :class:`MetaAlgorithm` subclass is an algorithm."""
    if not (isinstance(cls, type) and issubclass(cls, MetaAlgorithm)):
        raise TypeError(
            f"register_algorithm takes a MetaAlgorithm subclass (got {cls!r}); subclass "
            "metabridge.MetaAlgorithm and implement meta_loss and adapt."
        )
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise TypeError(f"{cls.__name__} cannot be registered: it does not implement {missing}.")


#: name -> algorithm class (a :class:`~metabridge.registry.Registry`; add one with :func:`register_algorithm`).
ALGORITHMS: Registry[type[MetaAlgorithm]] = Registry(
    "algorithm",
    "algorithms",
    register_hint="metabridge.register_algorithm",
    check=_check_algorithm,
    # the 0.x name of joint training, still accepted (CLI, build_algorithm, stored checkpoints and records)
    aliases={"drs": "joint"},
)

#: ``register_algorithm("name", cls)``, ``@register_algorithm("name")`` or ``@register_algorithm()``
#: (under the class attribute ``name``); ``replace=True`` replaces a registered name.
register_algorithm = ALGORITHMS.register

#: Remove a registered algorithm (returns its class); built-in ones cannot be removed.
unregister_algorithm = ALGORITHMS.unregister

for _cls in (MTL, JointTraining, MAML, FOMAML, ANIL, Reptile, MetaSGD, ProtoNet, MetaOptNet):
    register_algorithm(None, _cls)


def _algorithm(name: str) -> type[MetaAlgorithm]:
    return ALGORITHMS.get(name)


def algorithm_hparams(name: str) -> dict[str, inspect.Parameter]:
    """The constructor parameters of algorithm ``name`` that a user may set, in order.

    Everything but what the registry supplies (``cls.build_supplies``: model, body,
    feature_dim, num_train_heads, task, out_dim) and ``*args`` / ``**kwargs``. Each
    ``inspect.Parameter`` carries the default and the annotation (a string under
    ``from __future__ import annotations``: resolve with ``typing.get_type_hints(cls.__init__)``).
    """
    cls = _algorithm(name)
    skip = set(cls.build_supplies) | {"self"}
    return {
        k: p
        for k, p in inspect.signature(cls.__init__).parameters.items()
        if k not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _check_hparam_names(name: str, hparams: Mapping[str, Any]) -> None:
    """Refuse a misspelt or foreign hyperparameter with the list of valid ones (not a TypeError)."""
    params = inspect.signature(_algorithm(name).__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = list(algorithm_hparams(name))
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise ValueError(
            f"{name} has no hyperparameter {', '.join(map(repr, unknown))}; "
            f"valid --hp keys: {', '.join(valid) or '(none)'}."
        )


def _accepts(factory: ModelFactory, arg: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return arg in params and params[arg].kind in (
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )


def model_maker(
    model: str | ModelFactory, in_channels: int, image_size: int, model_kwargs: Mapping[str, Any] | None = None
) -> ModelMaker:
    """A :class:`~metabridge.algorithms.base.ModelMaker` over a registered backbone name or a factory.

    ``running_stats`` becomes the factory's ``track_running_stats`` when the factory
    declares that keyword (the built-in Conv-4 and ResNet-12 do) and ``model_kwargs``
    does not set it; a factory without it is called as it is.
    """
    factory = resolve_model_factory(model)
    fixed = dict(model_kwargs or {})

    def make(out_dim: int, *, running_stats: bool, channels_last: bool = False) -> nn.Module:
        kwargs = dict(fixed)
        if _accepts(factory, "track_running_stats"):
            kwargs.setdefault("track_running_stats", running_stats)
        net = build_model(model, out_dim, in_channels=in_channels, image_size=image_size, **kwargs)
        if channels_last:
            # Embedding methods run one large batch through the body: channels-last weights make
            # the convolutions channels-last too, which is faster for that one batch on CPU (the
            # per-task inner loops of the MAML family measured slower with it, so they keep the
            # default). Only 4-d weights change format, so an MLP is unaffected.
            net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return net

    return make


def build_algorithm(
    name: str,
    *,
    model: str | ModelFactory = "conv4",
    n_way: int | None = None,
    out_dim: int | None = None,
    in_channels: int = 1,
    image_size: int = 28,
    num_train_classes: int | None = None,
    num_train_tasks: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **hparams: Any,
) -> MetaAlgorithm:
    """Build algorithm ``name`` over backbone ``model`` with ``cls.build`` (module docstring).

    Args:
        name: a key of :data:`ALGORITHMS` (built in: mtl, joint, maml, fomaml, anil, reptile,
            metasgd, protonet, metaoptnet; or one registered with :func:`register_algorithm`).
        model: a key of :data:`metabridge.models.MODELS` (``mlp``, ``conv4``, ``resnet12``, or
            one registered with ``register_model``), or a factory with the same signature.
        n_way: N of the N-way tasks (classification): the predictor's output size.
        out_dim: output size of one task's predictor where it is not a class count: d_y of a
            regression task (give ``n_way`` or ``out_dim``; default 5 when neither is given).
        in_channels: input channels (or input dimension for ``mlp``).
        image_size: image side (ignored by ``mlp``).
        num_train_classes: training classes (classification; sizes MTL's and joint training's heads).
            ``None`` means regression.
        num_train_tasks: size of the training task pool (regression MTL).
        model_kwargs: extra backbone arguments (e.g. ``hidden=(40, 40)`` for ``mlp``).
        hparams: the algorithm's own keyword arguments (:func:`algorithm_hparams`, e.g.
            ``inner_lr``, ``inner_steps``, ``execution={"task_chunk": 2}``).
    """
    cls = _algorithm(name)
    _check_hparam_names(name, hparams)
    if n_way is not None and out_dim is not None and n_way != out_dim:
        raise ValueError(f"n_way={n_way} and out_dim={out_dim} name the same output size; give one of them.")
    out_dim = n_way if n_way is not None else (5 if out_dim is None else out_dim)
    data = DataInfo(
        out_dim=out_dim,
        in_channels=in_channels,
        image_size=image_size,
        num_train_classes=num_train_classes,
        num_train_tasks=num_train_tasks,
    )
    return cls.build(model_maker(model, in_channels, image_size, model_kwargs), data, **hparams)
