"""Loss-only weighting methods: equal/mean, fixed, scale-invariant, uncertainty (Kendall
et al. 2018), DWA (Liu et al. 2019), RLW (Lin et al. 2022), FAMO (Liu et al. 2023), min-max."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metabridge.multitask.weighting import Needs, build_weighting, weighted_backward
from metabridge.multitask.weighting.famo import FAMO
from metabridge.multitask.weighting.registry import WEIGHTINGS

LOSS_ONLY = ["equal", "mean", "fixed", "scale_invariant", "uw", "dwa", "rlw", "famo", "minmax"]
KWARGS = {"fixed": {"weights": [0.3, 2.0]}}


def _losses(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def _grad_wrt_losses(method, values) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    losses = _losses(*values)
    total, weights = method.objective(losses)
    total.backward()
    return total.detach(), weights, losses.grad


class TwoHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # only the test's own parameter initialisation
        self.encoder = nn.Linear(3, 4)
        self.heads = nn.ModuleList([nn.Linear(4, 1), nn.Linear(4, 1)])

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.encoder(x))
        return torch.stack([F.mse_loss(head(h).squeeze(-1), y[:, i]) for i, head in enumerate(self.heads)])


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g)


def test_all_loss_only_methods_are_registered_and_read_losses_only():
    for name in LOSS_ONLY:
        assert name in WEIGHTINGS
        method = build_weighting(name, 2, **KWARGS.get(name, {}))
        assert method.needs == Needs.LOSSES
    assert build_weighting("mean", 3).reduction == "mean"
    assert build_weighting("equal", 3).reduction == "sum"


@pytest.mark.parametrize("name", LOSS_ONLY)
def test_weighted_backward_fills_grads_with_the_reported_weights(name):
    """For every loss-only method, d(objective)/dL_i is the reported weight w_i, so the model's gradient
    is that of sum_i w_i L_i with the weights returned (a wrong reported weight fails here)."""
    model = TwoHead()
    method = build_weighting(name, 2, **KWARGS.get(name, {}))
    x, y = _batch()
    for _ in range(2):  # a second step: FAMO(next_batch)/DWA state, RLW's second draw
        model.zero_grad(set_to_none=True)
        method.zero_grad(set_to_none=True)
        losses = model.losses(x, y)
        record = weighted_backward(
            method, losses, list(model.encoder.parameters()), [p for h in model.heads for p in h.parameters()]
        )
        grads = [p.grad.clone() for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert all(p.grad.abs().sum() > 0 for p in model.encoder.parameters())
        assert record.weights.shape == (2,) and not record.weights.requires_grad
        expected = torch.autograd.grad((record.weights * model.losses(x, y)).sum(), list(model.parameters()))
        for g, e in zip(grads, expected):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)
        method.after_step(lambda: model.losses(x, y) * 0.9)
        method.end_epoch()
    if name == "uw":
        assert method.log_vars.grad is not None and method.log_vars.grad.abs().sum() > 0


def test_equal_sum_and_mean():
    total, w, g = _grad_wrt_losses(build_weighting("equal", 3), [1.0, 2.0, 4.0])
    assert total.item() == pytest.approx(7.0)
    torch.testing.assert_close(g, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(w, torch.ones(3, dtype=torch.float64))
    total, w, g = _grad_wrt_losses(build_weighting("mean", 3), [1.0, 2.0, 4.0])
    assert total.item() == pytest.approx(7.0 / 3)
    torch.testing.assert_close(g, torch.full((3,), 1 / 3, dtype=torch.float64))
    torch.testing.assert_close(w, g)


def test_fixed_weights():
    total, w, g = _grad_wrt_losses(build_weighting("fixed", 3, weights=[0.5, 0.0, 3.0]), [1.0, 2.0, 4.0])
    assert total.item() == pytest.approx(0.5 + 12.0)
    torch.testing.assert_close(g, torch.tensor([0.5, 0.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(w, g)


def test_scale_invariant_gradient_is_sum_of_grad_l_over_l():
    model = TwoHead()
    x, y = _batch(1)
    losses = model.losses(x, y)
    weighted_backward(build_weighting("scale_invariant", 2), losses, list(model.encoder.parameters()))
    per_task = [torch.autograd.grad(loss, list(model.parameters()), retain_graph=True) for loss in model.losses(x, y)]
    values = losses.detach()
    for j, p in enumerate(model.parameters()):
        expected = per_task[0][j] / values[0] + per_task[1][j] / values[1]
        torch.testing.assert_close(p.grad, expected, rtol=1e-5, atol=1e-7)
    # rescaling a loss (a change of units) does not change the update
    _, _, g1 = _grad_wrt_losses(build_weighting("scale_invariant", 2), [1.5, 0.2])
    torch.testing.assert_close(g1, torch.tensor([1 / 1.5, 1 / 0.2], dtype=torch.float64))
    with pytest.raises(ValueError, match="eps"):
        build_weighting("scale_invariant", 2).objective(torch.tensor([0.0, 1.0]))
    total, _ = build_weighting("scale_invariant", 2, eps=1e-3).objective(torch.tensor([0.0, 1.0]))
    assert torch.isfinite(total)


def test_uncertainty_reaches_closed_form_optimum():
    """min_s 0.5 exp(-s) L + 0.5 s has s* = log L; gradient descent on s from 0 reaches it."""
    losses = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64)
    method = build_weighting("uw", 3)
    assert [p.shape for p in method.parameters()] == [(3,)] and method.log_vars.detach().eq(0).all()
    total, w = method.objective(losses)
    assert total.item() == pytest.approx(0.5 * 5.5)
    torch.testing.assert_close(w, torch.full((3,), 0.5, dtype=torch.float64))
    opt = torch.optim.SGD(method.parameters(), lr=1.0)
    for _ in range(200):
        opt.zero_grad()
        method.objective(losses)[0].backward()
        opt.step()
    torch.testing.assert_close(method.log_vars.detach().double(), losses.log(), rtol=0, atol=1e-5)
    _, w = method.objective(losses)
    torch.testing.assert_close(w, 1 / (2 * losses), rtol=1e-5, atol=0)


def test_dwa_weights_from_epoch_averages():
    method = build_weighting("dwa", 2)  # T = 2
    epochs = [
        [[1.0, 2.0], [3.0, 2.0]],  # mean [2, 2]
        [[1.0, 1.5]],  # mean [1, 1.5]
        [[0.4, 1.0], [0.6, 1.4]],  # mean [0.5, 1.2]
        [[0.3, 0.3]],
    ]
    seen = []
    for epoch in epochs:
        for values in epoch:
            seen.append(method.objective(torch.tensor(values, dtype=torch.float64))[1])
        method.end_epoch()
    for w in seen[:3]:  # epochs 0 and 1: equal weights
        torch.testing.assert_close(w, torch.ones(2, dtype=torch.float64))

    def by_hand(r1, r2, t=2.0):
        e1, e2 = math.exp(r1 / t), math.exp(r2 / t)
        return torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)], dtype=torch.float64)

    torch.testing.assert_close(seen[3], by_hand(1 / 2, 1.5 / 2), rtol=1e-6, atol=0)  # epoch 2
    torch.testing.assert_close(seen[4], seen[3])
    torch.testing.assert_close(seen[5], by_hand(0.5 / 1, 1.2 / 1.5), rtol=1e-6, atol=0)  # epoch 3
    # the task whose loss fell more slowly gets more weight; the objective is sum_i w_i L_i
    assert seen[5][1] > seen[5][0]
    total, w, g = _grad_wrt_losses(method, [0.2, 0.1])
    torch.testing.assert_close(g, w)
    # an epoch without steps does not roll the history
    method.end_epoch()
    state = {k: v.clone() for k, v in method.state_dict().items()}
    method.end_epoch()
    method.end_epoch()
    assert method.epochs_done.item() == state["epochs_done"].item() == 5
    torch.testing.assert_close(method.last_avg, state["last_avg"])
    torch.testing.assert_close(method.previous_avg, state["previous_avg"])


def test_rlw_weights_reproducible_and_global_rng_untouched():
    before = torch.random.get_rng_state()
    a, b, c = (build_weighting("rlw", 4), build_weighting("rlw", 4), build_weighting("rlw", 4, seed=1))
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    wa = [a.objective(losses)[1] for _ in range(5)]
    wb = [b.objective(losses)[1] for _ in range(5)]
    wc = [c.objective(losses)[1] for _ in range(5)]
    assert torch.equal(torch.random.get_rng_state(), before)
    for w in wa:
        assert (w > 0).all() and w.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert all(torch.equal(x, y) for x, y in zip(wa, wb))
    assert not torch.equal(wa[0], wa[1])  # fresh weights every step
    assert not torch.equal(wa[0], wc[0])  # another seed, other weights
    # softmax of standard normals drawn from a generator seeded with the seed
    z = torch.randn(4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(wa[0], torch.softmax(z, 0))
    # resuming from state_dict continues the sequence
    d = build_weighting("rlw", 4)
    d.load_state_dict(a.state_dict())
    torch.testing.assert_close(d.objective(losses)[1], a.objective(losses)[1], rtol=0, atol=0)


def _adam_by_hand(grads, lr, wd, xi0=0.0, b1=0.9, b2=0.999, eps=1e-8):
    """Adam with L2 weight decay, written out (one coordinate)."""
    xi, m, v = xi0, 0.0, 0.0
    for t, g in enumerate(grads, 1):
        g = g(xi) if callable(g) else g
        g = g + wd * xi
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        xi = xi - lr * (m / (1 - b1**t)) / (math.sqrt(v / (1 - b2**t)) + eps)
    return xi


@pytest.mark.parametrize("lookahead", ["same_batch", "next_batch"])
def test_famo_one_and_two_steps_by_hand(lookahead):
    lr, gamma = 0.025, 0.001
    method = build_weighting("famo", 2, eps=0.0, lookahead=lookahead)
    assert list(method.parameters()) == []  # xi is trained by FAMO's own Adam, not the model's optimiser
    # step 1: xi = 0, z = (1/2, 1/2), L = (2, 1/2): c = 1/4 + 1 = 5/4, weights z_i / (c L_i) = (0.2, 0.8)
    total, w, g = _grad_wrt_losses(method, [2.0, 0.5])
    assert total.item() == pytest.approx((0.5 * math.log(2) + 0.5 * math.log(0.5)) / 1.25, abs=1e-12)
    torch.testing.assert_close(g, torch.tensor([0.2, 0.8], dtype=torch.float64))
    torch.testing.assert_close(w, g)
    # after the step the losses are (1, 0.4): delta = (log 2, log 1.25), (dz/dxi)^T delta = z * (delta - z.delta)
    after1 = torch.tensor([1.0, 0.4], dtype=torch.float64)
    calls = []

    def closure():
        calls.append(1)
        return after1

    method.after_step(closure)
    g1 = 0.25 * (math.log(2) - math.log(1.25))  # coordinate 0; coordinate 1 is -g1
    if lookahead == "same_batch":
        assert calls == [1]
        xi1 = _adam_by_hand([g1], lr, gamma)
        assert xi1 == pytest.approx(-lr, rel=1e-6)  # Adam's first step is lr * sign(g)
        torch.testing.assert_close(method.xi.double(), torch.tensor([xi1, -xi1], dtype=torch.float64))
        step2 = [0.9, 0.45]
    else:
        assert calls == []  # no extra forward pass
        torch.testing.assert_close(method.xi, torch.zeros(2))
        step2 = [1.0, 0.4]  # the next batch's losses stand for L(t+1)
        xi1 = _adam_by_hand([g1], lr, gamma)
    # step 2 (in next_batch mode the logits are updated first, from the new losses)
    total, w, g = _grad_wrt_losses(method, step2)
    torch.testing.assert_close(method.xi.double(), torch.tensor([xi1, -xi1], dtype=torch.float64))
    z = [math.exp(xi1) / (math.exp(xi1) + math.exp(-xi1)), math.exp(-xi1) / (math.exp(xi1) + math.exp(-xi1))]
    c = z[0] / step2[0] + z[1] / step2[1]
    expected_w = torch.tensor([z[0] / (c * step2[0]), z[1] / (c * step2[1])], dtype=torch.float64)
    torch.testing.assert_close(w, expected_w, rtol=1e-6, atol=0)
    torch.testing.assert_close(g, expected_w, rtol=1e-6, atol=0)
    assert w.sum().item() == pytest.approx(1.0)
    after2 = [0.8, 0.44]
    if lookahead == "same_batch":
        method.after_step(lambda: torch.tensor(after2, dtype=torch.float64))
    else:
        method.after_step(closure)
        _grad_wrt_losses(method, after2)
        assert calls == []
    delta = [math.log(step2[0] / after2[0]), math.log(step2[1] / after2[1])]
    zd = z[0] * delta[0] + z[1] * delta[1]
    g2 = z[0] * (delta[0] - zd)  # coordinate 0 (coordinate 1 is -g2: the softmax Jacobian's rows sum to 0)
    xi2 = _adam_by_hand([g1, g2], lr, gamma)
    xi2b = _adam_by_hand([-g1, -g2], lr, gamma)
    torch.testing.assert_close(method.xi.double(), torch.tensor([xi2, xi2b], dtype=torch.float64), rtol=1e-5, atol=0)
    # and the same numbers from torch's Adam on a leaf tensor
    ref = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([ref], lr=lr, weight_decay=gamma)
    for grad in ([g1, -g1], [g2, -g2]):
        ref.grad = torch.tensor(grad, dtype=torch.float64)
        opt.step()
    torch.testing.assert_close(method.xi.double(), ref.detach(), rtol=1e-5, atol=0)


def test_famo_state_and_guards():
    method = FAMO(2, min_losses=[0.5, 0.0])
    with pytest.raises(ValueError, match="min_loss"):
        method.objective(torch.tensor([0.4, 1.0]))
    method.objective(torch.tensor([1.0, 1.0]))
    method.after_step(lambda: torch.tensor([0.7, 0.9]))
    copy = FAMO(2, min_losses=[0.5, 0.0])
    copy.load_state_dict(method.state_dict())
    torch.testing.assert_close(copy.xi, method.xi)
    assert copy.adam_step.item() == 1 and method.xi.abs().sum() > 0


def test_minmax_exact_and_smooth():
    total, w, g = _grad_wrt_losses(build_weighting("minmax", 3), [1.0, 3.0, 2.0])
    assert total.item() == 3.0
    torch.testing.assert_close(g, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(w, g)
    total, w, g = _grad_wrt_losses(build_weighting("minmax", 3), [3.0, 1.0, 3.0])  # a tie: split evenly
    assert total.item() == 3.0
    torch.testing.assert_close(g, torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64))
    t = 0.5
    values = [1.0, 3.0, 2.0]
    total, w, g = _grad_wrt_losses(build_weighting("minmax", 3, temperature=t), values)
    assert total.item() == pytest.approx(t * math.log(sum(math.exp(v / t) for v in values)))
    assert 3.0 < total.item() < 3.0 + t * math.log(3)
    expected = torch.softmax(torch.tensor(values, dtype=torch.float64) / t, 0)
    torch.testing.assert_close(g, expected)
    torch.testing.assert_close(w, expected)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("equal", {"reduction": "max"}, "reduction"),
        ("fixed", {}, "weights="),
        ("fixed", {"weights": [1.0]}, "one weight per task"),
        ("fixed", {"weights": [1.0, -1.0]}, "non-negative"),
        ("fixed", {"weights": [0.0, 0.0]}, "all zero"),
        ("fixed", {"weights": 1.0}, "sequence"),
        ("fixed", {"weights": [1.0, float("nan")]}, "finite"),
        ("scale_invariant", {"eps": -1.0}, "eps"),
        ("dwa", {"temperature": 0.0}, "temperature"),
        ("rlw", {"seed": -1}, "seed"),
        ("rlw", {"seed": 1.5}, "seed"),
        ("famo", {"w_lr": 0.0}, "w_lr"),
        ("famo", {"gamma": -0.1}, "gamma"),
        ("famo", {"lookahead": "later"}, "lookahead"),
        ("famo", {"min_losses": [0.0]}, "min_losses"),
        ("minmax", {"temperature": -1.0}, "temperature"),
        ("minmax", {"temperature": float("inf")}, "temperature"),
    ],
)
def test_bad_arguments_raise_value_error(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_weighting(name, 2, **kwargs)


def test_bad_num_tasks_raises_value_error():
    with pytest.raises(ValueError, match="num_tasks"):
        build_weighting("uw", 0)
