"""Negative-transfer diagnostics: Delta_m and mean rank, gradient conflict, TAG lookahead affinity,
task grouping and the PNG plots."""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metabridge.multitask import TaskSpec
from metabridge.multitask.diagnostics import (
    ALL_SHARED,
    MAX_EXHAUSTIVE_TASKS,
    AffinityAccumulator,
    GradientConflictTracker,
    delta_m,
    exhaustive_grouping,
    greedy_grouping,
    group_tasks,
    grouping_score,
    lookahead_affinity,
    mean_rank,
    plot_affinity,
    plot_gradient_conflict,
    plot_loss_trajectories,
    plot_weight_trajectories,
    relative_changes,
)
from metabridge.multitask.models import MultiTaskModel, TaskOutputs

# ---------------------------------------------------------------------------------------------- Delta_m


def test_relative_changes_and_delta_m_by_hand():
    # accuracy 0.90 vs 0.80 (higher better): 12.5 % better -> -12.5
    # MAE 1.10 vs 1.00 (lower better): 10 % worse -> +10
    # accuracy 0.45 vs 0.50: 10 % worse -> +10
    # MAE 0.75 vs 1.00: 25 % better -> -25
    method, base = [0.90, 1.10, 0.45, 0.75], [0.80, 1.00, 0.50, 1.00]
    hib = [True, False, True, False]
    assert relative_changes(method, base, hib) == pytest.approx([-12.5, 10.0, 10.0, -25.0])
    assert delta_m(method, base, hib) == pytest.approx((-12.5 + 10 + 10 - 25) / 4)  # -4.375: better than STL
    specs = [
        TaskSpec("a", "classification", 3),
        TaskSpec("b", "regression", 1),
        TaskSpec("c", "classification", 2),
        TaskSpec("d", "regression", 1),
    ]
    assert delta_m(torch.tensor(method), np.array(base), specs) == pytest.approx(-4.375)
    assert delta_m(base, base, hib) == 0.0
    with pytest.raises(ValueError, match="> 0"):
        delta_m([1.0], [0.0], [True])
    with pytest.raises(ValueError, match="2 entries for 4 tasks"):
        delta_m(method, base, [True, False])
    with pytest.raises(ValueError, match="3 tasks but"):
        delta_m(method[:3], base, hib)


def test_mean_rank_with_ties():
    table = {"A": [0.9, 1.0, 7.0], "B": [0.9, 2.0, 7.0], "C": [0.8, 0.5, 7.0]}
    ranks = mean_rank(table, [True, False, False])
    # task 0 (higher better): A, B tie for 1-2 -> 1.5 each, C 3; task 1 (lower better): C 1, A 2, B 3;
    # task 2: a three-way tie -> 2 each
    assert ranks == pytest.approx({"A": (1.5 + 2 + 2) / 3, "B": (1.5 + 3 + 2) / 3, "C": (3 + 1 + 2) / 3})
    assert list(ranks) == ["A", "B", "C"]
    with pytest.raises(ValueError, match="same number of tasks"):
        mean_rank({"A": [1.0, 2.0], "B": [1.0]}, True)


# ----------------------------------------------------------------------------------------- test models


