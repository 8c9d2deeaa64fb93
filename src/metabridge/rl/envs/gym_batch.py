"""Batched meta-RL environments over pools of single gymnasium / MuJoCo environments.

CPU MuJoCo steps one simulation at a time, so a ``[T, R]`` batch is a Python loop over
``T * R`` single environments. This module keeps that loop as thin as it can be:

* the generic :class:`GymBatchEnv` keeps one raw (``.unwrapped``) environment per
  ``(task, rollout)`` entry, created lazily, kept in a pool and reused across resets
  (the pool grows when a larger ``T * R`` is reset) and calls its own ``step``;
  gymnasium's wrapper stack (``PassiveEnvChecker``, ``OrderEnforcing``, ``TimeLimit``) is
  never in the loop, and the fixed horizon is enforced here (Meta-World uses this);
* :class:`MujocoBatchEnv` (the locomotion families) calls ``mujoco.mj_step`` directly on
  one scratch ``MjData``, keeping every entry's full simulator state as one row of a
  numpy array (cache-friendly: see its docstring), and computes observations, rewards
  and terminations vectorised over the batch;
* actions are clipped once, for the whole batch, into a preallocated ``float64`` array;
  per-entry results go into preallocated numpy arrays and become torch tensors once per
  batched step.

Entries that terminated are not stepped again: they keep their last observation, get
reward 0 and ``done = True`` (see :mod:`metabridge.rl.envs.base`). Reset seeds are
integers drawn from the ``torch.Generator`` passed to :meth:`GymBatchEnv.reset`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .base import MetaEnv, StepResult

__all__ = ["GymBatchEnv", "MujocoBatchEnv"]

#: reset seeds are drawn uniformly from [0, _SEED_HIGH)
_SEED_HIGH = 2**31 - 1


class GymBatchEnv(MetaEnv):
    """A :class:`MetaEnv` over a pool of single gymnasium-API environments.

    The generic step calls each raw environment's own ``step`` (no wrappers), which is
    what Meta-World needs; :class:`MujocoBatchEnv` replaces it with direct MuJoCo calls.

    Subclass hooks:

    * :meth:`_make_single` (required): build one raw environment for a pool key;
    * :meth:`_pool_key`: which pool a task row's environment comes from (one class of
      environment per key, e.g. the Meta-World environment class in ML10);
    * :meth:`_set_task`: apply a task row to an environment before its reset;
    * :meth:`_reset_single` / :meth:`_step_single`: one entry's reset / step;
    * :meth:`_reward`, :meth:`_terminated`, :meth:`_success`: per-family reward,
      termination and success from one ``env.step`` result.

    Subclasses set ``name``, ``obs_dim``, ``action_dim``, ``task_dim`` and the action box
    (via :meth:`_set_action_box`) before the first reset.
    """

    def __init__(self, horizon: int) -> None:
        if int(horizon) < 1:
            raise ValueError(f"{self.name}: horizon must be a positive integer, got {horizon!r}.")
        self.horizon = int(horizon)
        #: pool key -> raw environments (reused across resets, grown on demand)
        self._pools: dict[Hashable, list[Any]] = {}
        #: environment of each flat entry ``k = task * R + rollout`` since the last reset
        self._entries: list[Any] = []
        self._shape: tuple[int, int] = (0, 0)
        self._t = 0
        self._low = np.full(getattr(self, "action_dim", 1), -1.0)
        self._high = np.full(getattr(self, "action_dim", 1), 1.0)
        self._alloc(0)

    # ----------------------------------------------------------------- subclass hooks
    def _make_single(self, key: Hashable) -> Any:
        """Build one raw (unwrapped) environment for pool ``key``."""
        raise NotImplementedError

    def _pool_key(self, task_row: np.ndarray) -> Hashable:
        """The pool an environment for ``task_row`` comes from (one pool by default)."""
        return None

    def _set_task(self, env: Any, task_row: np.ndarray) -> None:
        """Apply ``task_row`` (float64 numpy, ``[task_dim]``) to ``env`` before its reset."""

    def _reset_single(self, k: int, env: Any, seed: int) -> None:
        """Reset entry ``k`` with ``seed`` and write its first observation to ``self._obs[k]``."""
        obs, _ = env.reset(seed=seed)
        self._obs[k] = obs

    def _step_single(self, k: int, env: Any, action: np.ndarray) -> None:
        """Step entry ``k`` once with the clipped ``action`` (generic: the raw ``env.step``)."""
        obs, reward, terminated, _truncated, info = env.step(action)
        self._obs[k] = obs
        self._rew[k] = self._reward(env, float(reward), info, action)
        self._term[k] = self._terminated(env, bool(terminated), info)
        if self.has_success:
            self._succ[k] = self._success(info)

    def _reward(self, env: Any, reward: float, info: Mapping[str, Any], action: np.ndarray) -> float:
        """The family's reward from one ``env.step`` (default: the environment's own)."""
        return reward

    def _terminated(self, env: Any, terminated: bool, info: Mapping[str, Any]) -> bool:
        """Whether the episode ends on this step (default: the environment's own rule)."""
        return terminated

    def _success(self, info: Mapping[str, Any]) -> bool:
        """Whether this step counts as a success (families with ``has_success``)."""
        return bool(info.get("success", 0.0) > 0)

    def _step_active(self, idx: np.ndarray, actions: np.ndarray) -> None:
        """Step the entries ``idx`` (not yet done) with their rows of ``actions``."""
        entries, step_single = self._entries, self._step_single
        for k in idx.tolist():
            step_single(k, entries[k], actions[k])

    def _after_reset(self) -> None:
        """Called once after every entry was reset (vectorised post-processing)."""

    def _reset_entries(self, tasks: np.ndarray, rollouts: int, seeds: list[int]) -> None:
        """Assign a pooled environment to every entry, apply its task and reset it."""
        used: dict[Hashable, int] = {}
        entries: list[Any] = []
        for k, row in enumerate(self._entry_tasks):
            key = self._pool_key(row)
            pool = self._pools.setdefault(key, [])
            j = used.get(key, 0)
            used[key] = j + 1
            if j == len(pool):
                pool.append(self._make_single(key))
            env = pool[j]
            entries.append(env)
            self._set_task(env, row)
            self._reset_single(k, env, int(seeds[k]))
        self._entries = entries

    # ------------------------------------------------------------------ public API
    def reset(self, tasks: Tensor, rollouts: int, generator: torch.Generator) -> Tensor:
        if tasks.dim() != 2 or tasks.shape[1] != self.task_dim:
            raise ValueError(f"{self.name}: tasks must have shape [T, {self.task_dim}]; got {list(tasks.shape)}.")
        if int(rollouts) < 1:
            raise ValueError(f"{self.name}: rollouts must be >= 1, got {rollouts!r}.")
        n_tasks, rollouts = int(tasks.shape[0]), int(rollouts)
        n = n_tasks * rollouts
        task_np = tasks.detach().to("cpu", torch.float64).numpy()
        seeds = torch.randint(0, _SEED_HIGH, (n,), generator=generator, dtype=torch.int64).tolist()
        if n != self._obs.shape[0]:
            self._alloc(n)
        self._entry_tasks = np.repeat(task_np, rollouts, axis=0)
        self._reset_entries(task_np, rollouts, seeds)
        self._shape = (n_tasks, rollouts)
        self._done[:] = False
        self._t = 0
        self._after_reset()
        return torch.from_numpy(self._obs.astype(np.float32)).view(n_tasks, rollouts, self.obs_dim)

    def step(self, actions: Tensor) -> StepResult:
        n_tasks, rollouts = self._shape
        if n_tasks == 0:
            raise RuntimeError(f"{self.name}: call reset(tasks, rollouts, generator) before step().")
        self._check_actions(actions, self._shape)
        if self._t >= self.horizon:
            raise RuntimeError(
                f"{self.name}: the episode already ran its horizon of {self.horizon} steps; "
                "reset before stepping again."
            )
        n = n_tasks * rollouts
        raw = actions.detach().to("cpu", torch.float64).reshape(n, self.action_dim).numpy()
        np.clip(raw, self._low, self._high, out=self._act)
        idx = np.flatnonzero(~self._done)
        self._rew.fill(0.0)
        self._term.fill(False)
        if self.has_success:
            self._succ.fill(False)
        if idx.size:
            self._step_active(idx, self._act)
        self._done |= self._term
        self._t += 1
        shape = (n_tasks, rollouts)
        return StepResult(
            observation=torch.from_numpy(self._obs.astype(np.float32)).view(*shape, self.obs_dim),
            reward=torch.from_numpy(self._rew.astype(np.float32)).view(shape),
            done=torch.from_numpy(self._done.copy()).view(shape),
            success=torch.from_numpy(self._succ.copy()).view(shape) if self.has_success else None,
        )

    def raw_env(self, task: int, rollout: int) -> Any:
        """The raw single environment that runs entry ``(task, rollout)`` since the last
        reset (for tests and debugging: do not step it yourself)."""
        n_tasks, rollouts = self._shape
        if not (0 <= task < n_tasks and 0 <= rollout < rollouts):
            raise IndexError(
                f"{self.name}: entry ({task}, {rollout}) outside the last reset's [{n_tasks}, {rollouts}] batch."
            )
        return self._entries[task * rollouts + rollout]

    @property
    def steps_taken(self) -> int:
        """Batched steps since the last reset."""
        return self._t

    def close(self) -> None:
        for pool in self._pools.values():
            for env in pool:
                env.close()
        self._pools.clear()
        self._entries = []
        self._shape = (0, 0)

    # ------------------------------------------------------------------- internals
    def _set_action_box(self, low: np.ndarray, high: np.ndarray) -> None:
        """Record the action box (numpy for clipping, torch for the policy side)."""
        self._low = np.asarray(low, dtype=np.float64).copy()
        self._high = np.asarray(high, dtype=np.float64).copy()
        self.action_dim = int(self._low.size)
        self.action_low = torch.as_tensor(self._low, dtype=torch.float32)
        self.action_high = torch.as_tensor(self._high, dtype=torch.float32)

    def _alloc(self, n: int) -> None:
        """(Re)allocate the per-entry buffers for ``n`` entries."""
        obs_dim = getattr(self, "obs_dim", 0)
        self._obs = np.zeros((n, obs_dim), dtype=np.float64)
        self._act = np.zeros((n, getattr(self, "action_dim", 0)), dtype=np.float64)
        self._rew = np.zeros(n, dtype=np.float64)
        self._term = np.zeros(n, dtype=bool)
        self._done = np.zeros(n, dtype=bool)
        self._succ = np.zeros(n, dtype=bool)
        self._entry_tasks = np.zeros((n, getattr(self, "task_dim", 0)), dtype=np.float64)


class MujocoBatchEnv(GymBatchEnv):
    """A :class:`GymBatchEnv` over a gymnasium MuJoCo robot, stepped through MuJoCo directly.

    Stepping ``T * R`` separate ``MjData`` (each with its own multi-megabyte arena) thrashes
    the CPU caches: ``mj_step`` on hundreds of distinct HalfCheetah datas costs noticeably
    more per step than on one (not measured in a stored experiment). So the pool here is of
    *models* (one shared model when tasks do not change the physics, one per task slot when
    they do, as RandParams), every entry's simulator state is one row of ``self._state``
    (MuJoCo's ``mjSTATE_INTEGRATION``: time, ``qpos``, ``qvel``, ``act``, warm start,
    controls, applied forces, mocap, i.e. everything ``mj_step`` depends on), and one
    scratch ``MjData`` steps them in turn::

        mj_setState(model_k, scratch, state[k]); scratch.ctrl[:] = a_k
        mj_step(model_k, scratch, frame_skip)          # gymnasium's do_simulation physics
        mj_getState(model_k, scratch, state[k])

    which is bit-for-bit the trajectory of a separate gymnasium environment per entry
    (the tests compare against a plain ``gymnasium.make`` env; note that ``mj_forward``
    writes the solver warm start, so a copy of an entry needs ``qacc_warmstart`` as well
    as ``qpos``/``qvel``, see :meth:`entry_state`). ``mj_rnePostConstraint``
    is added only when the family reads contact forces. Resets go through one reference
    gymnasium environment (``env.reset(seed=s)``: gymnasium's own reset noise) whose state
    is copied into the entry's row.

    Subclasses compute, vectorised over the stepped entries:

    * :meth:`_observe`: observations from :meth:`_qstate` (``[qpos, qvel]`` rows) and extras;
    * :meth:`_batch_reward`: rewards and terminations from the forward velocity
      ``v_x = (x_after - x_before) / dt``, the clipped actions and the entries' task rows
      (``self._entry_tasks``).

    ``x`` is ``qpos[0]`` (the root slide joint of the planar robots) unless the family
    overrides :meth:`_capture_extra` / :meth:`_forward_position` (the Ant uses its torso's
    ``xpos``, as gymnasium and pytorch-maml-rl do). The task hook :meth:`_set_task`
    receives the task slot's ``MjModel`` (only called when ``task_changes_model``).
    """

    #: gymnasium id of the single environment (e.g. ``"HalfCheetah-v5"``)
    gym_id: ClassVar[str] = ""
    #: call ``mj_rnePostConstraint`` after each step (needed to read ``cfrc_ext``)
    needs_contact_forces: ClassVar[bool] = False
    #: tasks change the model (one model per task slot) rather than only the reward
    task_changes_model: ClassVar[bool] = False

    def __init__(self, horizon: int, gym_kwargs: Mapping[str, Any] | None = None) -> None:
        import mujoco

        self._gym_kwargs = dict(gym_kwargs or {})
        super().__init__(horizon)
        ref = self._make_single(None)
        self._ref = ref
        self._set_action_box(ref.action_space.low, ref.action_space.high)
        self.frame_skip = int(ref.frame_skip)
        self.dt = float(ref.dt)
        self.nq, self.nv = int(ref.model.nq), int(ref.model.nv)
        self._spec = int(mujoco.mjtState.mjSTATE_INTEGRATION)
        self._state_size = int(mujoco.mj_stateSize(ref.model, self._spec))
        # offsets of qpos / qvel / ctrl inside an mjSTATE_INTEGRATION row (bit order)
        self._qpos_at = int(mujoco.mj_stateSize(ref.model, int(mujoco.mjtState.mjSTATE_TIME)))
        self._qvel_at = self._qpos_at + self.nq
        below_ctrl = int(mujoco.mjtState.mjSTATE_CTRL) - 1
        self._ctrl_at = int(mujoco.mj_stateSize(ref.model, self._spec & below_ctrl))
        self._scratch = mujoco.MjData(ref.model)
        self._task_models: list[Any] = []
        self._entry_models: list[Any] = []
        self._on_reference(ref)
        self._alloc(0)

    # ----------------------------------------------------------------- subclass hooks
    def _on_reference(self, env: Any) -> None:
        """Inspect the reference environment (dims, base parameters); must set ``obs_dim``."""
        raise NotImplementedError

    def _capture_extra(self, k: int, data: Any) -> None:
        """Copy extra per-entry quantities from ``data`` after a reset or step (default: none)."""

    def _forward_position(self, idx: np.ndarray) -> np.ndarray:
        """The x position whose finite difference is the forward velocity (default ``qpos[0]``)."""
        return self._state[idx, self._qpos_at]

    def _observe(self, idx: np.ndarray) -> None:
        """Write the observations of entries ``idx`` into ``self._obs[idx]``."""
        raise NotImplementedError

    def _batch_reward(
        self, idx: np.ndarray, velocity: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rewards and terminations of the stepped entries ``idx`` (vectorised)."""
        raise NotImplementedError

    def _alloc_extra(self, n: int) -> None:
        """Allocate family-specific per-entry buffers (default: none)."""

    # ------------------------------------------------------------------ inspection
    def _qstate(self, idx: np.ndarray) -> np.ndarray:
        """``[len(idx), nq + nv]`` copy of ``[qpos, qvel]`` (gymnasium's ``state_vector()``) of entries ``idx``."""
        return self._state[idx, self._qpos_at : self._qvel_at + self.nv]

    def entry_state(self, task: int, rollout: int) -> dict[str, np.ndarray | float]:
        """Copies of entry ``(task, rollout)``'s simulator ``time``, ``qpos``, ``qvel``,
        ``qacc_warmstart`` and last ``ctrl`` (for tests and debugging)."""
        k = self._entry_index(task, rollout)
        row = self._state[k]
        nu = int(self._ref.model.nu)
        warm = self._qvel_at + self.nv + int(self._ref.model.na)
        return {
            "time": float(row[0]),
            "qpos": row[self._qpos_at : self._qpos_at + self.nq].copy(),
            "qvel": row[self._qvel_at : self._qvel_at + self.nv].copy(),
            "qacc_warmstart": row[warm : warm + self.nv].copy(),
            "ctrl": row[self._ctrl_at : self._ctrl_at + nu].copy(),
        }

    def entry_model(self, task: int, rollout: int) -> Any:
        """The ``MjModel`` that simulates entry ``(task, rollout)`` since the last reset."""
        return self._entry_models[self._entry_index(task, rollout)]

    def raw_env(self, task: int, rollout: int) -> Any:
        raise TypeError(
            f"{self.name}: entries are simulator states, not separate environments; "
            "use entry_state(task, rollout) / entry_model(task, rollout)."
        )

    def close(self) -> None:
        self._ref.close()
        self._task_models.clear()
        self._entry_models = []
        self._shape = (0, 0)

    # ------------------------------------------------------------------- internals
    def _entry_index(self, task: int, rollout: int) -> int:
        n_tasks, rollouts = self._shape
        if not (0 <= task < n_tasks and 0 <= rollout < rollouts):
            raise IndexError(
                f"{self.name}: entry ({task}, {rollout}) outside the last reset's [{n_tasks}, {rollouts}] batch."
            )
        return task * rollouts + rollout

    def _make_single(self, key: Hashable) -> Any:
        import gymnasium

        return gymnasium.make(self.gym_id, disable_env_checker=True, **self._gym_kwargs).unwrapped

    def _alloc(self, n: int) -> None:
        super()._alloc(n)
        if hasattr(self, "_state_size"):
            self._state = np.zeros((n, self._state_size), dtype=np.float64)
            self._alloc_extra(n)

    def _reset_entries(self, tasks: np.ndarray, rollouts: int, seeds: list[int]) -> None:
        import copy

        import mujoco

        ref = self._ref
        if self.task_changes_model:
            while len(self._task_models) < len(tasks):
                self._task_models.append(copy.deepcopy(ref.model))
            for model, row in zip(self._task_models, tasks):
                self._set_task(model, row)
            models = self._task_models
        else:
            models = [ref.model] * len(tasks)
        self._entry_models = [models[k // rollouts] for k in range(len(seeds))]
        # gymnasium's reset = mj_resetData, seeded noise on init_qpos / init_qvel, mj_forward.
        # The noisy qpos/qvel do not depend on the task, so the reference env draws them; when
        # the task changed the model, its final mj_forward (which also writes the solver warm
        # start) is redone from zero warm start with the entry's own model.
        data, spec = self._scratch, self._spec
        warm = slice(self._qvel_at + self.nv + int(ref.model.na), self._qvel_at + 2 * self.nv + int(ref.model.na))
        for k, seed in enumerate(seeds):
            ref.reset(seed=int(seed))
            row = self._state[k]
            mujoco.mj_getState(ref.model, ref.data, row, spec)
            if not self.task_changes_model:
                self._capture_extra(k, ref.data)
                continue
            row[warm] = 0.0
            model = self._entry_models[k]
            mujoco.mj_setState(model, data, row, spec)
            mujoco.mj_forward(model, data)
            mujoco.mj_getState(model, data, row, spec)
            self._capture_extra(k, data)

    def _after_reset(self) -> None:
        self._observe(np.arange(self._state.shape[0]))

    def _step_active(self, idx: np.ndarray, actions: np.ndarray) -> None:
        import mujoco

        mj_step, get_state, set_state = mujoco.mj_step, mujoco.mj_getState, mujoco.mj_setState
        rne = mujoco.mj_rnePostConstraint if self.needs_contact_forces else None
        capture = self._capture_extra if type(self)._capture_extra is not MujocoBatchEnv._capture_extra else None
        models, state, spec, nstep = self._entry_models, self._state, self._spec, self.frame_skip
        data = self._scratch
        ctrl = data.ctrl
        before = self._forward_position(idx)
        for k in idx.tolist():
            model, row = models[k], state[k]
            set_state(model, data, row, spec)
            ctrl[:] = actions[k]
            mj_step(model, data, nstep)
            if rne is not None:
                rne(model, data)
            get_state(model, data, row, spec)
            if capture is not None:
                capture(k, data)
        velocity = (self._forward_position(idx) - before) / self.dt
        reward, terminated = self._batch_reward(idx, velocity, actions[idx])
        self._rew[idx] = reward
        self._term[idx] = terminated
        self._observe(idx)
