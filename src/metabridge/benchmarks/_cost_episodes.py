"""The configurations of ``metabridge bench cost``: methods, backbones, and each method's
training episode sizes from its paper (the table in :mod:`metabridge.benchmarks.cost`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_METHODS = ("mtl", "protonet", "metaoptnet", "maml-1", "maml-5", "fomaml-5")
DEFAULT_BACKBONES = ("conv4@28", "resnet12@32", "resnet12@84")
N_WAY = 5
TRAIN_CLASSES = 64
IMAGES_PER_CLASS = 30

LABELS = {"mtl": "MTL", "protonet": "ProtoNet", "metaoptnet": "MetaOptNet-SVM", "maml": "MAML", "fomaml": "FOMAML"}


@dataclass(frozen=True)
class Method:
    key: str  # as given: mtl, maml-5, ...
    algorithm: str  # registry name
    inner_steps: int | None  # MAML family only

    @property
    def label(self) -> str:
        base = LABELS[self.algorithm]
        return f"{base} ({self.inner_steps} step{'s' if self.inner_steps != 1 else ''})" if self.inner_steps else base


@dataclass(frozen=True)
class Backbone:
    model: str
    image_size: int
    channels: int

    @property
    def key(self) -> str:
        return f"{self.model}@{self.image_size}"

    @property
    def regime(self) -> str:
        """The benchmark whose image shape this is: Omniglot (<= 28 px), CIFAR-FS (<= 32 px),
        mini-ImageNet (larger)."""
        return "omniglot" if self.image_size <= 28 else "cifarfs" if self.image_size <= 32 else "miniimagenet"


def parse_method(item: str) -> Method:
    """``mtl``, ``protonet``, ``metaoptnet``, ``maml-K`` or ``fomaml-K`` -> a method (``ValueError``
    naming the valid forms otherwise)."""
    m = re.fullmatch(r"(maml|fomaml)-(\d+)", item)
    if m and int(m.group(2)) >= 1:
        return Method(item, m.group(1), int(m.group(2)))
    if item in ("mtl", "protonet", "metaoptnet"):
        return Method(item, item, None)
    raise ValueError(
        f"unknown method {item!r}; choose from mtl, protonet, metaoptnet, maml-K and fomaml-K "
        f"(K inner steps >= 1), e.g. {' '.join(DEFAULT_METHODS)}."
    )


def parse_backbone(item: str) -> Backbone:
    """``NAME@SIZE[xC]`` -> a backbone; C defaults to 1 at 28 px or less (Omniglot) and 3 above."""
    from ..models import MODELS

    m = re.fullmatch(r"([A-Za-z0-9_]+)@(\d+)(?:x(\d+))?", item)
    if not m or int(m.group(2)) < 1 or (m.group(3) is not None and int(m.group(3)) < 1):
        raise ValueError(f"backbones are NAME@SIZE[xCHANNELS], e.g. {' '.join(DEFAULT_BACKBONES)} (got {item!r}).")
    name, size = m.group(1), int(m.group(2))
    if name not in MODELS:
        raise ValueError(f"unknown backbone {name!r}; registered: {', '.join(sorted(MODELS))}.")
    if name == "conv4" and size < 16:
        raise ValueError(f"Conv-4 halves the image four times, so it needs at least 16 px (got {item!r}).")
    channels = int(m.group(3)) if m.group(3) else (1 if size <= 28 else 3)
    return Backbone(name, size, channels)


# ------------------------------------------------------------------ episode sizes
def episode(method: Method, backbone: Backbone, shot: int, mode: str) -> dict[str, Any]:
    """Training episode of ``method`` for a K-shot benchmark in ``backbone``'s regime.

    ``{"way", "shot", "query", "meta_batch", "source"}`` plus ``"paper_way"`` where the
    paper trains with more classes and ``"note"`` where a value is not the paper's own.
    """
    reg = backbone.regime
    if mode == "common":
        return {"way": N_WAY, "shot": shot, "query": 15, "meta_batch": 4, "source": "common choice (--episodes common)"}
    algo = method.algorithm
    if algo in ("maml", "fomaml"):
        return _maml_episode(algo, reg, shot)
    if algo == "protonet":
        return _protonet_episode(reg, shot, mode)
    if algo == "metaoptnet":
        return _metaoptnet_episode(reg)
    return _mtl_episode(reg, shot)


def _maml_episode(algo: str, reg: str, shot: int) -> dict[str, Any]:
    """Finn et al.'s episode sizes for MAML (``algo="maml"``) or first-order MAML (``"fomaml"``)."""
    if reg == "omniglot":
        ep = {
            "way": N_WAY,
            "shot": shot,
            "query": shot,
            "meta_batch": 32,
            "source": "Finn et al. 2017 Sec. 5.2 (Omniglot 5-way: meta-batch 32, 1 step, alpha 0.4); "
            "cbfinn/maml main.py: update_batch_size*2 images per class (query = K)",
        }
    else:
        ep = {
            "way": N_WAY,
            "shot": shot,
            "query": 15,
            "meta_batch": 4 if shot == 1 else 2,
            "source": "Finn et al. 2017 Sec. 5.2 (MiniImagenet: 5 steps, alpha 0.01, 15 queries per class, "
            "meta-batch 4 at 1-shot and 2 at 5-shot; main.py's usage line: 4 for both)",
        }
        if reg == "cifarfs":
            ep["note"] = "CIFAR-FS is not in Finn et al.: mini-ImageNet sizes"
    if algo == "fomaml" and reg == "omniglot":
        ep["note"] = "Finn et al. report first-order MAML on MiniImagenet only: Omniglot sizes of MAML"
    return ep


