"""evaluate(): per-episode scores, the 95% CI by hand, modes, devices and shape errors."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _metabridge_toys import ToyANIL
from metabridge.algorithms.base import MetaAlgorithm
from metabridge.config import ExperimentConfig
from metabridge.evaluate import DEFAULT_EVAL_EPISODES, episode_scores, evaluate
from metabridge.experiment import RegressionSource
from metabridge.tasks.batch import TaskBatch
from metabridge.tasks.sinusoid import SinusoidFamily


class Echo(MetaAlgorithm):
    """Predicts the class written in ``query_x[..., 0]`` (so tests choose each episode's accuracy)."""

    def __init__(self, n_way: int) -> None:
        super().__init__()
        self.n_way = n_way
        self.dummy = nn.Parameter(torch.zeros(()))

    def meta_loss(self, batch):  # pragma: no cover - not used
        return self.dummy

    def adapt(self, batch):
        return lambda x: F.one_hot(x[..., 0].long(), self.n_way).float() + self.dummy


def _episodes(correct: list[int], q: int = 4, n_way: int = 3, per_batch: int = 2) -> list[TaskBatch]:
    """Episodes whose query accuracy is ``correct[t] / q``."""
    out = []
    for start in range(0, len(correct), per_batch):
        chunk = correct[start:start + per_batch]
        t = len(chunk)
        y = torch.arange(q).remainder(n_way).repeat(t, 1)
        guess = y.clone()
        for i, c in enumerate(chunk):
            guess[i, c:] = (y[i, c:] + 1) % n_way  # the last q - c guesses are wrong
        x = guess.float().unsqueeze(-1)
        out.append(TaskBatch(x[:, :1], y[:, :1], x, y, n_way=n_way))
    return out


def test_accuracy_mean_and_ci_match_a_hand_computation():
    correct = [4, 3, 2, 4, 1, 4, 0]
    acc = [c / 4 for c in correct]
    result = evaluate(Echo(3), _episodes(correct), "cpu")
    mean = sum(acc) / len(acc)
    half = 1.96 * statistics.stdev(acc) / math.sqrt(len(acc))
    assert result.n == 7
    assert result.mean == pytest.approx(mean, abs=1e-12)
    assert result.ci95 == pytest.approx(half, abs=1e-12)


def test_mse_per_episode_then_mean():
    class Zero(MetaAlgorithm):
        def meta_loss(self, batch):  # pragma: no cover
            raise NotImplementedError

        def adapt(self, batch):
            return lambda x: torch.zeros_like(x)

    y = torch.tensor([[[1.0], [3.0]], [[2.0], [2.0]], [[0.0], [4.0]]])  # per-task MSE 5, 4, 8
    batch = TaskBatch(torch.zeros(3, 1, 1), torch.zeros(3, 1, 1), torch.zeros(3, 2, 1), y)
    result = evaluate(Zero(), [batch], "cpu")
    assert result.mean == pytest.approx(17 / 3)
    assert result.ci95 == pytest.approx(1.96 * statistics.stdev([5, 4, 8]) / math.sqrt(3))


def test_gradient_based_adapt_runs_and_modes_are_restored():
    torch.manual_seed(0)
    algo = ToyANIL(inner_lr=0.05)
    src = RegressionSource(SinusoidFamily(), 5, 10)
    with torch.no_grad():
        algo.head.weight.zero_()
        algo.head.bias.zero_()
    # with a zero head, one inner step must beat predicting zero: adaptation really happened
    scores = episode_scores(algo, src.fixed_episodes(40, seed=0, batch_size=16), "cpu")
    zero = torch.cat([(b.query_y ** 2).double().flatten(1).mean(1) for b in src.fixed_episodes(40, 0, 16)])
    assert scores.shape == (40,)
    assert scores.mean() < zero.mean()
    assert algo.training  # was in train mode before, and is again
    algo.eval()
    evaluate(algo, src.fixed_episodes(8, seed=0), "cpu")
    assert not algo.training
    assert all(p.grad is None for p in algo.parameters())  # evaluation leaves no gradients behind


def test_same_seed_same_score_different_seed_different_score():
    torch.manual_seed(0)
    algo = ToyANIL()
    src = RegressionSource(SinusoidFamily(), 5, 5)
    a = evaluate(algo, src.fixed_episodes(30, seed=7), "cpu")
    b = evaluate(algo, src.fixed_episodes(30, seed=7), "cpu")
    c = evaluate(algo, src.fixed_episodes(30, seed=8), "cpu")
    assert a == b and a != c


def test_default_protocol_is_at_least_600_episodes():
    assert DEFAULT_EVAL_EPISODES >= 600
    cfg = ExperimentConfig()
    assert cfg.val_episodes >= 600 and cfg.test_episodes >= 600


def test_mismatched_prediction_shapes_are_rejected():
    class Flat(MetaAlgorithm):
        def meta_loss(self, batch):  # pragma: no cover
            raise NotImplementedError

        def adapt(self, batch):
            return lambda x: x[..., 0]  # [T, Q] instead of [T, Q, 1]

    batch = TaskBatch(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), torch.zeros(2, 4, 1), torch.zeros(2, 4, 1))
    with pytest.raises(ValueError, match="shape"):
        evaluate(Flat(), [batch], "cpu")
    # a 5-logit model on 3-way episodes
    with pytest.raises(ValueError, match="out_dim=3"):
        evaluate(Echo(5), _episodes([1, 2], n_way=3), "cpu")
    with pytest.raises(ValueError, match="at least one episode"):
        evaluate(Echo(3), [], "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_evaluate_on_cuda_matches_cpu():
    torch.manual_seed(0)
    algo = ToyANIL()
    src = RegressionSource(SinusoidFamily(), 5, 5)
    cpu = evaluate(algo, src.fixed_episodes(64, seed=1), "cpu")
    gpu = evaluate(algo.to("cuda"), src.fixed_episodes(64, seed=1), "cuda")
    assert gpu.n == cpu.n
    assert gpu.mean == pytest.approx(cpu.mean, rel=1e-4)
