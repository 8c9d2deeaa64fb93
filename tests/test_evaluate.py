"""evaluate(): per-episode scores, the 95% CI by hand, modes, devices and shape errors."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
import torch.nn.functional as F
from metabridge_toys import ToyANIL
from torch import nn

from metabridge.algorithms.base import MetaAlgorithm
from metabridge.evaluate import as_reported, episode_scores, evaluate
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
        chunk = correct[start : start + per_batch]
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
    zero = torch.cat([(b.query_y**2).double().flatten(1).mean(1) for b in src.fixed_episodes(40, 0, 16)])
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


def _binomial_episodes(correct: torch.Tensor, q: int, n_way: int = 3) -> TaskBatch:
    """One batch of episodes for :class:`Echo` whose query accuracies are ``correct / q``."""
    y = torch.arange(q).remainder(n_way).expand(len(correct), -1)
    wrong = torch.arange(q) >= correct.unsqueeze(1)
    guess = torch.where(wrong, (y + 1) % n_way, y)
    x = guess.float().unsqueeze(-1)
    return TaskBatch(x[:, :1], y[:, :1].clone(), x, y.clone(), n_way=n_way)


def test_the_95_percent_interval_covers_the_true_accuracy_95_percent_of_the_time():
    """What the 600-episode protocol relies on: over repeated evaluations of a model whose true
    accuracy is p, the reported interval mean +- ci95 contains p in ~95% of them, and it narrows
    as 1/sqrt(episodes) (so 600 episodes give half the width of 150)."""
    g = torch.Generator().manual_seed(0)
    p, q, echo = 0.6, 15, Echo(3)

    def evaluations(n: int, repeats: int) -> list:
        counts = torch.binomial(torch.full((repeats, n), float(q)), torch.full((repeats, n), p), generator=g)
        return [evaluate(echo, [_binomial_episodes(c.long(), q)], "cpu") for c in counts]

    wide, narrow = evaluations(150, 300), evaluations(600, 1000)
    assert all(r.n == 600 for r in narrow)
    coverage = sum(abs(r.mean - p) <= r.ci95 for r in narrow) / len(narrow)
    assert 0.925 <= coverage <= 0.975, coverage  # a 90% quantile (1.645) would give ~0.90
    ratio = statistics.mean(r.ci95 for r in wide) / statistics.mean(r.ci95 for r in narrow)
    assert ratio == pytest.approx(2.0, rel=0.03)
    # the half-width is about 1.96 binomial standard errors of one episode's accuracy
    assert statistics.mean(r.ci95 for r in narrow) == pytest.approx(1.96 * math.sqrt(p * (1 - p) / q / 600), rel=0.03)


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


def test_commands_report_accuracy_in_percent_and_mse_as_it_is():
    from metabridge.stats import MeanCI

    assert as_reported(MeanCI(0.625, 0.0125, 600), "accuracy") == MeanCI(62.5, 1.25, 600)
    assert as_reported(MeanCI(0.625, 0.0125, 600), "mse") == MeanCI(0.625, 0.0125, 600)
