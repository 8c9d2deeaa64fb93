"""Meta-RL environment families by name: ``make_env("navigation-2d")``, ``register_env(...)``.

Families whose simulator is an optional dependency (gymnasium + MuJoCo: extra ``[rl]``;
Meta-World: extra ``[metaworld]``) are registered by name here and imported only when
built, so ``import metabridge`` never needs them; building one without its extra raises
an error naming the ``pip install`` that provides it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .base import MetaEnv

EnvFactory = Callable[..., MetaEnv]

#: name -> (module path, attribute) for the built-in families, imported lazily
_BUILTIN: dict[str, tuple[str, str, str | None]] = {
    "navigation-2d": ("metabridge.rl.envs.navigation", "Navigation2D", None),
    "halfcheetah-vel": ("metabridge.rl.envs.mujoco_locomotion", "HalfCheetahVel", "rl"),
    "halfcheetah-dir": ("metabridge.rl.envs.mujoco_locomotion", "HalfCheetahDir", "rl"),
    "ant-vel": ("metabridge.rl.envs.mujoco_locomotion", "AntVel", "rl"),
    "ant-dir": ("metabridge.rl.envs.mujoco_locomotion", "AntDir", "rl"),
    "hopper-rand-params": ("metabridge.rl.envs.rand_params", "HopperRandParams", "rl"),
    "walker2d-rand-params": ("metabridge.rl.envs.rand_params", "Walker2DRandParams", "rl"),
    "halfcheetah-rand-params": ("metabridge.rl.envs.rand_params", "HalfCheetahRandParams", "rl"),
    "metaworld-ml1": ("metabridge.rl.envs.metaworld_ml", "MetaWorldML1", "metaworld"),
    "metaworld-ml10": ("metabridge.rl.envs.metaworld_ml", "MetaWorldML10", "metaworld"),
}
_USER: dict[str, EnvFactory] = {}


def register_env(name: str, factory: EnvFactory, *, overwrite: bool = False) -> EnvFactory:
    """Make ``factory(**kwargs) -> MetaEnv`` buildable as ``make_env(name, **kwargs)`` (and by
    ``metabridge rl train --env name`` with ``--plugin``)."""
    if not overwrite and (name in _USER or name in _BUILTIN):
        raise ValueError(f"meta-RL environment {name!r} is already registered; pass overwrite=True to replace it.")
    _USER[name] = factory
    return factory


def available_envs() -> list[str]:
    """Every registered family name (built-in and user)."""
    return sorted({*_BUILTIN, *_USER})


def extra_of(name: str) -> str | None:
    """The optional extra a built-in family needs (``None``: none, or a user family)."""
    return _BUILTIN[name][2] if name in _BUILTIN and name not in _USER else None


def env_factory(name: str) -> EnvFactory:
    """The constructor registered under ``name``."""
    if name in _USER:
        return _USER[name]
    if name not in _BUILTIN:
        raise ValueError(f"unknown meta-RL environment {name!r}; available: {', '.join(available_envs())} "
                       "(or register your own with metabridge.rl.register_env).")
    module, attr, extra = _BUILTIN[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        if extra is None:
            raise
        raise ImportError(f"environment {name!r} needs the optional extra [{extra}] ({exc}); install it with "
                          f"pip install 'metabridge[{extra}]'.") from exc
    return getattr(mod, attr)


def make_env(name: str, **kwargs: Any) -> MetaEnv:
    """Build the family ``name`` with its keyword options."""
    return env_factory(name)(**kwargs)
