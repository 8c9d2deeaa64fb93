"""Named training recipes: sets of settings that reproduce a paper's training procedure.

``official`` is Wang, Zhao & Li's MTL code (GitHub AI-secure/multi-task-learning at
81ea1f5), part by part:

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

from dataclasses import dataclass, field
from typing import Any


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
        config={"lr_schedule": "plateau", "plateau_factor": 0.1, "plateau_patience": 4,
                "early_stopping_patience": 15, "augment": "auto"},
        hparams={"mtl": {"head_init": "official", "train_forward": "per_task"}},
        model_kwargs={"resnet12": {"variant": "official"}},
    ),
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a clear error listing the known ones otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}.")
    return RECIPES[name]
