"""``ExperimentConfig``: everything that defines one training run, as plain JSON.

A run is fully described by this dataclass: the task family (``sinusoid`` or a
dataset name with its episode shape), the algorithm and its hyperparameters, the
backbone, the optimizer, the step budget, evaluation and checkpoint intervals, the
seeds, the device and the output directory. It round-trips through JSON, is stored
in every checkpoint and as ``config.json`` in the run directory, so a run can be
resumed or re-evaluated from its directory alone.

``build_experiment`` (in :mod:`metabridge.experiment`) turns a config into the
algorithm and its train/val/test task sources; it is re-exported here lazily.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .experiment import Experiment

#: Task family names handled without a dataset loader.
REGRESSION_FAMILIES = ("sinusoid",)
OPTIMIZERS = ("adam", "adamw", "radam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


@dataclass
class ExperimentConfig:
    """A complete, JSON-serializable description of one training run.

    Task:
        task: ``"sinusoid"`` (Finn et al. 2017 regression) or a dataset name known to
            ``metabridge.data.registry.load_dataset`` (e.g. ``"omniglot"``, ``"glyphs"``).
        data_root: directory holding datasets (ignored for ``sinusoid``).
        download: let dataset loaders download missing files.
        n_way: classes per episode (classification only).
        k_shot: support examples per class (classification) or support points per
            task (sinusoid) during training.
        q_query: query examples per class (classification) or query points per task.
        eval_k_shot: support size for validation/test episodes; ``None`` = ``k_shot``
            (Finn et al. train sinusoid with K=10 and test with K=5).
        num_train_tasks: sinusoid only: draw training tasks from a fixed pool of this
            many (needed by MTL's one-head-per-task); ``None`` = fresh tasks.
        image_size: side length images are loaded at (datasets only); ``None`` = the
            dataset's standard size (28 for Omniglot, 84 for mini-ImageNet, ...).
    Method:
        algorithm: a name in ``metabridge.algorithms.registry.ALGORITHMS``.
        hparams: keyword arguments for the algorithm (``inner_lr``, ``inner_steps``...).
        model: backbone (``mlp``, ``conv4``, ``resnet12``); ``None`` = ``mlp`` for
            regression, ``conv4`` for images.
    Optimization:
        optimizer, lr, weight_decay, momentum (SGD only), lr_schedule,
        grad_clip (max global gradient norm, ``None`` = off), meta_batch_size, steps,
        max_train_seconds (stop once this much time was spent in training steps, not
        counting validation and checkpoints; ``None`` = run all ``steps``).
    Evaluation and bookkeeping:
        eval_every (0 = never validate during training), eval_every_seconds (also
        validate each time this much more training time has passed; for accuracy
        against wall-clock curves), val_episodes, test_episodes,
        eval_batch_size, checkpoint_every (0 = only at the end), log_every,
        seed (initialisation and training tasks), val_seed / test_seed (fixed
        evaluation episodes, independent of ``seed`` so every method is scored on the
        same tasks), device (``auto``/``cpu``/``cuda``/``cuda:N``), deterministic
        (ask torch for deterministic kernels; needed for bit-exact resume on GPU),
        out_dir.
    """

    # task
    task: str = "sinusoid"
    data_root: str = "data"
    download: bool = False
    n_way: int = 5
    k_shot: int = 10
    q_query: int = 10
    eval_k_shot: int | None = None
    num_train_tasks: int | None = None
    image_size: int | None = None
    # method
    algorithm: str = "maml"
    hparams: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    # optimization
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    lr_schedule: str = "constant"
    grad_clip: float | None = None
    meta_batch_size: int = 25
    steps: int = 1000
    max_train_seconds: float | None = None
    # evaluation and bookkeeping
    eval_every: int = 500
    eval_every_seconds: float | None = None
    val_episodes: int = 600
    test_episodes: int = 600
    eval_batch_size: int = 50
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    val_seed: int = 1000
    test_seed: int = 2000
    device: str = "auto"
    deterministic: bool = False
    out_dir: str = "runs/default"

    # ------------------------------------------------------------------ checks
    @property
    def is_regression(self) -> bool:
        """True for regression task families (no classes, no ``n_way``)."""
        return self.task in REGRESSION_FAMILIES

    @property
    def resolved_model(self) -> str:
        """The backbone name, with the default filled in from the task family."""
        if self.model is not None:
            return self.model
        return "mlp" if self.is_regression else "conv4"

    @property
    def resolved_eval_k_shot(self) -> int:
        return self.k_shot if self.eval_k_shot is None else self.eval_k_shot

    def validate(self) -> "ExperimentConfig":
        """Raise ``ValueError`` naming the offending field and the fix; return ``self``."""

        def positive_int(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{name} must be an integer (got {v!r}).")
            if v < 0 or (v == 0 and not allow_zero):
                need = ">= 0" if allow_zero else ">= 1"
                raise ValueError(f"{name} must be {need} (got {v}); set {_flag(name)} to a positive value.")

        if not isinstance(self.task, str) or not self.task:
            raise ValueError("task must name a task family ('sinusoid') or a dataset (e.g. 'omniglot').")
        for name in ("k_shot", "q_query", "meta_batch_size", "steps", "val_episodes", "test_episodes",
                     "eval_batch_size", "log_every"):
            positive_int(name)
        for name in ("eval_every", "checkpoint_every"):
            positive_int(name, allow_zero=True)
        if not self.is_regression:
            positive_int("n_way")
            if self.n_way < 2:
                raise ValueError(f"n_way must be >= 2 for classification (got {self.n_way}); set --n-way.")
        if self.eval_k_shot is not None:
            positive_int("eval_k_shot")
        for name in ("num_train_tasks", "image_size"):
            if getattr(self, name) is not None:
                positive_int(name)
        for name in ("lr",):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0 or v != v or v == float("inf"):
                raise ValueError(f"lr must be a positive finite number (got {v!r}); pass e.g. --lr 1e-3.")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0 (got {self.weight_decay}).")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1) (got {self.momentum}).")
        for name in ("max_train_seconds", "eval_every_seconds"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"{name} must be > 0 seconds or None (got {v!r}).")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None to disable clipping (got {self.grad_clip}).")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}.")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' (got {self.device!r}).")
        if not isinstance(self.hparams, dict) or not all(isinstance(k, str) for k in self.hparams):
            raise ValueError(f"hparams must be a dict with string keys (got {self.hparams!r}).")
        for k, v in self.hparams.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k.endswith("lr") and not v > 0:
                raise ValueError(f"hyperparameter {k} must be > 0 (got {v}); pass e.g. --hp {k}=0.01.")
            if k.endswith("steps") and isinstance(v, int) and not isinstance(v, bool) and v < 0:
                raise ValueError(f"hyperparameter {k} must be >= 0 (got {v}).")
        return self

    # --------------------------------------------------------------- JSON I/O
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExperimentConfig":
        """Build from a dict; unknown keys are an error (a typo must not pass silently)."""
        if not isinstance(data, dict):
            raise ValueError(f"a config must be a JSON object (got {type(data).__name__}).")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown config field(s) {', '.join(unknown)}; valid fields are {', '.join(sorted(known))}."
            )
        return cls(**{k: (dict(v) if k == "hparams" else v) for k, v in data.items()})

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ExperimentConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as JSON (atomically: temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(self.to_json() + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ExperimentConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}; pass the path of a JSON file written by a run.")
        return cls.from_json(path.read_text())


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_experiment(config: ExperimentConfig) -> "Experiment":
    """Build the algorithm and task sources of ``config`` (see :mod:`metabridge.experiment`)."""
    from .experiment import build_experiment as _build

    return _build(config)
