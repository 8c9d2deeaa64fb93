"""Turn an :class:`~metabridge.config.ExperimentConfig` into runnable parts.

``build_experiment(config)`` returns the algorithm (built through
``metabridge.algorithms.registry.build_algorithm``) and three task sources: training
tasks drawn from a caller-owned generator, and validation / test episodes fixed by
their own seeds. A *task source* is anything with

* ``sample(num_tasks, generator) -> TaskBatch`` and
* ``fixed_episodes(num_episodes, seed, batch_size) -> Iterator[TaskBatch]``

which :class:`~metabridge.tasks.episodes.EpisodeSampler` already is; sinusoid
regression is wrapped in :class:`RegressionSource` to look the same.

A run directory keeps its config (``config.json``); :func:`resume_config` reads it back
with the settings a resume may change (:data:`RESUMABLE_OVERRIDES`), and
:func:`check_resume_compatible` refuses a change that would break an exact resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from .algorithms.base import MetaAlgorithm
from .checkpoint import CheckpointManager
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
    k_shot: int
    q_query: int

    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        return self.family.sample(num_tasks, self.k_shot, self.q_query, generator)

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
    #: how to rebuild ``algorithm`` without the data (:func:`algorithm_record`)
    record: dict[str, Any] | None = None


def load_split(config: ExperimentConfig, split: str) -> Any:
    """Split ``split`` (train / val / test) of the dataset ``config.task`` names (a name or a path)."""
    from .data.registry import load_dataset

    kw = {} if config.image_size is None else {"image_size": config.image_size}
    try:
        return load_dataset(config.task, config.data_root, split, download=config.download, **kw)
    except FileNotFoundError as exc:
        if config.download:
            raise
        raise FileNotFoundError(
            f"{exc} (metabridge train: pass --download, or --data-root DIR where the files are)"
        ) from exc


def dataset_name(config: ExperimentConfig) -> str | None:
    """The registered name of ``config.task`` (as :func:`metabridge.data.registry.load_dataset`
    resolves it: a name wins over a folder), or ``None`` for the path of one's own images."""
    from .data.registry import ALIASES, available_datasets

    key = config.task.lower()
    return config.task if ALIASES.get(key, key) in available_datasets() else None


def training_augment(config: ExperimentConfig, dataset: Any) -> Any | None:
    """The :class:`~metabridge.data.augment.Augment` of ``config.augment`` for the loaded training
    ``dataset`` (``None``: off); ``"auto"`` picks by dataset name, else by channel count
    (:func:`metabridge.data.augment.resolve_augment`)."""
    if config.augment is None:
        return None
    from .data.augment import resolve_augment

    images = dataset.images
    return resolve_augment(
        config.augment, dataset_name(config), channels=int(images.shape[1]), image_size=int(images.shape[-1])
    )


#: Largest share of the device's free memory one split's pixels may take on the device
#: (:func:`data_device`); the rest is left to the model, its activations and the optimizer.
DATA_ON_DEVICE_FRACTION = 0.25


def data_device(
    config: ExperimentConfig, dataset: Any, device: torch.device | str | None = None
) -> torch.device | None:
    """The device a split's pixels are kept on, or ``None`` for the host.

    When the run's device (``device``, else ``config.device`` as
    :func:`~metabridge.device.resolve_device` resolves it) is a CUDA device, the uint8
    dataset is copied there once and episodes are gathered on the GPU, so a training step
    sends no images over the bus and waits for no copy (:class:`EpisodeSampler`'s ``device``).
    It stays on the host when it would take more than :data:`DATA_ON_DEVICE_FRACTION` of the
    device's free memory (tiered-ImageNet's training split is ~9.5 GB at 84 px), when the
    environment sets ``METABRIDGE_DATA_ON_DEVICE=0``, and for every other device (CPU, MPS:
    host memory already); its batches are then pinned and copied asynchronously
    (:meth:`TaskBatch.to`). An unusable device is left for the trainer to report.
    """
    if os.environ.get("METABRIDGE_DATA_ON_DEVICE", "1") == "0":
        return None
    spec = device if device is not None else config.device
    if str(spec) != "auto" and not str(spec).startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        return None
    from .device import resolve_device

    try:
        dev = resolve_device(spec)
    except ValueError:
        return None
    if dev.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(dev)
    return dev if dataset.nbytes <= DATA_ON_DEVICE_FRACTION * free else None


def build_task_source(config: ExperimentConfig, split: str, device: torch.device | str | None = None) -> TaskSource:
    """The task source of one split (only that split's data is loaded).

    Only the training split is augmented (``config.augment``); validation and test
    episodes are the images as loaded. ``device`` (default: ``config.device``) is where
    the episodes will be used: on CUDA the split's pixels are kept there when they fit
    (:func:`data_device`)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test (got {split!r}).")
    k = config.k_shot if split == "train" else config.resolved_eval_k_shot
    if config.is_regression:
        family = SinusoidFamily(num_tasks=config.num_train_tasks) if split == "train" else SinusoidFamily()
        return RegressionSource(family, k, config.q_query)
    from .tasks.episodes import EpisodeSampler

    dataset = load_split(config, split)
    augment = training_augment(config, dataset) if split == "train" else None
    return EpisodeSampler(
        dataset, config.n_way, k, config.q_query, augment=augment, device=data_device(config, dataset, device)
    )


def data_info(config: ExperimentConfig, train: TaskSource) -> dict[str, Any]:
    """What the algorithm factory needs to know about the data (output size, input
    channels, image size, number of training classes / tasks), from the training source."""
    if config.is_regression:
        info: dict[str, Any] = {"out_dim": 1, "in_channels": 1}
        if config.num_train_tasks is not None:
            info["num_train_tasks"] = config.num_train_tasks
        return info
    dataset = train.dataset  # type: ignore[attr-defined]
    images = dataset.images
    return {
        "out_dim": config.n_way,
        "in_channels": int(images.shape[1]),
        "image_size": int(images.shape[-1]),
        "num_train_classes": int(dataset.num_classes),
    }


def build_task_sources(config: ExperimentConfig) -> tuple[TaskSource, TaskSource, TaskSource, dict[str, Any]]:
    """``(train, val, test, data_info)`` for ``config``'s task family."""
    train, val, test = (build_task_source(config, s) for s in ("train", "val", "test"))
    return train, val, test, data_info(config, train)