def _protonet_episode(reg: str, shot: int, mode: str) -> dict[str, Any]:
    """Snell et al.'s episode sizes (the paper's wider training way with ``mode="paper-way"``)."""
    query = 5 if reg == "omniglot" else 15
    paper_way = 60 if reg == "omniglot" else (30 if shot == 1 else 20)
    ep = {
        "way": paper_way if mode == "paper-way" else N_WAY,
        "shot": shot,
        "query": query,
        "meta_batch": 1,
        "paper_way": paper_way,
        "source": "Snell et al. 2017 Sec. 3.1-3.2; jakesnell/prototypical-networks run_train.py "
        "(one episode per update; Omniglot 60-way 5 queries, mini-ImageNet 30-/20-way 15 queries)",
    }
    if reg == "cifarfs":
        ep["note"] = "CIFAR-FS is not in Snell et al.: mini-ImageNet sizes"
    return ep


def _metaoptnet_episode(reg: str) -> dict[str, Any]:
    """Lee et al.'s MetaOptNet training episode (the same for every test shot)."""
    ep = {
        "way": N_WAY,
        "shot": 15,
        "query": 6,
        "meta_batch": 8,
        "source": "kjunelee/MetaOptNet train.py defaults (--episodes-per-batch 8, --train-query 6) and README "
        "(mini-ImageNet --train-shot 15, one embedding for every test shot)",
    }
    if reg != "miniimagenet":
        ep["note"] = (
            "not verified for CIFAR-FS; no Omniglot in Lee et al.: mini-ImageNet values"
            if reg == "cifarfs"
            else "no Omniglot in Lee et al.: mini-ImageNet values"
        )
    return ep


def _mtl_episode(reg: str, shot: int) -> dict[str, Any]:
    """Wang et al.'s MTL episode: train_shots + train_queries images per class, merged into one loss."""
    shots_q, batch = (5, 5), 6
    if reg == "miniimagenet" and shot == 5:
        batch = 2
    if reg == "cifarfs" and shot == 1:
        shots_q, batch = (5, 15), 2
    ep = {
        "way": N_WAY,
        "shot": shots_q[0],
        "query": shots_q[1],
        "meta_batch": batch,
        "source": "AI-secure/multi-task-learning train.py (--meta_batch_size 6), lightning_episodic_module.py "
        "(train_shots = train_queries = 5) and README commands (mini-ImageNet 5-shot: meta-batch 2; "
        "CIFAR-FS 1-shot: --train_queries 15 --meta_batch_size 2)",
    }
    if reg == "omniglot":
        ep["note"] = "no Omniglot in Wang et al.: their code's defaults"
    return ep


def inner_lr(backbone: Backbone) -> float:
    """Finn et al.'s alpha: 0.4 on Omniglot, 0.01 on MiniImagenet (it does not change the cost)."""
    return 0.4 if backbone.regime == "omniglot" else 0.01


def optimizer_for(algorithm: str, params: Any) -> Any:
    """Each paper's outer optimizer (module docstring)."""
    import torch

    if algorithm == "metaoptnet":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    if algorithm == "mtl":
        return torch.optim.RAdam(params, lr=1e-3)
    return torch.optim.Adam(params, lr=1e-3)


def configurations(methods: list[Method], backbones: list[Backbone], shots: list[int], mode: str) -> list[dict]:
    """One row per backbone x shot x method, with its episode sizes."""
    rows = []
    for bb in backbones:
        for k in shots:
            for m in methods:
                ep = episode(m, bb, k, mode)
                rows.append(
                    {
                        "backbone": bb.key,
                        "model": bb.model,
                        "image_size": bb.image_size,
                        "channels": bb.channels,
                        "regime": bb.regime,
                        "shots": k,
                        "method": m.key,
                        "label": m.label,
                        "algorithm": m.algorithm,
                        "inner_steps": m.inner_steps,
                        "inner_lr": inner_lr(bb) if m.inner_steps else None,
                        "episode": ep,
                        "images_per_step": ep["meta_batch"] * ep["way"] * (ep["shot"] + ep["query"]),
                    }
                )
    return rows