class LinearMTL(MultiTaskModel):
    """Shared two-layer linear encoder, one linear head per task."""

    def __init__(self, d: int = 4, h: int = 3, k: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.num_tasks = k
        self.encoder = nn.Sequential(nn.Linear(d, h), nn.Linear(h, h))
        self.heads = nn.ModuleList(nn.Linear(h, 1) for _ in range(k))

    def task_parameters(self):
        return self.heads.parameters()

    def forward(self, x):
        f = self.encoder(x)
        return TaskOutputs([head(f) for head in self.heads], f)


class LinRegMTL(MultiTaskModel):
    """Linear regression through a shared map: task k predicts x W^T v_k (no biases)."""

    def __init__(self, d: int, h: int, k: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.num_tasks = k
        self.W = nn.Parameter(torch.randn(h, d, generator=g, dtype=torch.float64))
        self.V = nn.Parameter(torch.randn(k, h, generator=g, dtype=torch.float64))

    def task_parameters(self):
        return iter([self.V])

    def forward(self, x):
        f = x @ self.W.T
        return TaskOutputs([f @ self.V[k] for k in range(self.num_tasks)], f)


def _data(n: int = 16, d: int = 4, k: int = 3, seed: int = 1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, k, generator=g, dtype=dtype)


def _mse_losses(out, y):
    return torch.stack([F.mse_loss(p.reshape(-1), y[:, k]) for k, p in enumerate(out.predictions)])


# -------------------------------------------------------------------------------------- gradient conflict


def test_identical_losses_have_cosine_one_and_no_conflict():
    model = LinearMTL(k=2)
    x, y = _data(k=2)
    loss = F.mse_loss(model(x).predictions[0].reshape(-1), y[:, 0])
    tracker = GradientConflictTracker(model)
    assert list(tracker.layers) == ["encoder.0", "encoder.1"]  # heads are task-specific: not tracked
    result = tracker.record(0, torch.stack([loss, loss]))
    for layer in ["encoder.0", "encoder.1", ALL_SHARED]:
        assert np.allclose(result[layer]["cosine"], np.ones((2, 2)))
        assert result[layer]["conflict_rate"] == 0.0


def test_opposite_losses_conflict_everywhere_and_history_is_json():
    model = LinearMTL(k=2)
    x, y = _data(k=2)
    tracker = GradientConflictTracker(model, every=2, task_names=["a", "b"])
    for step in range(5):
        loss = F.mse_loss(model(x).predictions[0].reshape(-1), y[:, 0])
        losses = torch.stack([loss, -loss])
        out = tracker.record(step, losses)
        assert (out is None) == (step % 2 == 1)
        losses.sum().backward()  # the graph is still there for the training step's own backward
    hist = tracker.history()
    assert list(hist["steps"]) == ["0", "2", "4"]
    assert hist["tasks"] == ["a", "b"]
    for layers in hist["steps"].values():
        for layer in ["encoder.0", "encoder.1", ALL_SHARED]:
            assert layers[layer]["conflict_rate"] == 1.0
            assert np.allclose(layers[layer]["cosine"], [[1.0, -1.0], [-1.0, 1.0]])
    assert json.loads(json.dumps(hist)) == hist
    assert tracker.conflict_rates("encoder.1") == ([0, 2, 4], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="already recorded"):
        tracker.record(0, losses)


def test_per_layer_cosines_match_manual_gradients():
    model = LinearMTL(k=3)
    x, y = _data(k=3)
    losses = _mse_losses(model(x), y)
    losses = torch.stack([losses[0], -losses[0], losses[0]]) + torch.stack([0 * losses[1], losses[1], losses[2]])
    result = GradientConflictTracker(model.named_parameters()).compute(losses)
    for layer, module in [("encoder.0", model.encoder[0]), ("encoder.1", model.encoder[1])]:
        g = [
            torch.cat(
                [t.reshape(-1) for t in torch.autograd.grad(losses[i], list(module.parameters()), retain_graph=True)]
            )
            for i in range(3)
        ]
        manual = [[float(F.cosine_similarity(a, b, dim=0)) for b in g] for a in g]
        assert np.allclose(result[layer]["cosine"], manual, atol=1e-6)
        negatives = sum(manual[i][j] < 0 for i, j in [(0, 1), (0, 2), (1, 2)])
        assert result[layer]["conflict_rate"] == pytest.approx(negatives / 3)
    # named_parameters() of the whole model also tracks the heads
    assert "heads.0" in GradientConflictTracker(model.named_parameters()).layers


# ----------------------------------------------------------------------------------------- lookahead (TAG)


def _manual_linreg_affinity(W, V, x, y, lr):
    """Z[i, j] = 1 - L_j(W - lr dL_i/dW) / L_j(W) with the closed-form gradient of the MSE
    L_k(W) = mean((x W^T v_k - y_k)^2): dL_k/dW = (2/N) v_k (x^T r_k)^T, r_k = x W^T v_k - y_k."""
    n, k = x.shape[0], V.shape[0]

    def loss(Wm, j):
        return ((x @ Wm.T @ V[j] - y[:, j]) ** 2).mean()

    z = torch.empty(k, k, dtype=x.dtype)
    for i in range(k):
        r = x @ W.T @ V[i] - y[:, i]
        grad = (2.0 / n) * torch.outer(V[i], x.T @ r)
        W_i = W - lr * grad
        for j in range(k):
            z[i, j] = 1 - loss(W_i, j) / loss(W, j)
    return z


@pytest.mark.parametrize("mode", ["vmap", "loop", "auto"])
def test_lookahead_affinity_matches_closed_form_and_leaves_model_alone(mode):
    model = LinRegMTL(d=5, h=3, k=4)
    x, y = _data(n=20, d=5, k=4, dtype=torch.float64)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    z = lookahead_affinity(model, lambda out: _mse_losses(out, y), x, lr=0.05, mode=mode)
    expected = _manual_linreg_affinity(before["W"], before["V"], x, y, 0.05)
    assert z.shape == (4, 4)
    torch.testing.assert_close(z, expected, rtol=1e-10, atol=1e-12)
    assert (z.diagonal() > 0).all()  # a small step on task i lowers task i's own loss
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) and p.grad is None


def test_lookahead_keeps_batch_norm_buffers_and_accumulates():
    class BNModel(LinearMTL):
        def __init__(self):
            super().__init__(k=2)
            self.encoder = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 3))

    model = BNModel().train()
    x, y = _data(k=2)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    acc = AffinityAccumulator(2)
    z1 = acc.update(model, lambda out: _mse_losses(out, y), x, lr=0.1)  # auto: vmap, buffers batched too
    z2 = lookahead_affinity(model, lambda out: _mse_losses(out, y), x, lr=0.1, mode="loop")
    torch.testing.assert_close(z1, z2)
    acc.add(torch.zeros(2, 2))
    torch.testing.assert_close(acc.mean(), z1.double() / 2)
    assert acc.count == 2 and json.loads(json.dumps(acc.to_dict()))["steps"] == 2
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n
    with pytest.raises(ValueError, match=r"\[2, 2\]"):
        acc.add(torch.zeros(3, 3))


