"""Turn an :class:`~metabridge.config.ExperimentConfig` into runnable parts.

``build_experiment(config)`` returns the algorithm (built through
``metabridge.algorithms.registry.build_algorithm``) and three task sources: training
tasks drawn from a caller-owned generator, and validation / test episodes fixed by
their own seeds. A *task source* is anything with

* ``sample(num_tasks, generator) -> TaskBatch`` and
* ``fixed_episodes(num_episodes, seed, batch_size) -> Iterator[TaskBatch]``

which :class:`~metabridge.tasks.episodes.EpisodeSampler` already is; sinusoid
regression is wrapped in :class:`RegressionSource` to look the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from .algorithms.base import MetaAlgorithm
from .config import ExperimentConfig
from .tasks.batch import TaskBatch, batch_slices
from .tasks.sinusoid import SinusoidFamily


@runtime_checkable
class TaskSource(Protocol):
    """Where batches of tasks come from (training) and fixed episodes (evaluation)."""

    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch: ...

    def fixed_episodes(self, num_episodes: int, seed: int, batch_size: int = 32) -> Iterator[TaskBatch]: ...


@dataclass(frozen=True)
class RegressionSource:
    """A regression task family with a fixed support/query size, as a task source."""

    family: SinusoidFamily
    k_support: int
    k_query: int

    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        return self.family.sample(num_tasks, self.k_support, self.k_query, generator)

    def fixed_episodes(self, num_episodes: int, seed: int, batch_size: int = 32) -> Iterator[TaskBatch]:
        """The same ``num_episodes`` tasks for a given ``seed`` whatever ``batch_size``
        (all drawn at once, then cut into batches)."""
        parts = list(batch_slices(num_episodes, batch_size))  # checks the counts first
        tasks = self.sample(num_episodes, torch.Generator().manual_seed(seed))
        for part in parts:
            yield tasks[part]


@dataclass
class Experiment:
    """An algorithm plus its train / validation / test task sources."""

    config: ExperimentConfig
    algorithm: MetaAlgorithm
    train: TaskSource
    val: TaskSource
    test: TaskSource


def _load_split(config: ExperimentConfig, split: str) -> Any:
    try:
        from .data.registry import load_dataset
    except ImportError as exc:  # the data registry is written separately
        raise ValueError(
            f"task {config.task!r} needs the dataset registry (metabridge.data.registry), which could not be "
            f"imported ({exc}); use --task sinusoid or install the data extras."
        ) from exc
    kw = {} if config.image_size is None else {"image_size": config.image_size}
    try:
        return load_dataset(config.task, config.data_root, split, download=config.download, **kw)
    except FileNotFoundError as exc:
        if config.download:
            raise
        raise FileNotFoundError(
            f"{exc} (metabridge train: pass --download, or --data-root DIR where the files are)"
        ) from exc


def build_task_sources(config: ExperimentConfig) -> tuple[TaskSource, TaskSource, TaskSource, dict[str, Any]]:
    """``(train, val, test, algorithm_kwargs)`` for ``config``'s task family.

    ``algorithm_kwargs`` carries what the algorithm factory needs to know about the
    data (output size, input channels, image size, number of training classes/tasks).
    """
    k_eval = config.resolved_eval_k_shot
    if config.is_regression:
        train_family = SinusoidFamily(num_tasks=config.num_train_tasks)
        fresh = SinusoidFamily()
        train = RegressionSource(train_family, config.k_shot, config.q_query)
        val = RegressionSource(fresh, k_eval, config.q_query)
        test = RegressionSource(fresh, k_eval, config.q_query)
        kwargs: dict[str, Any] = {"out_dim": 1, "in_channels": 1}
        if config.num_train_tasks is not None:
            kwargs["num_train_tasks"] = config.num_train_tasks
        return train, val, test, kwargs

    from .tasks.episodes import EpisodeSampler

    splits = {s: _load_split(config, s) for s in ("train", "val", "test")}
    train = EpisodeSampler(splits["train"], config.n_way, config.k_shot, config.q_query)
    val = EpisodeSampler(splits["val"], config.n_way, k_eval, config.q_query)
    test = EpisodeSampler(splits["test"], config.n_way, k_eval, config.q_query)
    images = splits["train"].images
    kwargs = {
        "out_dim": config.n_way,
        "in_channels": int(images.shape[1]),
        "image_size": int(images.shape[-1]),
        "num_train_classes": splits["train"].num_classes,
    }
    return train, val, test, kwargs


def build_experiment(config: ExperimentConfig) -> Experiment:
    """Validate ``config`` and build its algorithm and task sources.

    The algorithm's initial weights come from torch's global RNG: seed it first
    (:class:`~metabridge.train.Trainer` does) for a reproducible initialisation.
    """
    config.validate()
    train, val, test, data_kwargs = build_task_sources(config)
    from .algorithms.registry import build_algorithm

    overlap = sorted(set(config.hparams) & (set(data_kwargs) | {"model"}))
    if overlap:
        raise ValueError(
            f"hyperparameter(s) {', '.join(overlap)} are set from the data and the --model option; "
            "remove them from --hp / hparams."
        )
    algorithm = build_algorithm(config.algorithm, model=config.resolved_model, **data_kwargs, **config.hparams)
    return Experiment(config, algorithm, train, val, test)
