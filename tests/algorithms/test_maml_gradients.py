"""MAML's meta-gradient against independent computations in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from metabridge.algorithms import ANIL, FOMAML, MAML, MetaSGD, Reptile
from metabridge.algorithms.base import task_loss
from metabridge.models import MLP
from metabridge.tasks.batch import TaskBatch
from metabridge.tasks.sinusoid import SinusoidFamily


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = MLP(hidden=(6, 6)).double()
    batch = SinusoidFamily().sample(3, 5, 5, torch.Generator().manual_seed(seed)).to("cpu", torch.float64)
    return model, batch


def _flat_grad(alg, batch) -> torch.Tensor:
    params = [p for p in alg.parameters()]
    grads = torch.autograd.grad(alg.meta_loss(batch), params)
    return torch.cat([g.flatten() for g in grads])


def _finite_difference(alg, batch, eps: float = 1e-6) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for p in alg.parameters():
            flat = p.view(-1)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + eps
                up = alg.meta_loss(batch).item()
                flat[i] = old - eps
                down = alg.meta_loss(batch).item()
                flat[i] = old
                out.append((up - down) / (2 * eps))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: MAML(m, inner_lr=0.05, inner_steps=3),
        lambda m: MAML(m, inner_lr=0.05, inner_steps=2, learn_inner_lr="per_step"),
        lambda m: MetaSGD(m, inner_lr=0.05, inner_steps=2),
        lambda m: ANIL(m, inner_lr=0.1, inner_steps=3),
    ],
    ids=["maml-3step", "maml-lslr", "metasgd", "anil"],
)
def test_second_order_meta_gradient_matches_finite_differences(make):
    model, batch = _setup()
    alg = make(model)
    analytic = _flat_grad(alg, batch)
    numeric = _finite_difference(alg, batch)
    assert analytic.abs().max() > 1e-3  # the check is not vacuous
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_vmap_and_loop_give_identical_meta_gradients():
    model, batch = _setup(1)
    g_vmap = _flat_grad(MAML(model, 0.05, 2, execution={"task_batching": "vmap"}), batch)
    g_loop = _flat_grad(MAML(model, 0.05, 2, execution={"task_batching": "loop"}), batch)
    torch.testing.assert_close(g_vmap, g_loop, rtol=1e-12, atol=1e-14)


def test_first_order_equals_second_order_minus_hessian_term():
    """One inner step: grad_MAML = (I - alpha H_tr) g_q and grad_FOMAML = g_q, where
    g_q = grad L_ts(phi) and H_tr = Hessian of L_tr at theta (Finn et al. 2017, Sec. 2.2)."""
    model, batch = _setup(2)
    alpha = 0.05
    names = [n for n, _ in model.named_parameters()]
    theta = [p.detach().clone() for p in model.parameters()]
    shapes = [t.shape for t in theta]
    sizes = [t.numel() for t in theta]

    def unflat(v):
        return dict(zip(names, (c.view(s) for c, s in zip(torch.split(v, sizes), shapes))))

    def loss(v, x, y):
        return task_loss(functional_call(model, unflat(v), (x,)), y)

    v0 = torch.cat([t.flatten() for t in theta])
    expected_so, expected_fo = torch.zeros_like(v0), torch.zeros_like(v0)
    for i in range(batch.num_tasks):
        xs, ys, xq, yq = batch.support_x[i], batch.support_y[i], batch.query_x[i], batch.query_y[i]
        g_tr = torch.autograd.functional.jacobian(lambda v: loss(v, xs, ys), v0)
        phi = v0 - alpha * g_tr
        g_q = torch.autograd.functional.jacobian(lambda v: loss(v, xq, yq), phi)
        hess = torch.autograd.functional.hessian(lambda v: loss(v, xs, ys), v0)
        expected_fo += g_q / batch.num_tasks
        expected_so += (g_q - alpha * hess @ g_q) / batch.num_tasks
    got_so = _flat_grad(MAML(model, alpha, 1), batch)
    got_fo = _flat_grad(FOMAML(model, alpha, 1), batch)
    torch.testing.assert_close(got_fo, expected_fo, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_so, expected_so, rtol=1e-10, atol=1e-12)
    assert (got_so - got_fo).abs().max() > 1e-6  # the Hessian term is really there


def test_reptile_gradient_is_theta_minus_mean_adapted_weights():
    model, batch = _setup(3)
    alg = Reptile(model, inner_lr=0.05, inner_steps=4)
    names = [n for n, _ in model.named_parameters()]
    adapted = []
    for i in range(batch.num_tasks):
        p = {n: q.detach().clone().requires_grad_(True) for n, q in model.named_parameters()}
        x = torch.cat([batch.support_x[i], batch.query_x[i]])
        y = torch.cat([batch.support_y[i], batch.query_y[i]])
        for _ in range(4):
            g = torch.autograd.grad(task_loss(functional_call(model, p, (x,)), y), list(p.values()))
            p = {n: (p[n] - 0.05 * gg).detach().requires_grad_(True) for n, gg in zip(names, g)}
        adapted.append(torch.cat([p[n].flatten() for n in names]))
    theta = torch.cat([q.detach().flatten() for q in model.parameters()])
    expected = theta - torch.stack(adapted).mean(0)
    torch.testing.assert_close(_flat_grad(alg, batch), expected, rtol=1e-10, atol=1e-12)


class _BNNet(nn.Module):
    """A user's network with an ordinary batch-norm layer."""

    def __init__(self, track_running_stats: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3, track_running_stats=track_running_stats), nn.ReLU(), nn.Flatten()
        )
        self.head = nn.Linear(3 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@pytest.mark.parametrize("mode", ["vmap", "loop"])
@pytest.mark.parametrize("cls", [MAML, ANIL], ids=["maml", "anil"])
def test_running_statistics_batch_norm_is_per_task_and_untouched(cls, mode):
    """Defect 3: MAML on an ordinary nn.BatchNorm2d (track_running_stats=True) failed with a
    functorch in-place error. Now it normalizes with each task's batch statistics, exactly
    like the same weights without running statistics, and never writes the buffers."""

    def net(track: bool) -> nn.Module:
        torch.manual_seed(7)
        return _BNNet(track).double()

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(2).expand(3, -1).clone()
    batch = TaskBatch(
        torch.rand(3, 8, 1, 8, 8, generator=g, dtype=torch.float64),
        labels,
        torch.rand(3, 8, 1, 8, 8, generator=g, dtype=torch.float64),
        labels.clone(),
        n_way=4,
    )
    tracked, plain = net(True), net(False)
    buffers = {k: v.clone() for k, v in tracked.named_buffers()}
    assert buffers  # the layer really keeps running statistics
    a = cls(tracked, inner_lr=0.2, inner_steps=2, execution={"task_batching": mode})
    b = cls(plain, inner_lr=0.2, inner_steps=2, execution={"task_batching": mode})
    ga = _flat_grad(a, batch)
    torch.testing.assert_close(ga, _flat_grad(b, batch), rtol=1e-12, atol=1e-14)
    assert ga.abs().max() > 1e-4
    for alg in (a, b):
        alg.eval()
    torch.testing.assert_close(a.predict(batch), b.predict(batch), rtol=1e-12, atol=1e-14)
    for k, v in tracked.named_buffers():
        torch.testing.assert_close(v, buffers[k], rtol=0, atol=0)