def test_lookahead_falls_back_to_a_loop_where_vmap_cannot_batch():
    class DropoutModel(LinearMTL):
        def __init__(self):
            super().__init__(k=2)
            self.encoder = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5), nn.Linear(3, 3))

    model = DropoutModel().train()
    x, y = _data(k=2)
    with pytest.raises(RuntimeError, match="random"):
        lookahead_affinity(model, lambda out: _mse_losses(out, y), x, lr=0.1, mode="vmap")
    assert lookahead_affinity(model, lambda out: _mse_losses(out, y), x, lr=0.1).shape == (2, 2)
    with pytest.raises(ValueError, match="> 0"):
        lookahead_affinity(model.eval(), lambda out: 0 * _mse_losses(out, y), x, lr=0.1)
    with pytest.raises(ValueError, match="shared"):
        lookahead_affinity(nn.Linear(2, 2), lambda out: out.sum(0), torch.ones(3, 2), lr=0.1)


# ------------------------------------------------------------------------------------------------ grouping


def _two_clusters(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clusters = [0, 1, 0, 1, 0, 1]  # tasks {0, 2, 4} and {1, 3, 5}
    z = np.array([[0.5 if clusters[i] == clusters[j] else -0.3 for j in range(6)] for i in range(6)])
    return z + 0.02 * rng.standard_normal((6, 6))


def test_exhaustive_grouping_finds_two_clusters():
    z = _two_clusters()
    for overlap in (True, False):
        result = exhaustive_grouping(z, 2, overlap=overlap)
        assert result.groups == [(0, 2, 4), (1, 3, 5)]
        assert result.served_by == [0, 1, 0, 1, 0, 1]
        assert result.score == pytest.approx(grouping_score(z, result.groups))
    greedy = greedy_grouping(z, 2)
    assert greedy.groups == [(0, 2, 4), (1, 3, 5)]
    # one group: everything together; and a task everyone hurts is better alone (singleton scores 0)
    assert exhaustive_grouping(z, 1).groups == [tuple(range(6))]
    z_bad = np.array([[0.0, 0.4, -0.5], [0.4, 0.0, -0.5], [-0.5, -0.5, 0.0]])
    assert exhaustive_grouping(z_bad, 2).groups == [(0, 1), (2,)]


def _brute_force(z: np.ndarray, n: int, overlap: bool) -> float:
    k = z.shape[0]
    subsets = [s for r in range(1, k + 1) for s in itertools.combinations(range(k), r)]
    best = -np.inf
    for m in range(1, n + 1):
        for coll in itertools.combinations(subsets, m):
            covered = [t for g in coll for t in g]
            if set(covered) != set(range(k)) or (not overlap and len(covered) != k):
                continue
            best = max(best, grouping_score(z, coll))
    return best


@pytest.mark.parametrize("seed", range(3))
def test_exhaustive_is_optimal_and_greedy_never_beats_it(seed):
    rng = np.random.default_rng(seed)
    for k, n in [(4, 1), (4, 2), (4, 3), (5, 2)]:
        z = rng.standard_normal((k, k))
        for overlap in (True, False):
            exact = exhaustive_grouping(z, n, overlap=overlap)
            assert exact.score == pytest.approx(_brute_force(z, n, overlap), abs=1e-9)
            assert len(exact.groups) <= n
            assert sorted({t for g in exact.groups for t in g}) == list(range(k))
            greedy = greedy_grouping(z, n, overlap=overlap)
            assert len(greedy.groups) <= n
            assert greedy.score <= exact.score + 1e-9
    for k in (6, 8):
        z = rng.standard_normal((k, k))
        for n in (2, 3):
            assert greedy_grouping(z, n).score <= exhaustive_grouping(z, n).score + 1e-9


def test_exhaustive_refuses_eleven_tasks_and_auto_goes_greedy():
    z = np.random.default_rng(0).standard_normal((MAX_EXHAUSTIVE_TASKS + 1,) * 2)
    with pytest.raises(ValueError, match="greedy"):
        exhaustive_grouping(z, 2)
    with pytest.raises(ValueError, match="greedy"):
        group_tasks(z, 2, method="exhaustive")
    result = group_tasks(z, 2)
    assert result.method == "greedy" and len(result.groups) <= 2
    assert result.score == pytest.approx(grouping_score(z, result.groups))
    with pytest.raises(ValueError, match="square"):
        group_tasks(np.zeros((2, 3)), 1)


# --------------------------------------------------------------------------------------------------- plots


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 500 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_png_files(tmp_path):
    pyplot_before = "matplotlib.pyplot" in sys.modules
    model = LinearMTL(k=3)
    x, y = _data(k=3)
    tracker = GradientConflictTracker(model)
    for step in range(3):
        tracker.record(step, _mse_losses(model(x), y))
    names = ["a", "b", "c"]
    written = [
        plot_affinity(torch.randn(3, 3), tmp_path / "affinity.png", task_names=names, dpi=50),
        plot_loss_trajectories(
            torch.rand(10, 3) + 0.1, tmp_path / "loss.png", task_names=names, log_scale=True, dpi=50
        ),
        plot_loss_trajectories(
            {"equal": torch.rand(10, 3), "famo": [[0.5, 0.2, 0.1]] * 7}, tmp_path / "sub" / "loss_methods.png", dpi=50
        ),
        plot_weight_trajectories(
            {"equal": [torch.ones(3)] * 5, "dwa": np.random.rand(5, 3)},
            tmp_path / "weights.png",
            task_names=names,
            dpi=50,
        ),
        plot_gradient_conflict(tracker, tmp_path / "conflict.png", dpi=50),
    ]
    for path in written:
        assert path.exists() and _is_png(path), path
    if not pyplot_before:
        assert "matplotlib.pyplot" not in sys.modules
    with pytest.raises(ValueError, match=".png"):
        plot_affinity(torch.zeros(2, 2), tmp_path / "affinity.jpg")
    with pytest.raises(KeyError, match="encoder.9"):
        plot_gradient_conflict(tracker.history(), tmp_path / "none.png", layers=["encoder.9"])
