"""Weighting methods by name: :data:`WEIGHTINGS` (a :class:`~metabridge.registry.Registry`, with
every registry's rules), :func:`register_weighting`, :func:`build_weighting`.

A user's own method (a :class:`~.base.Weighting` subclass) is registered like the built-in
ones and is then reachable from the multi-task command's ``--methods NAME``::

    @register_weighting("inverse_loss")         # or @register_weighting(): the class attribute ``name``
    class InverseLoss(Weighting): ...

One class with constructor defaults bound to a second name is a :func:`functools.partial`::

    register_weighting("mean", functools.partial(EqualWeighting, reduction="mean"))

:data:`WEIGHTINGS` then holds a :class:`WeightingPreset` (a partial that also answers the class
attributes, e.g. ``WEIGHTINGS["mean"].needs``); :func:`registered_defaults` gives its keywords.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from ...registry import Registry, summary_line
from .base import Weighting

W = TypeVar("W")

#: a Weighting subclass, or a :class:`WeightingPreset` of one
WeightingFactory = Callable[..., Weighting]


class WeightingPreset(functools.partial):  # type: ignore[type-arg]
    """A :class:`Weighting` subclass with constructor keywords bound (``functools.partial(cls, **kw)``)
    that also reads as the class: ``preset.needs``, ``preset.name`` are the class's."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.func, attr)


def _check_weighting(name: str, obj: object) -> None:
    cls = obj.func if isinstance(obj, functools.partial) else obj
    if not (isinstance(cls, type) and issubclass(cls, Weighting)):
        raise TypeError(f"register_weighting takes a Weighting subclass or a functools.partial of one (got {obj!r}).")
    if isinstance(obj, functools.partial) and obj.args:
        raise TypeError(
            f"register_weighting({name!r}, partial): bind keywords only; the first argument of a "
            "weighting is num_tasks, given when it is built."
        )


def _describe(obj: Any) -> str:
    line = summary_line(obj)
    if isinstance(obj, functools.partial) and obj.keywords:
        line = line.rstrip(".") + " (" + ", ".join(f"{k}={v!r}" for k, v in obj.keywords.items()) + ")."
    return line


class _WeightingRegistry(Registry[WeightingFactory]):
    """The :class:`Registry` of weightings: a plain ``functools.partial`` is stored as a
    :class:`WeightingPreset`; the old ``register_weighting(name, **defaults)`` still works
    (with a :class:`DeprecationWarning`)."""

    def register(
        self,
        name: Any = None,
        obj: Any = None,
        *,
        replace: bool = False,  # type: ignore[override]
        **defaults: Any,
    ) -> Any:
        if defaults:
            warnings.warn(
                "register_weighting(name, **defaults) is deprecated; register "
                "functools.partial(cls, **defaults) under the name instead.",
                DeprecationWarning,
                stacklevel=2,
            )
        if obj is None and (name is None or isinstance(name, str)):

            def decorate(target: W) -> W:
                self._register_one(name, target, replace, defaults)
                return target

            return decorate
        if obj is None:  # the object where the name goes: the registry's deprecated form
            return super().register(name, None, replace=replace)
        self._register_one(name, obj, replace, defaults)
        return obj

    def _register_one(self, name: str | None, obj: Any, replace: bool, defaults: dict[str, Any]) -> None:
        if defaults:
            obj = functools.partial(obj, **defaults)
        if isinstance(obj, functools.partial) and not isinstance(obj, WeightingPreset):
            obj = WeightingPreset(obj.func, *obj.args, **obj.keywords)
        super().register(name, obj, replace=replace)


#: name -> weighting class or :class:`WeightingPreset` (add one with :func:`register_weighting`).
WEIGHTINGS: Registry[WeightingFactory] = _WeightingRegistry(
    "weighting",
    "weightings",
    register_hint="metabridge.register_weighting",
    check=_check_weighting,
    describer=_describe,
)

#: ``@register_weighting("name")``, ``@register_weighting()`` (the class attribute ``name``) or
#: ``register_weighting("name", functools.partial(cls, **defaults))``; ``replace=True`` replaces a name.
register_weighting = WEIGHTINGS.register

#: Remove a registered weighting (returns it); built-in ones cannot be removed.
unregister_weighting = WEIGHTINGS.unregister


def registered_defaults(name: str) -> dict[str, Any]:
    """The constructor keywords bound to ``name`` at registration (e.g. ``{"reduction": "mean"}``)."""
    obj = WEIGHTINGS.get(name)
    return dict(obj.keywords) if isinstance(obj, functools.partial) else {}


def weighting_class(name: str) -> type[Weighting]:
    """The :class:`Weighting` subclass behind ``name`` (a preset's class)."""
    obj = WEIGHTINGS.get(name)
    return obj.func if isinstance(obj, functools.partial) else obj  # type: ignore[return-value]


def available_weightings() -> list[str]:
    """The registered weighting names, sorted."""
    return WEIGHTINGS.names()


def build_weighting(name: str, num_tasks: int, **kwargs: Any) -> Weighting:
    """Construct the method registered as ``name`` for ``num_tasks`` tasks (``kwargs`` win over
    the keywords bound at registration)."""
    return WEIGHTINGS.get(name)(num_tasks, **kwargs)
