"""Weighting methods by name: :func:`register_weighting`, :func:`build_weighting`,
:data:`WEIGHTINGS`. A user's own method (a :class:`~.base.Weighting` subclass) is registered
the same way and is then reachable from ``metabridge mtl --methods NAME``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from .base import Weighting

W = TypeVar("W", bound=type[Weighting])

_REGISTRY: dict[str, type[Weighting]] = {}
_KWARGS: dict[str, dict[str, Any]] = {}

#: name -> weighting class (read-only view; use :func:`register_weighting`).
WEIGHTINGS: Mapping[str, type[Weighting]] = MappingProxyType(_REGISTRY)


def register_weighting(name: str | None = None, *, replace: bool = False, **defaults: Any) -> Callable[[W], W]:
    """Class decorator: register a :class:`Weighting` subclass under ``name`` (default: its
    ``name`` attribute). ``defaults`` are constructor keywords bound to this name, so one class
    can be registered under several names (``register_weighting("imtl_g", mode="gradient")``)."""

    def add(cls: W) -> W:
        key = name or cls.name
        if not (isinstance(cls, type) and issubclass(cls, Weighting)):
            raise TypeError(f"register_weighting takes a Weighting subclass (got {cls!r}).")
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"a weighting name must be a non-empty string without spaces (got {key!r}).")
        old = _REGISTRY.get(key)
        if old is not None and (old is not cls or _KWARGS.get(key) != defaults) and not replace:
            raise ValueError(f"weighting name {key!r} is already registered to {old.__qualname__}; pass replace=True.")
        _REGISTRY[key] = cls
        _KWARGS[key] = dict(defaults)
        return cls

    return add


def unregister_weighting(name: str) -> None:
    _REGISTRY.pop(name, None)
    _KWARGS.pop(name, None)


def registered_defaults(name: str) -> dict[str, Any]:
    """The constructor keywords bound to ``name`` at registration (e.g. ``{"reduction": "mean"}``)."""
    return dict(_KWARGS.get(name, {}))


def available_weightings() -> list[str]:
    return sorted(_REGISTRY)


def build_weighting(name: str, num_tasks: int, **kwargs: Any) -> Weighting:
    """Construct the method registered as ``name`` for ``num_tasks`` tasks."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown weighting method {name!r}; available: {', '.join(available_weightings())}.")
    return _REGISTRY[name](num_tasks, **{**_KWARGS[name], **kwargs})
