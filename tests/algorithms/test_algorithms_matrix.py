"""Every registered algorithm x {mlp, conv4}: built by the registry, one training step, one evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from metabridge.algorithms import ProtoNet
from metabridge.algorithms.registry import ALGORITHMS, build_algorithm
from metabridge.data.class_dataset import ClassDataset
from metabridge.evaluate import evaluate
from metabridge.tasks.episodes import EpisodeSampler
from metabridge.tasks.sinusoid import SinusoidFamily

#: the algorithms registered when this module is imported (the built-in ones)
#: every algorithm metabridge registers (not toys other test modules register, whose import
#: order would otherwise decide what this parametrisation holds)
NAMES = tuple(n for n, cls in ALGORITHMS.items() if cls.__module__.startswith("metabridge."))
#: methods whose heads only classify
CLASSIFICATION_ONLY = {"protonet", "metaoptnet"}
N_WAY, K_SHOT, Q_QUERY, SIDE, CLASSES, TASKS = 3, 2, 2, 16, 6, 4


def _images() -> ClassDataset:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(CLASSES).repeat_interleave(6)
    level = torch.linspace(0.1, 0.9, CLASSES)[labels].view(-1, 1, 1, 1)
    pixels = 255 * (0.5 * level + 0.5 * torch.rand(len(labels), 1, SIDE, SIDE, generator=g))
    return ClassDataset(pixels.to(torch.uint8), labels, [f"c{i}" for i in range(CLASSES)], name="toy")


DATA = _images()
#: conv4 sees images; mlp sees the same images flattened to vectors
SAMPLERS = {
    "conv4": EpisodeSampler(DATA, N_WAY, K_SHOT, Q_QUERY),
    "mlp": EpisodeSampler(DATA, N_WAY, K_SHOT, Q_QUERY, transform=lambda x: x.flatten(2)),
}
MODEL_ARGS = {
    "conv4": dict(in_channels=1, image_size=SIDE, model_kwargs={"hidden": 8}),
    "mlp": dict(in_channels=SIDE * SIDE, model_kwargs={"hidden": (16,)}),
}


def _params(algo: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in algo.parameters()]


def _train_step(algo: nn.Module, batch) -> float:
    algo.train()
    before = _params(algo)
    opt = torch.optim.Adam([p for p in algo.parameters() if p.requires_grad], lr=1e-2)
    loss = algo.meta_loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss), loss
    opt.zero_grad()
    loss.backward()
    opt.step()
    changed = [not torch.equal(a, b) for a, b in zip(before, _params(algo))]
    assert any(changed), "the optimizer step changed no parameter"
    return loss.item()


@pytest.mark.parametrize("model", ["mlp", "conv4"])
@pytest.mark.parametrize("name", NAMES)
def test_every_algorithm_builds_trains_and_evaluates_on_classification(name, model):
    torch.manual_seed(0)
    algo = build_algorithm(name, model=model, out_dim=N_WAY, num_train_classes=CLASSES, **MODEL_ARGS[model])
    sampler = SAMPLERS[model]
    _train_step(algo, sampler.sample(TASKS, torch.Generator().manual_seed(1)))
    result = evaluate(algo, sampler.fixed_episodes(TASKS, seed=2, batch_size=TASKS))
    assert result.n == TASKS
    assert 0.0 <= result.mean <= 1.0 and math.isfinite(result.ci95)
    assert algo.training  # evaluation restores the mode


@pytest.mark.parametrize("name", [n for n in NAMES if n not in CLASSIFICATION_ONLY])
def test_every_regression_capable_algorithm_builds_trains_and_evaluates_on_sinusoids(name):
    torch.manual_seed(0)
    pool = SinusoidFamily(num_tasks=10)
    algo = build_algorithm(
        name, model="mlp", out_dim=1, in_channels=1, num_train_tasks=10, model_kwargs={"hidden": (16, 16)}
    )
    _train_step(algo, pool.sample(TASKS, 5, 5, torch.Generator().manual_seed(1)))
    test = SinusoidFamily().sample(TASKS, 5, 5, torch.Generator().manual_seed(2))
    result = evaluate(algo, [test])
    assert result.n == TASKS and math.isfinite(result.mean) and result.mean >= 0.0


@pytest.mark.parametrize("name", sorted(CLASSIFICATION_ONLY))
def test_classification_only_algorithms_refuse_regression_tasks_clearly(name):
    algo = build_algorithm(
        name, model="mlp", out_dim=1, in_channels=1, num_train_classes=CLASSES, model_kwargs={"hidden": (4,)}
    )
    test = SinusoidFamily().sample(2, 5, 5, torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match="N-way|n_way|classification"):
        evaluate(algo, [test])


def test_protonet_refuses_an_unknown_metric_when_built():
    with pytest.raises(ValueError, match="'euclidean' or 'cosine'"):
        ProtoNet(nn.Identity(), metric="cosin")
    with pytest.raises(ValueError, match="scale"):
        ProtoNet(nn.Identity(), scale=0.0)
    with pytest.raises(ValueError, match="'euclidean' or 'cosine'"):
        build_algorithm("protonet", model="mlp", out_dim=N_WAY, in_channels=4, metric="cosin")
