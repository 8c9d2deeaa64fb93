"""The gradient-based loss-weighting methods of the multi-task half: MGDA / MGDA-UB, PCGrad,
CAGrad, IMTL (-G, -L, hybrid), Nash-MTL, Aligned-MTL, GradNorm. Each test checks a property
that the paper's equations imply (closed forms, optimality conditions), not a snapshot."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from metabridge.multitask.weighting import WEIGHTINGS, Needs, build_weighting, weighted_backward
from metabridge.multitask.weighting.aligned_mtl import AlignedMTL, alignment_matrix
from metabridge.multitask.weighting.cagrad import CAGrad, cagrad_dual_weights, project_to_simplex
from metabridge.multitask.weighting.gradnorm import GradNorm
from metabridge.multitask.weighting.imtl import IMTL, IMTLG, IMTLL, IMTLSolveError
from metabridge.multitask.weighting.mgda import MGDA, MGDAUB
from metabridge.multitask.weighting.min_norm import frank_wolfe, min_norm_two, min_norm_weights
from metabridge.multitask.weighting.nash_mtl import NashMTL, NashMTLSolveError
from metabridge.multitask.weighting.pcgrad import PCGrad

GRADIENT_METHODS = ["mgda", "mgda_ub", "pcgrad", "cagrad", "imtl_g", "imtl", "nash_mtl", "aligned_mtl", "gradnorm"]


def _grads(k: int, p: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(k, p, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _qp_min_norm(gram: torch.Tensor) -> float:
    """Exact min of a^T M a over the simplex by enumerating the faces (KKT system on each)."""
    k = gram.shape[0]
    best = math.inf
    for size in range(1, k + 1):
        for face in itertools.combinations(range(k), size):
            idx = list(face)
            m = gram[idx][:, idx]
            kkt = torch.zeros(size + 1, size + 1, dtype=gram.dtype)
            kkt[:size, :size] = m
            kkt[:size, size] = 1
            kkt[size, :size] = 1
            rhs = torch.zeros(size + 1, dtype=gram.dtype)
            rhs[size] = 1
            a = (torch.linalg.pinv(kkt) @ rhs)[:size]
            if bool((a >= -1e-12).all()) and abs(float(a.sum()) - 1) < 1e-9:
                a = a.clamp_min(0)
                best = min(best, float(a @ m @ a))
    return best


# ----------------------------------------------------------------------------- min-norm / MGDA


def test_mgda_two_tasks_is_the_closed_form_min_norm_point():
    for seed in range(5):
        g = _grads(2, 7, seed)
        g1, g2 = g[0], g[1]
        gamma = ((g2 - g1) @ g2 / (g1 - g2).pow(2).sum()).clamp(0, 1)
        direction, weights = MGDA(2).combine(g, torch.ones(2, dtype=g.dtype))
        torch.testing.assert_close(weights, torch.stack([gamma, 1 - gamma]), rtol=0, atol=1e-12)
        torch.testing.assert_close(direction, gamma * g1 + (1 - gamma) * g2, rtol=0, atol=1e-12)
    # clamped case: g1 is a short vector along g2, so the min-norm point is g1 itself (gamma = 1)
    g = torch.tensor([[0.1, 0.0], [1.0, 0.0]], dtype=torch.float64)
    direction, weights = MGDA(2).combine(g, torch.ones(2, dtype=g.dtype))
    torch.testing.assert_close(weights, torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(direction, g[0])


@pytest.mark.parametrize("seed", range(6))
def test_frank_wolfe_matches_the_exact_qp_over_the_simplex(seed):
    p = [2, 5, 3, 8, 2, 4][seed]  # p = 2: 0 may lie in the hull; small p: solutions on a face
    g = _grads(3, p, seed)
    if seed == 4:
        g[2] = -(g[0] + g[1]) / 2 + 0.3 * g[2]
    gram = g @ g.T
    alpha = frank_wolfe(gram)
    assert bool((alpha >= 0).all()) and abs(float(alpha.sum()) - 1) < 1e-12
    exact = _qp_min_norm(gram)
    assert float(alpha @ gram @ alpha) == pytest.approx(exact, abs=1e-4 * float(gram.diagonal().max()))
    # and against a brute-force grid over the simplex (step 1/300): FW is at least as good
    n = 300
    i, j = torch.meshgrid(torch.arange(n + 1), torch.arange(n + 1), indexing="ij")
    ok = i + j <= n
    grid = torch.stack([i[ok], j[ok], n - i[ok] - j[ok]], dim=1).double() / n
    grid_best = float(((grid @ gram) * grid).sum(1).min())
    assert float(alpha @ gram @ alpha) <= grid_best + 1e-12
    # the min-norm point itself is unique: compare with the exact face solution's point
    assert float(alpha @ gram @ alpha) == pytest.approx(exact, rel=1e-6, abs=1e-9)


def test_frank_wolfe_for_two_tasks_agrees_with_the_closed_form_and_mgda_uses_it_for_k3():
    g = _grads(2, 6, 3)
    torch.testing.assert_close(frank_wolfe(g @ g.T), min_norm_two(g @ g.T), rtol=0, atol=1e-5)
    g3 = _grads(3, 6, 4)
    direction, weights = MGDA(3).combine(g3, torch.ones(3, dtype=g3.dtype))
    torch.testing.assert_close(weights, min_norm_weights(g3 @ g3.T))
    torch.testing.assert_close(direction, weights @ g3)


def test_mgda_normalisations_rescale_the_weights_so_they_reproduce_the_direction():
    g = _grads(3, 5, 1)
    losses = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    norms = g.norm(dim=1)
    for kind, n in [("l2", norms), ("loss", losses), ("loss+", losses * norms)]:
        direction, weights = MGDA(3, normalization=kind).combine(g, losses)
        alpha = min_norm_weights((g / n[:, None]) @ (g / n[:, None]).T)
        torch.testing.assert_close(weights, alpha / n)
        torch.testing.assert_close(direction, (alpha[:, None] * g / n[:, None]).sum(0))
    with pytest.raises(ValueError, match="positive"):
        MGDA(3, normalization="loss").combine(g, torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))


# ----------------------------------------------------------------------------- PCGrad


def test_pcgrad_projects_conflicting_gradients_exactly():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)  # g1 . g2 = -1 < 0
    direction, weights = PCGrad(2).combine(g, torch.ones(2, dtype=g.dtype))
    g1_pc = g[0] - (g[0] @ g[1]) / (g[1] @ g[1]) * g[1]  # (0.5, 0.5)
    g2_pc = g[1] - (g[1] @ g[0]) / (g[0] @ g[0]) * g[0]  # (0, 1)
    torch.testing.assert_close(direction, g1_pc + g2_pc)
    torch.testing.assert_close(direction, torch.tensor([0.5, 1.5], dtype=torch.float64))
    torch.testing.assert_close(weights, torch.ones(2, dtype=torch.float64))
    # non-conflicting: untouched
    h = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    direction, _ = PCGrad(2).combine(h, torch.ones(2, dtype=h.dtype))
    torch.testing.assert_close(direction, h.sum(0))
    direction, weights = PCGrad(2, reduction="mean").combine(h, torch.ones(2, dtype=h.dtype))
    torch.testing.assert_close(direction, h.mean(0))
    torch.testing.assert_close(weights, torch.full((2,), 0.5, dtype=torch.float64))


def test_pcgrad_three_tasks_follow_the_random_orders_and_project_on_the_original_gradients():
    g = _grads(4, 3, 7)  # 4 tasks in 3-D: plenty of conflicts
    method = PCGrad(4, seed=11)
    orders = PCGrad(4, seed=11)._orders(4)  # the same generator stream
    expected = torch.zeros(3, dtype=g.dtype)
    for i in range(4):
        gi = g[i].clone()
        assert sorted(orders[i].tolist()) == [j for j in range(4) if j != i]
        for j in orders[i].tolist():
            dot = gi @ g[j]
            if dot < 0:
                gi = gi - dot / (g[j] @ g[j]) * g[j]
        expected += gi
    direction, _ = method.combine(g, torch.ones(4, dtype=g.dtype))
    torch.testing.assert_close(direction, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(method.last_projection_weights @ g, expected, rtol=0, atol=1e-12)


def test_pcgrad_never_touches_the_global_rng_and_its_state_is_checkpointed():
    g = _grads(4, 3, 7)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = PCGrad(4, seed=5)
    d1, _ = a.combine(g, torch.ones(4, dtype=g.dtype))
    assert torch.equal(torch.get_rng_state(), before)
    # the orders depend on the method's own seed only
    torch.manual_seed(999)
    d2, _ = PCGrad(4, seed=5).combine(g, torch.ones(4, dtype=g.dtype))
    torch.testing.assert_close(d1, d2, rtol=0, atol=0)
    # the generator's state travels in the state_dict
    b = PCGrad(4, seed=77)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(
        a.combine(g, torch.ones(4, dtype=g.dtype))[0], b.combine(g, torch.ones(4, dtype=g.dtype))[0], rtol=0, atol=0
    )


# ----------------------------------------------------------------------------- CAGrad


def test_cagrad_with_c_zero_is_exactly_the_mean_gradient():
    g = _grads(3, 9, 2, dtype=torch.float32)
    direction, weights = CAGrad(3, c=0.0).combine(g, torch.ones(3))
    assert torch.equal(direction, g.mean(0))
    torch.testing.assert_close(weights, torch.full((3,), 1 / 3))


def test_cagrad_solves_its_dual_and_stays_in_the_ball():
    g = _grads(3, 4, 5)
    g[1] = -0.7 * g[0] + 0.2 * g[1]  # conflicting tasks
    c = 0.5
    gram = g @ g.T
    w = cagrad_dual_weights(gram, c)
    g0 = g.mean(0)
    r = c * g0.norm()

    def dual(v):
        gw = v @ g
        return float(gw @ g0 + r * gw.norm())

    n = 200
    i, j = torch.meshgrid(torch.arange(n + 1), torch.arange(n + 1), indexing="ij")
    ok = i + j <= n
    grid = torch.stack([i[ok], j[ok], n - i[ok] - j[ok]], dim=1).double() / n
    gw = grid @ g
    grid_vals = gw @ g0 + r * gw.norm(dim=1)
    assert dual(w) <= float(grid_vals.min()) + 1e-9
    direction, weights = CAGrad(3, c=c, rescale=0).combine(g, torch.ones(3, dtype=g.dtype))
    torch.testing.assert_close(direction, weights @ g)
    # d = g0 + r g_w / ||g_w||: exactly on the sphere of radius c ||g0|| around g0
    assert float((direction - g0).norm()) == pytest.approx(float(r), rel=1e-9)
    # the worst task does better than under the mean gradient
    assert float((g @ direction).min()) > float((g @ g0).min())
    rescaled, _ = CAGrad(3, c=c).combine(g, torch.ones(3, dtype=g.dtype))
    torch.testing.assert_close(rescaled, direction / (1 + c**2))


def test_project_to_simplex():
    v = torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64)
    torch.testing.assert_close(project_to_simplex(v), torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    v = torch.tensor([0.3, 0.3, 0.3], dtype=torch.float64)
    torch.testing.assert_close(project_to_simplex(v), torch.full((3,), 1 / 3, dtype=torch.float64))


# ----------------------------------------------------------------------------- IMTL


def test_imtl_g_direction_has_equal_projections_on_every_unit_gradient():
    g = _grads(4, 10, 3)
    g = g * torch.tensor([[1.0], [5.0], [0.2], [2.0]], dtype=g.dtype)  # very different scales
    method = IMTLG(4)
    direction, weights = method.combine(g, torch.ones(4, dtype=g.dtype))
    u = g / g.norm(dim=1, keepdim=True)
    proj = u @ direction
    torch.testing.assert_close(proj, proj[0].expand(4), rtol=1e-10, atol=0)
    assert float(method.last_alpha.sum()) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(direction, method.last_alpha @ g)
    torch.testing.assert_close(weights, torch.ones(4, dtype=g.dtype))


def test_imtl_g_singular_system_raises_or_warns():
    g = _grads(3, 6, 1)
    g[2] = 3.0 * g[0]  # parallel gradients: u_1 = u_3
    with pytest.raises(IMTLSolveError, match="singular"):
        IMTLG(3).combine(g, torch.ones(3, dtype=g.dtype))
    with pytest.warns(RuntimeWarning, match="least squares"):
        direction, _ = IMTLG(3, on_singular="lstsq").combine(g, torch.ones(3, dtype=g.dtype))
    assert bool(torch.isfinite(direction).all())
    g[1] = 0.0
    with pytest.raises(IMTLSolveError, match="zero"):
        IMTLG(3).combine(g, torch.ones(3, dtype=g.dtype))


def test_imtl_hybrid_scales_the_gradients_and_fills_s_grad():
    g = _grads(3, 8, 4)
    losses = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64)
    method = IMTL(3).double()
    with torch.no_grad():
        method.s.copy_(torch.tensor([0.1, -0.3, 0.2]))
    direction, weights = method.combine(g, losses)
    scale = method.s.detach().exp()
    ref_dir, _ = IMTLG(3).combine(scale[:, None] * g, losses)
    torch.testing.assert_close(direction, ref_dir)
    torch.testing.assert_close(weights, scale)
    torch.testing.assert_close(method.s.grad, scale * losses - 1)
    # IMTL-L: loss-only, objective sum e^s L - s
    imtl_l = IMTLL(3).double()
    total, w = imtl_l.objective(losses.clone().requires_grad_())
    assert IMTLL.needs is Needs.LOSSES
    assert float(total.detach()) == pytest.approx(float(losses.sum()))
    torch.testing.assert_close(w, torch.ones(3, dtype=torch.float64))


# ----------------------------------------------------------------------------- Nash-MTL


def test_nash_mtl_alpha_solves_the_bargaining_system():
    g = _grads(3, 6, 8) * torch.tensor([[1.0], [10.0], [0.1]], dtype=torch.float64)
    method = NashMTL(3, max_norm=None)
    direction, alpha = method.combine(g, torch.ones(3, dtype=g.dtype))
    m = g @ g.T
    assert bool((alpha > 0).all())
    torch.testing.assert_close(m @ alpha, 1 / alpha, rtol=0, atol=1e-6)
    torch.testing.assert_close(m @ alpha, 1 / alpha, rtol=1e-8, atol=0)
    torch.testing.assert_close(direction, alpha @ g)
    assert float(direction.norm()) == pytest.approx(math.sqrt(3), rel=1e-8)  # alpha^T M alpha = K
    clipped, _ = NashMTL(3).combine(g, torch.ones(3, dtype=g.dtype))  # max_norm = 1.0
    torch.testing.assert_close(clipped, direction / direction.norm())
    # parallel (linearly dependent) but not opposite: bounded, solvable
    h = g.clone()
    h[2] = 2 * h[0]
    _, a = NashMTL(3).combine(h, torch.ones(3, dtype=h.dtype))
    torch.testing.assert_close((h @ h.T) @ a, 1 / a, rtol=1e-8, atol=0)


@pytest.mark.parametrize("case", ["sum_zero", "opposite", "zero"])
def test_nash_mtl_unbounded_problems_raise(case):
    g = _grads(3, 6, 9)
    if case == "sum_zero":
        g[2] = -(g[0] + g[1])  # linearly dependent, 0 = g1 + g2 + g3
    elif case == "opposite":
        g[1] = -g[0]
    else:
        g[1] = 0.0
    with pytest.raises(NashMTLSolveError, match="unbounded") as info:
        NashMTL(3).combine(g, torch.ones(3, dtype=g.dtype))
    assert info.value.cause == "unbounded"


def test_nash_mtl_warn_mode_keeps_the_previous_alpha_and_counts_every_failure():
    good = _grads(3, 6, 8)
    bad = good.clone()
    bad[2] = -(bad[0] + bad[1])
    method = NashMTL(3, on_failure="warn")
    _, alpha = method.combine(good, torch.ones(3, dtype=good.dtype))
    for n in (1, 2):
        with pytest.warns(RuntimeWarning, match="unbounded"):
            _, kept = method.combine(bad, torch.ones(3, dtype=good.dtype))
        torch.testing.assert_close(kept, alpha.float().double())
        assert method.failed_solves == n
    with pytest.raises(NashMTLSolveError, match="no previous alpha"):
        NashMTL(3, on_failure="warn").combine(bad, torch.ones(3, dtype=bad.dtype))


def test_nash_mtl_update_every_reads_gradients_only_on_update_steps():
    method = NashMTL(2, update_every=3)
    assert method.needs_at(1) is Needs.PARAM_GRADS  # nothing solved yet
    g = _grads(2, 4, 1, dtype=torch.float32)
    _, alpha = method.combine(g, torch.ones(2))
    assert [method.needs_at(s) for s in range(6)] == [Needs.PARAM_GRADS, Needs.LOSSES, Needs.LOSSES] * 2
    losses = torch.tensor([1.0, 2.0], requires_grad=True)
    total, w = method.objective(losses)
    torch.testing.assert_close(w, alpha)
    torch.testing.assert_close(total, (alpha * losses).sum())


# ----------------------------------------------------------------------------- Aligned-MTL


def test_aligned_mtl_aligned_gradients_have_condition_number_one():
    g = _grads(3, 8, 6) * torch.tensor([[1.0], [4.0], [0.5]], dtype=torch.float64)
    b = alignment_matrix(g @ g.T, torch.finfo(torch.float64).eps)
    aligned = b @ g
    sv = torch.linalg.svdvals(aligned)
    sigma_min = torch.linalg.svdvals(g).min()
    torch.testing.assert_close(sv, sigma_min.expand(3), rtol=1e-10, atol=0)  # cond = 1
    torch.testing.assert_close(aligned @ aligned.T, sigma_min**2 * torch.eye(3, dtype=g.dtype))
    direction, alpha = AlignedMTL(3).combine(g, torch.ones(3, dtype=g.dtype))
    torch.testing.assert_close(direction, aligned.sum(0))
    torch.testing.assert_close(alpha, b @ torch.ones(3, dtype=g.dtype))
    # rank-deficient: aligned on the range of G, equal nonzero singular values
    h = g.clone()
    h[2] = h[0] + h[1]
    aligned = alignment_matrix(h @ h.T, torch.finfo(torch.float64).eps) @ h
    sv = torch.linalg.svdvals(aligned)
    assert float(sv[2]) < 1e-8 and float(sv[0]) == pytest.approx(float(sv[1]), rel=1e-8)
    # pre-weights
    direction, _ = AlignedMTL(3, pre_weights=[1.0, 0.0, 2.0]).combine(g, torch.ones(3, dtype=g.dtype))
    b = alignment_matrix(g @ g.T, torch.finfo(torch.float64).eps)
    torch.testing.assert_close(direction, (b @ g)[0] + 2 * (b @ g)[2])


# ----------------------------------------------------------------------------- GradNorm


def test_gradnorm_moves_the_weight_towards_the_slower_task():
    g = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # equal gradient norms
    method = GradNorm(2)
    w_history = []
    for t in range(10):
        losses = torch.tensor([1.0 * 0.7**t, 1.0])  # task 0 learns, task 1 does not
        direction, weights = method.combine(g, losses)
        torch.testing.assert_close(direction, weights @ g)
        w_history.append(weights)
    final = method.task_weights
    assert float(final[1]) > float(final[0])
    assert float(final.sum()) == pytest.approx(2.0, abs=1e-6)
    assert float(w_history[-1][1]) > float(w_history[1][1])
    assert all(p is not method.task_weights for p in method.parameters())
    assert len(list(method.parameters())) == 0


# ----------------------------------------------------------------------------- through weighted_backward


class _TwoHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(4, 6)
        self.heads = nn.ModuleList([nn.Linear(6, 1), nn.Linear(6, 1)])

    def forward(self, x):
        z = torch.tanh(self.trunk(x))
        return [h(z) for h in self.heads], z


@pytest.mark.parametrize("name", GRADIENT_METHODS + ["imtl_l"])
def test_every_method_fills_the_shared_and_head_gradients_through_weighted_backward(name):
    torch.manual_seed(0)
    model = _TwoHead()
    method = build_weighting(name, 2)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, generator=gen)
    ys = [torch.randn(16, 1, generator=gen), -torch.randn(16, 1, generator=gen)]
    shared = list(model.trunk.parameters())
    heads = list(model.heads.parameters())
    for step in range(3):
        model.zero_grad(set_to_none=True)
        method.zero_grad(set_to_none=True)
        preds, z = model(x)
        losses = torch.stack([((p - y) ** 2).mean() for p, y in zip(preds, ys)])
        record = weighted_backward(method, losses, shared, heads, features=z, step=step)
        assert record.weights.shape == (2,) and bool(torch.isfinite(record.weights).all())
        for p in shared + heads:
            assert p.grad is not None and bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0
    if name in ("imtl", "imtl_l"):
        assert method.s.grad is not None and float(method.s.grad.abs().sum()) > 0
    if name == "mgda_ub":
        assert record.needs is Needs.FEATURE_GRADS


def test_registry_names_and_needs():
    expected = {
        "mgda": (MGDA, Needs.PARAM_GRADS),
        "mgda_ub": (MGDAUB, Needs.FEATURE_GRADS),
        "pcgrad": (PCGrad, Needs.PARAM_GRADS),
        "cagrad": (CAGrad, Needs.PARAM_GRADS),
        "imtl_g": (IMTLG, Needs.PARAM_GRADS),
        "imtl_l": (IMTLL, Needs.LOSSES),
        "imtl": (IMTL, Needs.PARAM_GRADS),
        "nash_mtl": (NashMTL, Needs.PARAM_GRADS),
        "aligned_mtl": (AlignedMTL, Needs.PARAM_GRADS),
        "gradnorm": (GradNorm, Needs.PARAM_GRADS),
    }
    for name, (cls, needs) in expected.items():
        assert WEIGHTINGS[name] is cls and cls.needs is needs and cls.name == name
        assert type(build_weighting(name, 3)) is cls


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("mgda", {"normalization": "l1"}),
        ("mgda", {"max_iter": 0}),
        ("mgda_ub", {"tol": -1.0}),
        ("pcgrad", {"reduction": "max"}),
        ("pcgrad", {"seed": -3}),
        ("cagrad", {"c": -0.1}),
        ("cagrad", {"rescale": 3}),
        ("cagrad", {"c": float("nan")}),
        ("imtl_g", {"on_singular": "ignore"}),
        ("imtl", {"on_singular": None}),
        ("nash_mtl", {"update_every": 0}),
        ("nash_mtl", {"max_norm": -1.0}),
        ("nash_mtl", {"on_failure": "skip"}),
        ("nash_mtl", {"tol": 1.5}),
        ("aligned_mtl", {"scale": "max"}),
        ("aligned_mtl", {"pre_weights": [1.0, 2.0]}),
        ("aligned_mtl", {"pre_weights": [1.0, float("inf"), 1.0]}),
        ("gradnorm", {"alpha": -1.0}),
        ("gradnorm", {"lr": 0.0}),
        ("gradnorm", {"optimizer": "lbfgs"}),
    ],
)
def test_bad_arguments_raise_value_error(name, kwargs):
    with pytest.raises(ValueError):
        build_weighting(name, 3, **kwargs)


def test_bad_gradient_shapes_raise_value_error():
    for name in GRADIENT_METHODS:
        method = build_weighting(name, 3)
        with pytest.raises(ValueError, match=r"\[3, P\]"):
            method.combine(torch.randn(2, 5), torch.ones(2))
        with pytest.raises(ValueError):
            method.combine(torch.randn(3), torch.ones(3))
