"""Meta-RL environment families (batched: T tasks x R rollouts per step)."""

from .base import MetaEnv, StepResult
from .navigation import Navigation2D
from .registry import available_envs, make_env, register_env

__all__ = ["MetaEnv", "Navigation2D", "StepResult", "available_envs", "make_env", "register_env"]
