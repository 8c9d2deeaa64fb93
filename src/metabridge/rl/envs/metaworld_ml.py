"""Meta-World ML1 / ML10 (Yu et al., "Meta-World: A Benchmark and Evaluation for Multi-Task
and Meta Reinforcement Learning", CoRL 2019) as batched :class:`~metabridge.rl.envs.base.MetaEnv` s.

Built on the installed ``metaworld`` (3.x, ``-v3`` environments) benchmark classes:
``metaworld.ML1(env_name, seed=...)`` / ``metaworld.ML10(seed=...)`` give
``train_classes``, ``train_tasks``, ``test_classes``, ``test_tasks``; one environment is
``cls()`` followed by ``env.set_task(task)``. The ML benchmarks set
``partially_observable=True`` on every task, so the goal position in the 39-number
observation is zeroed (goal hidden, as in the paper's meta-learning protocol).

A task row is one integer (stored as a float): the index of the task in
``train_tasks + test_tasks``, i.e. train tasks are ``0 .. n_train - 1`` and test tasks
``n_train .. n_train + n_test - 1`` (one number identifies both the split and the task;
for ML10 it also selects the environment class). Episodes last ``horizon`` steps
(default 150, Gao & Sener 2020, App. C); Meta-World's own ``max_path_length`` (500) is
set to the horizon so it never raises inside an episode. ``success`` is
``info["success"] > 0`` per step. Meta-World never terminates an episode; with
``terminate_on_success=True`` an entry is ``done`` from its first success on.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import Split
from .gym_batch import GymBatchEnv

__all__ = ["MetaWorldML1", "MetaWorldML10"]

_OBS_DIM = 39
_ACTION_DIM = 4
#: Meta-World class -> subclass that copies one compiled model instead of recompiling the XML
_FAST_CLASSES: dict[type, type] = {}


def _fast_class(cls: type) -> type:
    """``cls`` with MuJoCo's XML compilation done once per class.

    Building a Meta-World environment costs ~0.2 s, almost all of it in
    ``MjModel.from_xml_path``; a pool of 100 environments would spend 20 s there. The
    subclass compiles the model on its first construction, keeps a pristine copy, and
    gives every later instance a ``copy.deepcopy`` of it (~15 ms; compilation is
    deterministic, so the copy equals a fresh compile). Nothing else changes: the
    subclass passes Meta-World's ``isinstance`` check in ``set_task``.
    """
    fast = _FAST_CLASSES.get(cls)
    if fast is not None:
        return fast
    template: list[Any] = []

    def _initialize_simulation(self: Any) -> tuple[Any, Any]:
        import copy

        import mujoco

        if not template:
            model, data = cls._initialize_simulation(self)  # type: ignore[attr-defined]
            template.append(copy.deepcopy(model))
            return model, data
        model = copy.deepcopy(template[0])
        return model, mujoco.MjData(model)

    fast = type(
        cls.__name__,
        (cls,),
        {"_initialize_simulation": _initialize_simulation, "__module__": cls.__module__, "__doc__": cls.__doc__},
    )
    _FAST_CLASSES[cls] = fast
    return fast


class _MetaWorldBase(GymBatchEnv):
    """A Meta-World benchmark's train + test tasks behind one batched environment."""

    has_success = True
    obs_dim = _OBS_DIM
    action_dim = _ACTION_DIM
    task_dim = 1

    def __init__(self, *, horizon: int = 150, benchmark_seed: int = 0, terminate_on_success: bool = False) -> None:
        import metaworld  # noqa: F401  (fail early, with the registry's "install [metaworld]" hint)

        super().__init__(horizon)
        self.benchmark_seed = int(benchmark_seed)
        self.terminate_on_success = bool(terminate_on_success)
        self._set_action_box(np.full(_ACTION_DIM, -1.0), np.full(_ACTION_DIM, 1.0))
        self._alloc(0)
        self._benchmark: Any = None

    # ------------------------------------------------------------------ benchmark
    def _build_benchmark(self) -> Any:
        raise NotImplementedError

    @property
    def benchmark(self) -> Any:
        """The ``metaworld`` benchmark object (built on first use: it generates the goals)."""
        if self._benchmark is None:
            bench = self._build_benchmark()
            self._benchmark = bench
            self._train_tasks = list(bench.train_tasks)
            self._test_tasks = list(bench.test_tasks)
            self._all_tasks = self._train_tasks + self._test_tasks
            self._classes = {**dict(bench.train_classes), **dict(bench.test_classes)}
        return self._benchmark

    def num_tasks(self, split: Split = "train") -> int:
        """How many tasks the split holds (50 goals per environment class)."""
        _ = self.benchmark  # built on first use
        return len(self._train_tasks if split == "train" else self._test_tasks)

    def task_info(self, task: Tensor | float) -> tuple[str, str, int]:
        """``(env_name, split, index within the split)`` of one task row."""
        i = self._task_index(float(task.flatten()[0]) if isinstance(task, Tensor) else float(task))
        n_train = len(self._train_tasks)
        split, j = ("train", i) if i < n_train else ("test", i - n_train)
        return self._all_tasks[i].env_name, split, j

    def _task_index(self, value: float) -> int:
        _ = self.benchmark  # built on first use
        i = int(round(value))
        if not (0 <= i < len(self._all_tasks)) or abs(value - i) > 1e-3:
            raise ValueError(
                f"{self.name}: a task row is an integer index in [0, {len(self._all_tasks)}); got {value!r}."
            )
        return i

    # ---------------------------------------------------------------- MetaEnv API
    def sample_tasks(self, n: int, generator: torch.Generator, split: Split = "train") -> Tensor:
        if split not in ("train", "test"):
            raise ValueError(f"{self.name}: split must be 'train' or 'test', got {split!r}.")
        m = self.num_tasks(split)
        if n <= m:
            idx = torch.randperm(m, generator=generator)[:n]
        else:
            idx = torch.randint(0, m, (n,), generator=generator)
        offset = 0 if split == "train" else len(self._train_tasks)
        return (idx + offset).to(torch.get_default_dtype()).unsqueeze(1)

    def describe_task(self, task: Tensor) -> str:
        env_name, split, j = self.task_info(task)
        return f"{env_name} {split} task #{j}"

    # ------------------------------------------------------------------ GymBatchEnv
    def _pool_key(self, task_row: np.ndarray) -> Hashable:
        return self._all_tasks[self._task_index(float(task_row[0]))].env_name

    def _make_single(self, key: Hashable) -> Any:
        env = _fast_class(self._classes[key])()
        env.max_path_length = self.horizon  # Meta-World raises past max_path_length (500)
        return env

    def _set_task(self, env: Any, task_row: np.ndarray) -> None:
        env.set_task(self._all_tasks[self._task_index(float(task_row[0]))])

    def _reset_single(self, k: int, env: Any, seed: int) -> None:
        env.seed(seed)  # Meta-World's reset ignores its seed argument
        obs, _ = env.reset()
        self._obs[k] = obs

    def _terminated(self, env: Any, terminated: bool, info: Mapping[str, Any]) -> bool:
        return terminated or (self.terminate_on_success and self._success(info))


