"""Meta-RL environment families by name: :data:`ENVS` (a :class:`~metabridge.registry.Registry`,
with every registry's rules), ``make_env("navigation-2d")``, ``register_env("mine", factory)``.

Families whose simulator is an optional dependency (gymnasium + MuJoCo: extra ``[rl]``;
Meta-World: extra ``[metaworld]``) are registered lazily here and imported only when
built, so ``import metabridge`` never needs them; building one without its extra raises
an error naming the ``pip install`` that provides it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from ...registry import Registry
from .base import MetaEnv

EnvFactory = Callable[..., MetaEnv]


class _EnvRegistry(Registry[EnvFactory]):
    """The :class:`Registry` of environment families; the old ``register_env(name, factory,
    overwrite=True)`` still works (with a :class:`DeprecationWarning`: write ``replace=True``)."""

    def register(
        self,
        name: Any = None,
        obj: Any = None,
        *,
        replace: bool = False,  # type: ignore[override]
        overwrite: bool | None = None,
    ) -> Any:
        if overwrite is not None:
            warnings.warn(
                "register_env(..., overwrite=...) is deprecated; write replace=... (every registry's keyword).",
                DeprecationWarning,
                stacklevel=2,
            )
            replace = replace or overwrite
        return super().register(name, obj, replace=replace)


#: name -> ``factory(**kwargs) -> MetaEnv`` (add one with :func:`register_env`).
ENVS: Registry[EnvFactory] = _EnvRegistry("meta-RL environment", "envs", register_hint="metabridge.register_env")

for _name, _module, _attr, _extra in (
    ("navigation-2d", "navigation", "Navigation2D", None),
    ("halfcheetah-vel", "mujoco_locomotion", "HalfCheetahVel", "rl"),
    ("halfcheetah-dir", "mujoco_locomotion", "HalfCheetahDir", "rl"),
    ("ant-vel", "mujoco_locomotion", "AntVel", "rl"),
    ("ant-dir", "mujoco_locomotion", "AntDir", "rl"),
    ("hopper-rand-params", "rand_params", "HopperRandParams", "rl"),
    ("walker2d-rand-params", "rand_params", "Walker2DRandParams", "rl"),
    ("halfcheetah-rand-params", "rand_params", "HalfCheetahRandParams", "rl"),
    ("metaworld-ml1", "metaworld_ml", "MetaWorldML1", "metaworld"),
    ("metaworld-ml10", "metaworld_ml", "MetaWorldML10", "metaworld"),
):
    ENVS.register_lazy(_name, f"metabridge.rl.envs.{_module}", _attr, extra=_extra)

#: ``register_env("mine", factory)`` or ``@register_env("mine")``: ``make_env("mine", **kwargs)`` and
#: ``metabridge rl train --env mine --plugin MODULE`` then build ``factory(**kwargs)``; ``replace=True``
#: replaces a registered name.
register_env = ENVS.register

#: Remove a family added with :func:`register_env` (a built-in it replaced comes back).
unregister_env = ENVS.unregister


def available_envs() -> list[str]:
    """Every registered family name (built-in and user), sorted."""
    return ENVS.names()


def extra_of(name: str) -> str | None:
    """The optional extra a built-in family needs (``None``: none, a user family, or an unknown name)."""
    entry = ENVS.lazy_entry(name) if name in ENVS else None
    return entry.extra if entry is not None else None


def env_factory(name: str) -> EnvFactory:
    """The constructor registered under ``name``."""
    return ENVS.get(name)


def make_env(name: str, **kwargs: Any) -> MetaEnv:
    """Build the family ``name`` with its keyword options."""
    return env_factory(name)(**kwargs)
