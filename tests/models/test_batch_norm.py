"""Batch norm never mixes tasks at evaluation: scores do not depend on the evaluation batch size.

Every registered algorithm, built by the registry (its own batch-norm convention, and
the opposite one) and built directly on a default ``Conv4Backbone()`` (batch norm
without running statistics), scores the same episodes identically whether they are
evaluated one at a time or all in one batch.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metabridge.algorithms import DRS, MAML, MTL, MetaOptNet, ProtoNet, per_task_score
from metabridge.algorithms.embedding import uses_batch_statistics
from metabridge.algorithms.registry import ALGORITHMS, build_algorithm
from metabridge.data.class_dataset import ClassDataset
from metabridge.evaluate import episode_scores
from metabridge.models import Conv4, Conv4Backbone
from metabridge.tasks.episodes import EpisodeSampler

N_WAY, K_SHOT, Q_QUERY, SIDE, WIDTH, CLASSES, EPISODES = 3, 2, 3, 16, 8, 8, 4
#: fewer test-time steps than the defaults, to keep the one-episode-at-a-time pass fast
FAST = {"drs": {"finetune_steps": 2}, "reptile": {"inner_steps": 2}}
#: the algorithms registered when this module is imported (the built-in ones)
#: every algorithm metabridge registers (not toys other test modules register, whose import
#: order would otherwise decide what this parametrisation holds)
NAMES = tuple(n for n, cls in ALGORITHMS.items() if cls.__module__.startswith("metabridge."))


def _sampler() -> EpisodeSampler:
    """Episodes whose classes differ in brightness, so each task has its own batch statistics."""
    g = torch.Generator().manual_seed(0)
    per_class = 10
    labels = torch.arange(CLASSES).repeat_interleave(per_class)
    brightness = torch.rand(CLASSES, generator=g)[labels].view(-1, 1, 1, 1)
    pixels = 255 * (0.6 * brightness + 0.4 * torch.rand(len(labels), 1, SIDE, SIDE, generator=g))
    data = ClassDataset(pixels.to(torch.uint8), labels, [f"c{i}" for i in range(CLASSES)], name="toy")
    return EpisodeSampler(data, N_WAY, K_SHOT, Q_QUERY)


SAMPLER = _sampler()


def _random_running_statistics(module: nn.Module) -> None:
    """Non-trivial running statistics (fresh ones are mean 0, variance 1), set without training."""
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


def _predictions(algo: nn.Module, batch_size: int) -> torch.Tensor:
    algo.eval()
    with torch.no_grad():
        return torch.cat([algo.predict(b) for b in SAMPLER.fixed_episodes(EPISODES, seed=1, batch_size=batch_size)])


def _assert_batch_size_invariant(algo: nn.Module) -> None:
    _random_running_statistics(algo)
    one = _predictions(algo, 1)  # [EPISODES, Q, N] logits, one episode per batch
    # the logits themselves, not only the accuracies (which a small change need not move)
    torch.testing.assert_close(one, _predictions(algo, EPISODES), rtol=1e-4, atol=1e-5)
    full = episode_scores(algo, SAMPLER.fixed_episodes(EPISODES, seed=1, batch_size=EPISODES))
    labels = torch.cat([b.query_y for b in SAMPLER.fixed_episodes(EPISODES, seed=1)])
    assert full.shape == (EPISODES,)
    assert torch.equal(full, per_task_score(one, labels).cpu()), (full, per_task_score(one, labels))


def test_the_episodes_are_ones_where_mixing_tasks_changes_batch_norm():
    """Sanity check of the fixture: a task embedded alone differs from the same task embedded with others."""
    torch.manual_seed(0)
    body = Conv4Backbone(1, WIDTH, SIDE).eval()  # no running statistics: normalizes with the batch at hand
    x = next(SAMPLER.fixed_episodes(EPISODES, seed=1, batch_size=EPISODES)).support_x
    alone = body(x[0])
    together = body(x.flatten(0, 1))[: x.shape[1]]
    assert (alone - together).abs().max() > 1e-2


def _build(name: str, **model_kwargs) -> nn.Module:
    torch.manual_seed(0)
    return build_algorithm(
        name,
        model="conv4",
        out_dim=N_WAY,
        in_channels=1,
        image_size=SIDE,
        num_train_classes=CLASSES,
        model_kwargs={"hidden": WIDTH, **model_kwargs},
        **FAST.get(name, {}),
    )


@pytest.mark.parametrize("config", ["registry-default", "flipped"])
@pytest.mark.parametrize("name", NAMES)
def test_registry_built_algorithms_score_episodes_independently_of_the_batch(name, config):
    """The registry's batch-norm convention for ``name`` (running statistics for the embedding
    methods, none for the MAML family), and the opposite one through ``model_kwargs``."""
    algo = _build(name)
    if config == "flipped":
        algo = _build(name, track_running_stats=uses_batch_statistics(algo))
    _assert_batch_size_invariant(algo)


def _direct(kind: str) -> nn.Module:
    torch.manual_seed(0)
    body = Conv4Backbone(1, WIDTH, SIDE)  # the default: batch norm without running statistics
    if kind == "protonet":
        return ProtoNet(body)
    if kind == "protonet-cosine":
        return ProtoNet(body, metric="cosine", scale=10.0)
    if kind == "metaoptnet-svm":
        return MetaOptNet(body)
    if kind == "metaoptnet-ridge":
        return MetaOptNet(body, head="ridge")
    if kind == "mtl":
        return MTL(body, body.feature_dim, CLASSES)
    if kind == "mtl-finetune":
        return MTL(body, body.feature_dim, CLASSES, finetune_steps=2, finetune_lr=0.1)
    if kind == "mtl-task-statistics":
        body = Conv4Backbone(1, WIDTH, SIDE, track_running_stats=True)
        return MTL(body, body.feature_dim, CLASSES, test_batch_norm="task")
    if kind == "maml":
        return MAML(Conv4(N_WAY, 1, WIDTH, SIDE))
    if kind == "drs":
        return DRS(Conv4(N_WAY, 1, WIDTH, SIDE), finetune_steps=2)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "protonet",
        "protonet-cosine",
        "metaoptnet-svm",
        "metaoptnet-ridge",
        "mtl",
        "mtl-finetune",
        "mtl-task-statistics",
        "maml",
        "drs",
    ],
)
def test_directly_built_algorithms_on_a_default_conv4_score_episodes_independently_of_the_batch(kind):
    _assert_batch_size_invariant(_direct(kind))


def test_per_task_statistics_also_in_training_for_bodies_without_running_statistics():
    """Training sees the normalization evaluation uses: a task's loss does not depend on its batch-mates."""
    torch.manual_seed(0)
    algo = ProtoNet(Conv4Backbone(1, WIDTH, SIDE)).train()
    batch = next(SAMPLER.fixed_episodes(EPISODES, seed=2, batch_size=EPISODES))
    first = next(SAMPLER.fixed_episodes(EPISODES, seed=2, batch_size=1))
    torch.testing.assert_close(algo.predict(batch)[:1], algo.predict(first), rtol=1e-4, atol=1e-5)