def _valid_ml1_names() -> list[str]:
    import metaworld

    return sorted(metaworld.ML1.ENV_NAMES)


class MetaWorldML1(_MetaWorldBase):
    """Meta-World ML1 (Yu et al. 2019): one manipulation environment, 50 train and 50 test goals.

    ``env_name`` is a lower-case Meta-World v3 name (``"reach-v3"``, ``"push-v3"``,
    ``"pick-place-v3"``, ...). Train and test goals come from ``metaworld.ML1(env_name,
    seed=benchmark_seed)`` (the test goals are drawn with ``seed + 1``, so they differ).
    Reward: Meta-World v3's shaped reward in ``[0, 10]``; success: ``info["success"] > 0``.
    Observation: 39 (hand, gripper, objects, previous frame, goal zeroed); action: 4 in
    ``[-1, 1]``. Horizon 150 (Gao & Sener 2020), settable.
    """

    name = "metaworld-ml1"

    def __init__(
        self,
        env_name: str = "reach-v3",
        *,
        horizon: int = 150,
        benchmark_seed: int = 0,
        terminate_on_success: bool = False,
    ) -> None:
        valid = _valid_ml1_names()
        name = str(env_name).strip().lower()
        if name not in valid:
            raise ValueError(
                f"metaworld-ml1: unknown Meta-World environment {env_name!r}; valid names: {', '.join(valid)}."
            )
        self.env_name = name
        super().__init__(horizon=horizon, benchmark_seed=benchmark_seed, terminate_on_success=terminate_on_success)

    def _build_benchmark(self) -> Any:
        import metaworld

        return metaworld.ML1(self.env_name, seed=self.benchmark_seed)


class MetaWorldML10(_MetaWorldBase):
    """Meta-World ML10 (Yu et al. 2019): 10 train environments, 5 held-out test environments.

    Tasks: 50 goals per environment from ``metaworld.ML10(seed=benchmark_seed)``
    (500 train tasks, 250 test tasks); a task row's index also selects the environment
    class. Reward, success, observation (39), action (4) as :class:`MetaWorldML1`.
    Horizon 150 (Gao & Sener 2020), settable. Building the benchmark (on first use)
    takes several seconds: it resets every class 50 times to generate goals.
    """

    name = "metaworld-ml10"

    def __init__(self, *, horizon: int = 150, benchmark_seed: int = 0, terminate_on_success: bool = False) -> None:
        super().__init__(horizon=horizon, benchmark_seed=benchmark_seed, terminate_on_success=terminate_on_success)

    def _build_benchmark(self) -> Any:
        import metaworld

        return metaworld.ML10(seed=self.benchmark_seed)