def algorithm_record(config: ExperimentConfig, info: dict[str, Any]) -> dict[str, Any]:
    """Everything :func:`build_algorithm` needs, as plain JSON: stored in checkpoints so an
    algorithm is rebuilt (``metabridge eval``, :func:`metabridge.load_pretrained`) without
    reading any training data."""
    overlap = sorted(set(config.hparams) & (set(info) | {"model", "model_kwargs"}))
    if overlap:
        raise ValueError(
            f"hyperparameter(s) {', '.join(overlap)} are set from the data and the --model option; "
            "remove them from --hp / hparams."
        )
    return {
        "algorithm": config.algorithm,
        "model": config.resolved_model,
        "model_kwargs": dict(config.model_kwargs),
        "data": dict(info),
        "hparams": dict(config.hparams),
        "plugins": list(config.plugins),
    }


def build_from_record(record: dict[str, Any]) -> MetaAlgorithm:
    """Rebuild the (untrained) algorithm an :func:`algorithm_record` describes."""
    from .algorithms.registry import build_algorithm
    from .config import load_plugins

    try:
        name, model, data, hparams = record["algorithm"], record["model"], record["data"], record["hparams"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an algorithm record (missing {exc}); it must come from algorithm_record().") from None
    load_plugins(record.get("plugins", []))
    return build_algorithm(name, model=model, model_kwargs=record.get("model_kwargs") or None, **data, **hparams)


def build_experiment(config: ExperimentConfig) -> Experiment:
    """Validate ``config`` and build its algorithm and task sources.

    The algorithm's initial weights come from torch's global RNG: seed it first
    (:class:`~metabridge.train.Trainer` does) for a reproducible initialisation.
    """
    config.validate()
    train, val, test, info = build_task_sources(config)
    record = algorithm_record(config, info)
    return Experiment(config, build_from_record(record), train, val, test, record)


# ----------------------------------------------------------------------- resume
CONFIG_FILE = "config.json"
#: Config fields that may change when a run is resumed without breaking exactness.
RESUMABLE_OVERRIDES = frozenset(
    {
        "steps",
        "device",
        "out_dir",
        "log_every",
        "eval_every",
        "checkpoint_every",
        "val_episodes",
        "test_episodes",
        "eval_batch_size",
        "download",
        "data_root",
        "early_stopping_patience",
    }
)
#: Of those, the ones that change the validation scores' timing or values: fixed when
#: validation steers training (plateau schedule, early stopping).
VALIDATION_FIELDS = ("eval_every", "val_episodes", "eval_batch_size")


def check_resume_compatible(saved: ExperimentConfig, config: ExperimentConfig) -> None:
    """Raise ``ValueError`` if ``config`` changes a field that would break an exact resume."""
    a, b = json.loads(saved.to_json()), json.loads(config.to_json())  # tuples and lists compare alike
    diff = sorted(k for k in a if k not in RESUMABLE_OVERRIDES and a[k] != b.get(k))
    if not diff and saved.lr_schedule in ("cosine", "step") and saved.steps != config.steps:
        raise ValueError(
            f"the run's {saved.lr_schedule} learning-rate schedule spans --steps {saved.steps}; it cannot be "
            "resumed with a different --steps (start a new run with the longer schedule instead)."
        )
    steered = (
        saved.lr_schedule == "plateau"
        or saved.early_stopping_patience is not None
        or config.early_stopping_patience is not None
    )
    moved = [k for k in VALIDATION_FIELDS if a[k] != b.get(k)]
    if not diff and steered and moved:
        detail = ", ".join(f"{k}: {a[k]!r} -> {b.get(k)!r}" for k in moved)
        raise ValueError(
            f"this run's validation scores steer its training (plateau schedule / early stopping), so {detail} "
            "would change what it does after the checkpoint; resume with the run's own values "
            f"({CONFIG_FILE} in its directory) or start a new run in another --out directory."
        )
    if diff:
        detail = ", ".join(f"{k}: {a[k]!r} -> {b.get(k)!r}" for k in diff)
        raise ValueError(
            f"cannot resume with a different config ({detail}); resume with the run's own config "
            f"({CONFIG_FILE} in its directory) or start a new run in another --out directory."
        )


def resume_config(run_dir: str | os.PathLike, **overrides: Any) -> ExperimentConfig:
    """The config a run in ``run_dir`` was started with, with allowed ``overrides`` applied."""
    bad = sorted(set(overrides) - RESUMABLE_OVERRIDES)
    if bad:
        raise ValueError(
            f"{', '.join(bad)} cannot change when resuming (only {', '.join(sorted(RESUMABLE_OVERRIDES))} can); "
            "start a new run in another --out directory instead."
        )
    path = Path(run_dir) / CONFIG_FILE
    if path.is_file():
        config = ExperimentConfig.load(path)
    else:
        ckpt, _ = CheckpointManager(run_dir).load_latest()
        config = ExperimentConfig.from_dict(ckpt["config"])
    data = config.to_dict()
    data.update(overrides)
    data["out_dir"] = str(run_dir)
    return ExperimentConfig.from_dict(data)
