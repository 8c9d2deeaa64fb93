"""Goal-velocity and goal-direction locomotion (Finn et al. 2017, Sec. 5.3) on gymnasium's MuJoCo v5 robots.

* :class:`HalfCheetahVel`, :class:`HalfCheetahDir` over ``HalfCheetah-v5``;
* :class:`AntVel`, :class:`AntDir` over ``Ant-v5``.

Task definitions follow Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast
Adaptation of Deep Networks", ICML 2017 (rllab code) as re-implemented by
pytorch-maml-rl (Deleu 2018) and ProMP (Rothfuss et al. 2019); Gao & Sener, "Modeling
and Optimization Trade-off in Meta-learning", NeurIPS 2020 (App. C) use the same
HalfCheetahRandVel with goal velocities in ``[0, 3]`` and horizon 200.

The forward velocity is ``v_x = (x_after - x_before) / dt`` over one environment step
(``dt = frame_skip * timestep = 5 * 0.01 s`` for both robots), with ``x = qpos[0]`` (the
cheetah torso's root slide joint) or the ant torso body's ``xpos[0]``: exactly gymnasium
v5's ``info["x_velocity"]`` (checked in the tests).
Observations are gymnasium v5's (the goal is never in them: it must be inferred from
rewards, as in the papers). Episodes have a fixed horizon (default 200); no
``TimeLimit`` truncation happens inside.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .base import Split
from .gym_batch import MujocoBatchEnv

__all__ = ["HalfCheetahVel", "HalfCheetahDir", "AntVel", "AntDir"]


def _uniform_tasks(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    """``n`` scalars from ``U(low, high)`` as a ``[n, 1]`` float tensor."""
    return low + (high - low) * torch.rand(n, 1, generator=generator)


def _direction_tasks(n: int, generator: torch.Generator) -> Tensor:
    """``n`` directions from ``{-1, +1}`` (fair coin) as a ``[n, 1]`` float tensor."""
    return (2 * torch.randint(0, 2, (n, 1), generator=generator) - 1).to(torch.get_default_dtype())


def _check_range(name: str, low: float, high: float) -> tuple[float, float]:
    low, high = float(low), float(high)
    if not high > low:
        raise ValueError(f"{name}: velocity_range must be (low, high) with high > low, got ({low}, {high}).")
    return low, high


class _HalfCheetahBase(MujocoBatchEnv):
    """``HalfCheetah-v5`` stepped in a batch: obs ``[qpos[1:], qvel]`` (17), actions in ``[-1, 1]^6``."""

    gym_id: ClassVar[str] = "HalfCheetah-v5"
    task_dim = 1

    def __init__(self, *, horizon: int = 200, ctrl_cost_weight: float = 0.05) -> None:
        self.ctrl_cost_weight = float(ctrl_cost_weight)
        super().__init__(horizon)

    def _on_reference(self, env: Any) -> None:
        self.obs_dim = self.nq - 1 + self.nv

    def _observe(self, idx: np.ndarray) -> None:
        self._obs[idx] = self._qstate(idx)[:, 1:]

    def _ctrl_cost(self, actions: np.ndarray) -> np.ndarray:
        return self.ctrl_cost_weight * np.square(actions).sum(axis=1)


class HalfCheetahVel(_HalfCheetahBase):
    """Half-cheetah running at a goal velocity (Finn et al. 2017, Sec. 5.3; Gao & Sener 2020's HalfCheetahRandVel).

    Task: goal velocity ``v_goal ~ U(low, high)``; ``velocity_range=(0, 2)`` by default
    (Finn et al.), ``(0, 3)`` for Gao & Sener's / ProMP's HalfCheetahRandVel. Task row:
    ``[v_goal]``. Reward per step (rllab / pytorch-maml-rl / ProMP)::

        r = -|v_x - v_goal| - 0.05 * ||a||^2,   v_x = (qpos0_after - qpos0_before) / dt

    with ``a`` the action clipped to ``[-1, 1]^6``. Never terminates. Observation: 17
    numbers (``qpos[1:]`` 8, ``qvel`` 9; goal hidden); action: 6. Horizon 200.
    """

    name = "halfcheetah-vel"

    def __init__(
        self, *, velocity_range: tuple[float, float] = (0.0, 2.0), horizon: int = 200, ctrl_cost_weight: float = 0.05
    ) -> None:
        self.velocity_range = _check_range(self.name, *velocity_range)
        super().__init__(horizon=horizon, ctrl_cost_weight=ctrl_cost_weight)

    def sample_tasks(self, n: int, generator: torch.Generator, split: Split = "train") -> Tensor:
        return _uniform_tasks(n, *self.velocity_range, generator)

    def _batch_reward(
        self, idx: np.ndarray, velocity: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        goal = self._entry_tasks[idx, 0]
        return -np.abs(velocity - goal) - self._ctrl_cost(actions), np.zeros(idx.size, dtype=bool)

    def describe_task(self, task: Tensor) -> str:
        return f"goal velocity {float(task.flatten()[0]):.3f}"


class HalfCheetahDir(_HalfCheetahBase):
    """Half-cheetah running forward or backward (Finn et al. 2017, Sec. 5.3).

    Task: direction ``d`` uniform on ``{-1, +1}``; task row ``[d]``. Reward per step
    (rllab / pytorch-maml-rl / ProMP's HalfCheetahRandDirec)::

        r = d * v_x - 0.05 * ||a||^2

    Never terminates. Observation: 17 numbers (goal hidden); action: 6. Horizon 200.
    """

    name = "halfcheetah-dir"

    def sample_tasks(self, n: int, generator: torch.Generator, split: Split = "train") -> Tensor:
        return _direction_tasks(n, generator)

    def _batch_reward(
        self, idx: np.ndarray, velocity: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        direction = self._entry_tasks[idx, 0]
        return direction * velocity - self._ctrl_cost(actions), np.zeros(idx.size, dtype=bool)

    def describe_task(self, task: Tensor) -> str:
        return "forward" if float(task.flatten()[0]) > 0 else "backward"


class _AntBase(MujocoBatchEnv):
    """``Ant-v5`` stepped in a batch.

    Observation (gymnasium v5, 105 numbers): ``qpos[2:]`` (13), ``qvel`` (14),
    ``clip(cfrc_ext[1:], -1, 1)`` (13 bodies x 6). Action: 8, in ``[-1, 1]``. The episode
    terminates when unhealthy (gymnasium's rule: a non-finite state or torso height
    ``qpos[2]`` outside ``[0.2, 1.0]``). Costs as pytorch-maml-rl's ``AntVelEnv`` /
    ``AntDirEnv``: ``ctrl = 0.5e-2 ||a||^2``, ``contact = 0.5e-3 sum(clip(cfrc_ext, -1, 1)^2)``
    (all bodies), survive bonus ``0.05`` on every step (including the terminating one).
    """

    gym_id: ClassVar[str] = "Ant-v5"
    needs_contact_forces: ClassVar[bool] = True
    task_dim = 1
    ctrl_cost_weight: ClassVar[float] = 0.5 * 1e-2
    contact_cost_weight: ClassVar[float] = 0.5 * 1e-3
    survive_reward: ClassVar[float] = 0.05

    def _on_reference(self, env: Any) -> None:
        self._torso = 1  # gymnasium v5's main_body: the torso
        self.nbody = int(env.model.nbody)
        low, high = getattr(env, "_healthy_z_range", (0.2, 1.0))
        self._healthy_z = (float(low), float(high))
        self.obs_dim = (self.nq - 2) + self.nv + 6 * (self.nbody - 1)

    def _alloc_extra(self, n: int) -> None:
        self._xpos = np.zeros(n, dtype=np.float64)
        self._cfrc = np.zeros((n, self.nbody, 6), dtype=np.float64)

    def _capture_extra(self, k: int, data: Any) -> None:
        self._xpos[k] = data.xpos[self._torso, 0]
        self._cfrc[k] = data.cfrc_ext

    def _forward_position(self, idx: np.ndarray) -> np.ndarray:
        return self._xpos[idx]

    def _observe(self, idx: np.ndarray) -> None:
        width = self.nq + self.nv - 2
        obs = self._obs
        obs[idx, :width] = self._qstate(idx)[:, 2:]
        obs[idx, width:] = np.clip(self._cfrc[idx, 1:], -1.0, 1.0).reshape(idx.size, -1)

    def _costs_and_termination(self, idx: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``ctrl + contact - survive`` and the unhealthy termination of the stepped entries."""
        ctrl = self.ctrl_cost_weight * np.square(actions).sum(axis=1)
        forces = np.clip(self._cfrc[idx], -1.0, 1.0)
        contact = self.contact_cost_weight * np.square(forces).sum(axis=(1, 2))
        state = self._qstate(idx)
        z = state[:, 2]
        low, high = self._healthy_z
        healthy = np.isfinite(state).all(axis=1) & (z >= low) & (z <= high)
        return ctrl + contact - self.survive_reward, ~healthy


class AntVel(_AntBase):
    """Ant running at a goal velocity (Finn et al. 2017, Sec. 5.3), as pytorch-maml-rl's ``AntVelEnv``.

    Task: goal velocity ``v_goal ~ U(0, 3)`` (``velocity_range``); task row ``[v_goal]``.
    Reward per step (pytorch-maml-rl's ``AntVelEnv``, followed term by term)::

        r = -|v_x - v_goal| + b - 0.5e-2 ||a||^2 - 0.5e-3 sum(clip(cfrc_ext, -1, 1)^2) + 0.05

    ``b = forward_bonus = 1.0`` is pytorch-maml-rl's constant in the forward reward
    (``-|v - v_goal| + 1``); pass ``forward_bonus=0`` for the bare ``-|v_x - v_goal|``.
    ``v_x`` is the torso's x velocity (gymnasium's ``info["x_velocity"]``). Terminates when
    unhealthy. Observation: 105 numbers (gymnasium v5; goal hidden); action: 8. Horizon 200.
    """

    name = "ant-vel"

    def __init__(
        self, *, velocity_range: tuple[float, float] = (0.0, 3.0), horizon: int = 200, forward_bonus: float = 1.0
    ) -> None:
        self.velocity_range = _check_range(self.name, *velocity_range)
        self.forward_bonus = float(forward_bonus)
        super().__init__(horizon)

    def sample_tasks(self, n: int, generator: torch.Generator, split: Split = "train") -> Tensor:
        return _uniform_tasks(n, *self.velocity_range, generator)

    def _batch_reward(
        self, idx: np.ndarray, velocity: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        costs, terminated = self._costs_and_termination(idx, actions)
        goal = self._entry_tasks[idx, 0]
        return -np.abs(velocity - goal) + self.forward_bonus - costs, terminated

    def describe_task(self, task: Tensor) -> str:
        return f"goal velocity {float(task.flatten()[0]):.3f}"


class AntDir(_AntBase):
    """Ant running forward or backward (Finn et al. 2017, Sec. 5.3), as pytorch-maml-rl's ``AntDirEnv``.

    Task: direction ``d`` uniform on ``{-1, +1}``; task row ``[d]``. Reward per step::

        r = d * v_x - 0.5e-2 ||a||^2 - 0.5e-3 sum(clip(cfrc_ext, -1, 1)^2) + 0.05

    Terminates when unhealthy. Observation: 105 numbers (goal hidden); action: 8. Horizon 200.
    """

    name = "ant-dir"

    def __init__(self, *, horizon: int = 200) -> None:
        super().__init__(horizon)

    def sample_tasks(self, n: int, generator: torch.Generator, split: Split = "train") -> Tensor:
        return _direction_tasks(n, generator)

    def _batch_reward(
        self, idx: np.ndarray, velocity: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        costs, terminated = self._costs_and_termination(idx, actions)
        return self._entry_tasks[idx, 0] * velocity - costs, terminated

    def describe_task(self, task: Tensor) -> str:
        return "forward" if float(task.flatten()[0]) > 0 else "backward"
