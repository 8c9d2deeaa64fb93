"""NTK-parameterised MLPs, the empirical NTK and the kernel regime (metabridge.theory.ntk)."""

from __future__ import annotations

import math

import pytest
import torch

from metabridge.models.mlp import MLP
from metabridge.theory.closeness import ClosenessSettings, _build, closeness_experiment
from metabridge.theory.ntk import empirical_ntk, feature_movement, kernel_gd_prediction, ntk_mlp

F64 = torch.float64


def _ntk_by_loops(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """J(x1) J(x2)^T from one autograd call per example (no torch.func)."""
    params = list(model.parameters())

    def rows(x: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(x.shape[0]):
            grads = torch.autograd.grad(model(x[i : i + 1]).sum(), params)
            out.append(torch.cat([g.flatten() for g in grads]))
        return torch.stack(out)

    return rows(x1) @ rows(x2).T


@pytest.mark.parametrize("make", [lambda: ntk_mlp(2, 1, 7, 2), lambda: MLP(2, 1, hidden=(5, 4))])
def test_empirical_ntk_equals_per_example_autograd_loop(make) -> None:
    torch.manual_seed(0)
    model = make().double()
    x1, x2 = torch.randn(6, 2, dtype=F64), torch.randn(4, 2, dtype=F64)
    ref = _ntk_by_loops(model, x1, x2)
    assert torch.allclose(empirical_ntk(model, x1, x2), ref, atol=1e-12, rtol=1e-12)
    gram = empirical_ntk(model, x1, x1)
    assert torch.allclose(gram, gram.T, atol=1e-12) and float(torch.linalg.eigvalsh(gram)[0]) > -1e-10


def test_ntk_mlp_forward_is_the_ntk_parameterisation() -> None:
    torch.manual_seed(1)
    model = ntk_mlp(3, 1, 5, 2, beta=0.5).double()
    x = torch.randn(4, 3, dtype=F64)
    (l1, _, l2, _, scale) = model.body
    h = torch.relu(x @ l1.weight.T / math.sqrt(3) + 0.5 * l1.bias)
    h = torch.relu(h @ l2.weight.T / math.sqrt(5) + 0.5 * l2.bias)
    expect = h @ model.head.weight.T / math.sqrt(5) + model.head.bias
    assert torch.allclose(model(x), expect, atol=1e-12)
    assert model.feature_dim == 5 and scale.factor == pytest.approx(1 / math.sqrt(5))


def test_ntk_at_init_concentrates_as_width_grows() -> None:
    """Across initial draws the NTK's spread falls like 1/sqrt(width); its mean stays put."""
    x = torch.tensor([[-2.0], [0.5], [3.0]], dtype=F64)

    def draws(width: int) -> torch.Tensor:
        out = []
        for seed in range(12):
            torch.manual_seed(seed)
            out.append(empirical_ntk(ntk_mlp(1, 1, width, 2).double(), x, x).flatten())
        return torch.stack(out)

    narrow, wide = draws(8), draws(512)
    ratio = float(wide.std(0).mean() / narrow.std(0).mean())
    assert ratio < 0.35, ratio  # sqrt(8 / 512) = 0.125 expected, up to sampling noise
    assert torch.allclose(wide.mean(0), narrow.mean(0), rtol=0.5)


def test_kernel_gd_prediction_equals_iterated_function_space_steps() -> None:
    torch.manual_seed(2)
    a = torch.randn(5, 3, dtype=F64)
    theta = a @ a.T  # rank 3: two zero eigenvalues
    cross = torch.randn(2, 3, dtype=F64) @ a.T
    y, f0, g0 = torch.randn(5, dtype=F64), torch.randn(5, dtype=F64), torch.randn(2, dtype=F64)
    lr, steps = 0.05, 37
    f, g = f0.clone(), g0.clone()
    for _ in range(steps):
        r = f - y
        f, g = f - (2 * lr / 5) * theta @ r, g - (2 * lr / 5) * cross @ r
    assert torch.allclose(kernel_gd_prediction(theta, cross, f0, g0, y, lr, steps), g, atol=1e-10)


def _train_gd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = ((model(x).squeeze(-1) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_wide_ntk_network_trains_like_its_kernel_and_a_narrow_one_does_not() -> None:
    """Gradient descent on a wide NTK-parameterised net ~ kernel regression with its NTK at init."""
    x = torch.linspace(-3, 3, 8, dtype=F64)[:, None]
    y = 2.0 * torch.sin(x.squeeze(-1))
    xt = torch.tensor([[-2.5], [-0.7], [1.1], [2.2]], dtype=F64)

    def error(width: int) -> float:
        errs = []
        for seed in range(3):
            torch.manual_seed(seed)
            net = ntk_mlp(1, 1, width, 2).double()
            with torch.no_grad():
                f0, g0 = net(x).squeeze(-1), net(xt).squeeze(-1)
            pred = kernel_gd_prediction(empirical_ntk(net, x, x), empirical_ntk(net, xt, x), f0, g0, y, 0.05, 60)
            body0 = ntk_mlp(1, 1, width, 2).double()
            body0.load_state_dict(net.state_dict())
            _train_gd(net, x, y, 0.05, 60)
            with torch.no_grad():
                errs.append(float((net(xt).squeeze(-1) - pred).norm() / (pred - g0).norm()))
            assert feature_movement(body0.body, body0.body, xt) == 0.0
        return sum(errs) / len(errs)

    narrow, wide = error(8), error(1024)
    assert wide < 0.05 and wide < narrow / 3, (narrow, wide)


def test_closeness_experiment_in_ntk_parameterisation_records_feature_movement() -> None:
    cfg = ClosenessSettings(
        widths=(8,),
        depths=(2,),
        train_tasks=5,
        steps=3,
        meta_batch=2,
        k_shot=5,
        q_query=5,
        test_tasks=6,
        parameterization="ntk",
        optimizer="sgd",
        outer_lr=0.05,
    )
    torch.manual_seed(0)
    mtl = _build("mtl", 64, 2, cfg)
    assert 0.8 < float(mtl.heads.detach().std()) < 1.2  # MTL's heads at the NTK (GBML head's) scale
    (row,) = closeness_experiment(cfg)["rows"]
    for name in ("mtl", "anil", "maml"):
        assert 0.0 < row[f"featmove_{name}"] < 10.0
    assert all(math.isfinite(v) for k, v in row.items() if k.startswith(("gap", "mse")) and isinstance(v, float))
