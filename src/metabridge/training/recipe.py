"""The few-shot training recipe: seeds, the outer optimizer, the learning-rate schedule, the
score that validation and early stopping follow, and the named recipes.

The plateau schedule and early stopping follow Wang et al.'s official MTL code (GitHub
AI-secure/multi-task-learning at 81ea1f5: ``lightning_episodic_module.py:418-423``,
``ReduceLROnPlateau(optimizer, mode='max', factor=0.1, patience=4)`` monitoring the
validation accuracy once per epoch; ``train.py:176-177``, PyTorch Lightning's
``EarlyStopping(monitor='valid_accuracy', min_delta=0.0, patience=15, mode='max')``),
with one validation standing for their epoch.

Named recipes (:data:`RECIPES`, :func:`get_recipe`) are sets of settings that reproduce a
paper's training procedure. ``official`` is Wang, Zhao & Li's MTL code (GitHub
AI-secure/multi-task-learning at 81ea1f5), part by part:

* head initialisation ``kaiming_uniform_(a=sqrt(5))`` times sqrt(n_train_classes / n_way)
  (``lightning_mtl.py:119-122``): MTL ``head_init="official"``;
* one task per body forward, gradients averaged over the meta-batch (Lightning's
  ``accumulate_grad_batches``, ``train.py:201``): MTL ``train_forward="per_task"``;
* ``ReduceLROnPlateau(mode="max", factor=0.1, patience=4)`` on validation accuracy and
  early stopping with patience 15 (``lightning_episodic_module.py:417-423``,
  ``train.py:176-177``): ``lr_schedule="plateau"``, ``early_stopping_patience=15``;
* the dataset's augmentation preset (random crop with padding, colour jitter 0.4 and
  horizontal flip on the colour sets; crop only on characters) (``train.py:94-98``):
  ``augment="auto"``;
* their ResNet-12 (dropout 0.1 in blocks 1-2, DropBlock in 3-4 with a ramped rate,
  kaiming-normal init; ``models/resnet.py``): ``model_kwargs={"variant": "official"}``.

The schedule, early stopping and augmentation apply to every method of a comparison
(so it stays fair); the MTL parts only to MTL; the ResNet-12 variant only to ResNet-12.
Each part is also its own switch (``metabridge compare --help``).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    from ..config import ExperimentConfig

__all__ = [
    "RECIPES",
    "Metric",
    "Recipe",
    "build_optimizer",
    "build_scheduler",
    "get_recipe",
    "higher_is_better",
    "seed_everything",
    "set_deterministic",
    "task_metric",
]


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python's ``random`` and NumPy's global RNG."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def set_deterministic(enabled: bool) -> None:
    """Ask torch for deterministic kernels (needed for bit-exact GPU runs)."""
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def build_optimizer(config: ExperimentConfig, params: Any) -> torch.optim.Optimizer:
    """The outer optimizer named by ``config.optimizer``."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError(f"algorithm {config.algorithm!r} has no trainable parameters; nothing to optimize.")
    name, lr, wd = config.optimizer, config.lr, config.weight_decay
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "radam":
        return torch.optim.RAdam(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}.")


Metric = Literal["accuracy", "mse"]

#: The fraction of ``steps`` after which ``lr_schedule="step"`` cuts the rate.
STEP_DECAY_AT = 0.8


def build_scheduler(
    config: ExperimentConfig, optimizer: torch.optim.Optimizer, metric: Metric = "accuracy"
) -> Any | None:
    """The learning-rate scheduler of ``config.lr_schedule`` (``None`` for a constant rate).

    ``cosine`` and ``step`` are stepped after every optimizer step (``step``: the rate is
    multiplied by ``plateau_factor`` once, after :data:`STEP_DECAY_AT` of ``steps``: the
    official recipe's x0.1 cut, placed at a fixed point of a step budget instead of at a
    validation plateau that a short budget may never reach); ``plateau`` is torch's
    ``ReduceLROnPlateau``, stepped with the score of every validation (mode ``max`` for
    accuracy, ``min`` for MSE), as the official MTL code does once per epoch
    (AI-secure/multi-task-learning ``lightning_episodic_module.py:418-423``; torch's
    default relative threshold 1e-4, no cooldown, no minimum rate).
    """
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    if config.lr_schedule == "step":
        milestone = max(1, round(STEP_DECAY_AT * config.steps))
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[milestone], gamma=config.plateau_factor)
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max" if higher_is_better(metric) else "min",
            factor=config.plateau_factor,
            patience=config.plateau_patience,
        )
    return None


def task_metric(source: Any) -> Metric:
    """The score a task source is judged by, derived from its data, never from its name:
    ``"accuracy"`` (higher is better) for integer class labels, ``"mse"`` (lower is
    better) for real-valued targets. A source may declare it as a ``metric`` attribute;
    otherwise one fixed episode is drawn (its own seed: no training RNG is touched)."""
    declared = getattr(source, "metric", None)
    if declared is not None:
        if declared not in ("accuracy", "mse"):
            raise ValueError(f"a task source's metric must be 'accuracy' or 'mse' (got {declared!r}).")
        return declared
    batch = next(iter(source.fixed_episodes(1, 0, 1)))
    return "accuracy" if batch.query_y.dtype == torch.long else "mse"


def higher_is_better(metric: Metric) -> bool:
    """Accuracy: higher is better; MSE: lower is better."""
    return metric == "accuracy"


# ----------------------------------------------------------------- named recipes
@dataclass(frozen=True)
class Recipe:
    """Settings of one recipe: config fields for every method, hyperparameters per
    algorithm, backbone arguments per backbone."""

    config: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "default": Recipe(),
    "official": Recipe(
        config={
            "lr_schedule": "plateau",
            "plateau_factor": 0.1,
            "plateau_patience": 4,
            "early_stopping_patience": 15,
            "augment": "auto",
        },
        hparams={"mtl": {"head_init": "official", "train_forward": "per_task"}},
        model_kwargs={"resnet12": {"variant": "official"}},
    ),
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a clear error listing the known ones otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}.")
    return RECIPES[name]
