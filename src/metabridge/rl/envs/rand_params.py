"""Random-dynamics locomotion: ProMP's / Gao & Sener's ``*RandParams`` families on gymnasium v5 robots.

Rothfuss et al., "ProMP: Proximal Meta-Policy Search", ICLR 2019 (``rand_param_envs``)
and Gao & Sener, "Modeling and Optimization Trade-off in Meta-learning", NeurIPS 2020
(HopperRandParams, Walker2DRandParams) sample a task as a set of physical parameters:
every entry of each parameter group ``p`` is multiplied by its own random factor::

    p_task = p_base * s_p ** e,   e ~ U(-L, L) elementwise,   L = log_scale_limit = 3.0

with ``s_p = 1.5`` for ``body_mass``, ``body_inertia`` and ``geom_friction`` and
``s_p = 1.3`` for ``dof_damping`` (as in ProMP's ``RandomEnv.sample_tasks``; change it
with ``dof_damping_base``). The task row is the concatenation of the exponents ``e`` of
the randomised groups, each flattened in MuJoCo's array order (``body_mass [nbody]``,
``body_inertia [nbody, 3]``, ``dof_damping [nv]``, ``geom_friction [ngeom, 3]``;
entries whose base value is 0, like the world body's mass, are kept so the layout is
the full arrays', as in ProMP). Parameters are always set from the *base* values saved
at construction, so tasks never compound. As in ProMP (mujoco-py ``setattr``), the
model's derived constants (``mj_setConst``) are not recomputed.

The reward and termination are the gymnasium v5 environment's own (``Hopper-v5``,
``Walker2d-v5``, ``HalfCheetah-v5``): ``r = w_f * v_x + healthy_reward * [healthy]
- w_c * ||a||^2`` (no healthy term for the cheetah), terminating when unhealthy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .base import Split
from .gym_batch import MujocoBatchEnv

__all__ = ["RAND_PARAMS", "HopperRandParams", "Walker2DRandParams", "HalfCheetahRandParams"]

#: the parameter groups ProMP's ``RandomEnv`` randomises, in task-row order
RAND_PARAMS: tuple[str, ...] = ("body_mass", "body_inertia", "dof_damping", "geom_friction")


class _RandParamsBase(MujocoBatchEnv):
    """Shared machinery: base parameters, task layout, gymnasium v5 forward reward."""

    task_changes_model: ClassVar[bool] = True

    #: clip applied to ``qvel`` in the observation (gymnasium's Hopper / Walker2d), or None
    qvel_clip: ClassVar[float | None] = 10.0
    #: whether the robot has a healthy rule (healthy reward + termination)
    has_health: ClassVar[bool] = True

    def __init__(
        self,
        *,
        log_scale_limit: float = 3.0,
        horizon: int = 200,
        rand_params: Sequence[str] = RAND_PARAMS,
        dof_damping_base: float = 1.3,
    ) -> None:
        unknown = sorted(set(rand_params) - set(RAND_PARAMS))
        if unknown or not rand_params:
            raise ValueError(
                f"{self.name}: rand_params must be a non-empty subset of {list(RAND_PARAMS)}; got {list(rand_params)}."
            )
        if float(log_scale_limit) < 0:
            raise ValueError(f"{self.name}: log_scale_limit must be >= 0, got {log_scale_limit!r}.")
        self.log_scale_limit = float(log_scale_limit)
        self.rand_params = tuple(p for p in RAND_PARAMS if p in set(rand_params))
        self.scale_bases = {
            "body_mass": 1.5,
            "body_inertia": 1.5,
            "dof_damping": float(dof_damping_base),
            "geom_friction": 1.5,
        }
        super().__init__(horizon)

    # ------------------------------------------------------------------ task layout
    def _on_reference(self, env: Any) -> None:
        self.obs_dim = self.nq - 1 + self.nv
        #: name -> (slice into the task row, array shape, base values)
        self._layout: dict[str, tuple[slice, tuple[int, ...], np.ndarray]] = {}
        start = 0
        for name in self.rand_params:
            base = np.array(getattr(env.model, name), dtype=np.float64, copy=True)
            self._layout[name] = (slice(start, start + base.size), base.shape, base)
            start += base.size
        self.task_dim = start
        self._forward_weight = float(getattr(env, "_forward_reward_weight", 1.0))
        self._ctrl_weight = float(getattr(env, "_ctrl_cost_weight", 1e-3))
        self._healthy_reward = float(getattr(env, "_healthy_reward", 1.0))
        self._terminate = bool(getattr(env, "_terminate_when_unhealthy", True)) and self.has_health
        self._read_health_rule(env)

    def _read_health_rule(self, env: Any) -> None:
        """Copy the robot's healthy ranges from the gymnasium environment."""

    def base_params(self) -> dict[str, np.ndarray]:
        """Copies of the unscaled model parameters saved at construction."""
        return {name: base.copy() for name, (_, _, base) in self._layout.items()}

    def params_for(self, task: Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """The model parameters one task row sets: ``base * scale ** e`` per group."""
        row = np.asarray(
            task.detach().cpu().double().numpy() if isinstance(task, Tensor) else task, dtype=np.float64
        ).reshape(-1)
        if row.size != self.task_dim:
            raise ValueError(f"{self.name}: a task row has {self.task_dim} numbers, got {row.size}.")
        return {
            name: base * np.power(self.scale_bases[name], row[sl].reshape(shape))
            for name, (sl, shape, base) in self._layout.items()
        }

    def sample_tasks(self, n: int, generator: torch.Generator, split: Split = "train") -> Tensor:
        limit = self.log_scale_limit
        return (2.0 * torch.rand(n, self.task_dim, generator=generator) - 1.0) * limit

    def _set_task(self, model: Any, task_row: np.ndarray) -> None:
        for name, value in self.params_for(task_row).items():
            getattr(model, name)[:] = value

    def describe_task(self, task: Tensor) -> str:
        row = task.detach().double().flatten()
        parts = []
        for name, (sl, _, _) in self._layout.items():
            e, s = row[sl], self.scale_bases[name]
            parts.append(f"{name} x{s ** float(e.min()):.2f}..{s ** float(e.max()):.2f}")
        return ", ".join(parts)

    # ------------------------------------------------------------ reward / obs
    def _observe(self, idx: np.ndarray) -> None:
        nq, qstate = self.nq, self._qstate(idx)
        self._obs[idx, : nq - 1] = qstate[:, 1:nq]
        qvel = qstate[:, nq:]
        self._obs[idx, nq - 1 :] = qvel if self.qvel_clip is None else np.clip(qvel, -self.qvel_clip, self.qvel_clip)

    def _healthy(self, state: np.ndarray) -> np.ndarray:
        """Gymnasium's healthy rule per row of ``state = [qpos, qvel]``."""
        return np.ones(state.shape[0], dtype=bool)

    def _batch_reward(
        self, idx: np.ndarray, velocity: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        reward = self._forward_weight * velocity - self._ctrl_weight * np.square(actions).sum(axis=1)
        if not self.has_health:
            return reward, np.zeros(idx.size, dtype=bool)
        healthy = self._healthy(self._qstate(idx))
        reward = reward + self._healthy_reward * healthy
        return reward, (~healthy if self._terminate else np.zeros(idx.size, dtype=bool))


class HopperRandParams(_RandParamsBase):
    """Hopper with random dynamics (ProMP 2019 ``HopperRandParamsEnv``; Gao & Sener 2020, App. C).

    Task: exponents ``e ~ U(-3, 3)`` of ``body_mass``, ``body_inertia``, ``dof_damping``,
    ``geom_friction`` (task_dim 41 for gymnasium's hopper: 5 + 15 + 6 + 15). Reward and
    termination: ``Hopper-v5``'s own::

        r = v_x + 1 * [healthy] - 1e-3 ||a||^2
        healthy = all(|[qpos[2:], qvel]| < 100) and qpos[1] > 0.7 and |qpos[2]| < 0.2

    Observation: 11 (``qpos[1:]``, ``clip(qvel, -10, 10)``); action: 3. Horizon 200.
    """

    name = "hopper-rand-params"
    gym_id: ClassVar[str] = "Hopper-v5"

    def _read_health_rule(self, env: Any) -> None:
        self._state_range = tuple(map(float, getattr(env, "_healthy_state_range", (-100.0, 100.0))))
        self._z_range = tuple(map(float, getattr(env, "_healthy_z_range", (0.7, float("inf")))))
        self._angle_range = tuple(map(float, getattr(env, "_healthy_angle_range", (-0.2, 0.2))))

    def _healthy(self, state: np.ndarray) -> np.ndarray:
        rest = state[:, 2:]
        lo, hi = self._state_range
        ok_state = ((lo < rest) & (rest < hi)).all(axis=1)
        z, angle = state[:, 1], state[:, 2]
        ok_z = (self._z_range[0] < z) & (z < self._z_range[1])
        ok_angle = (self._angle_range[0] < angle) & (angle < self._angle_range[1])
        return ok_state & ok_z & ok_angle


class Walker2DRandParams(_RandParamsBase):
    """Walker2d with random dynamics (ProMP 2019 ``Walker2DRandParamsEnv``; Gao & Sener 2020, App. C).

    Task: exponents ``e ~ U(-3, 3)`` of ``body_mass``, ``body_inertia``, ``dof_damping``,
    ``geom_friction`` (task_dim 65: 8 + 24 + 9 + 24). Reward and termination:
    ``Walker2d-v5``'s own::

        r = v_x + 1 * [healthy] - 1e-3 ||a||^2,   healthy = 0.8 < qpos[1] < 2 and |qpos[2]| < 1

    Observation: 17 (``qpos[1:]``, ``clip(qvel, -10, 10)``); action: 6. Horizon 200.
    """

    name = "walker2d-rand-params"
    gym_id: ClassVar[str] = "Walker2d-v5"

    def _read_health_rule(self, env: Any) -> None:
        self._z_range = tuple(map(float, getattr(env, "_healthy_z_range", (0.8, 2.0))))
        self._angle_range = tuple(map(float, getattr(env, "_healthy_angle_range", (-1.0, 1.0))))

    def _healthy(self, state: np.ndarray) -> np.ndarray:
        z, angle = state[:, 1], state[:, 2]
        ok_z = (self._z_range[0] < z) & (z < self._z_range[1])
        return ok_z & (self._angle_range[0] < angle) & (angle < self._angle_range[1])


class HalfCheetahRandParams(_RandParamsBase):
    """Half-cheetah with random dynamics (the ProMP ``rand_param_envs`` scheme on ``HalfCheetah-v5``).

    Task: exponents ``e ~ U(-3, 3)`` of ``body_mass``, ``body_inertia``, ``dof_damping``,
    ``geom_friction`` (task_dim 68: 8 + 24 + 9 + 27). Reward: ``HalfCheetah-v5``'s own,
    ``r = v_x - 0.1 ||a||^2``; never
    terminates. Observation: 17 (``qpos[1:]``, ``qvel``); action: 6. Horizon 200.
    """

    name = "halfcheetah-rand-params"
    gym_id: ClassVar[str] = "HalfCheetah-v5"
    qvel_clip: ClassVar[float | None] = None
    has_health: ClassVar[bool] = False

    def _on_reference(self, env: Any) -> None:
        super()._on_reference(env)
        self._ctrl_weight = float(getattr(env, "_ctrl_cost_weight", 0.1))
