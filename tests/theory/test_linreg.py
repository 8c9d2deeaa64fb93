"""Closed forms of Gao & Sener's meta-linear regression against independent computations."""

from __future__ import annotations

import pytest
import torch

from metabridge.tasks.linear_regression import LinearRegressionFamily
from metabridge.theory.linreg import (
    adapt_one_step,
    drs_estimator,
    error_split,
    expected_loss_form,
    expected_test_loss,
    fit_drs,
    fit_maml,
    maml_estimator,
    monte_carlo_test_loss,
    sample_estimators,
)
from metabridge.theory.linreg_sweep import linreg_sweep

F64 = torch.float64


def _small_batch(seed: int = 0, m: int = 4, n: int = 3, p: int = 3):
    fam = LinearRegressionFamily(dim=p, coupling=0.5)
    return fam.sample(m, n, n, torch.Generator().manual_seed(seed))


def _minimise(objective, p: int) -> torch.Tensor:
    """Brute force: L-BFGS in float64 from zero on an autograd objective."""
    w = torch.zeros(p, dtype=F64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w], lr=1.0, max_iter=500, tolerance_grad=1e-13, tolerance_change=1e-15, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = objective(w)
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    return w.detach()


def test_drs_matches_numerical_minimisation() -> None:
    b = _small_batch(1)
    x = torch.cat([b.support_x, b.query_x], 1)
    y = torch.cat([b.support_y, b.query_y], 1)[..., 0]
    w_brute = _minimise(lambda w: ((x @ w - y) ** 2).sum(), 3)
    assert torch.allclose(fit_drs(b), w_brute, atol=1e-7)


@pytest.mark.parametrize("alpha", [0.1, 0.4, 0.9])
def test_maml_matches_numerical_minimisation_through_autograd_inner_step(alpha: float) -> None:
    """The MAML objective is built with an autograd inner step (not with A_t), then minimised."""
    b = _small_batch(2)
    x1, y1 = b.support_x, b.support_y[..., 0]
    x2, y2 = b.query_x, b.query_y[..., 0]
    n = x1.shape[1]

    def objective(w: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for i in range(x1.shape[0]):
            inner = ((x1[i] @ w - y1[i]) ** 2).sum() / (2 * n)
            (grad,) = torch.autograd.grad(inner, w, create_graph=True)
            w_i = w - alpha * grad
            total = total + ((x2[i] @ w_i - y2[i]) ** 2).sum()
        return total

    w_brute = _minimise(objective, 3)
    assert torch.allclose(fit_maml(b, alpha), w_brute, atol=1e-7)


def test_alpha_zero_reduces_both_to_ordinary_least_squares() -> None:
    b = _small_batch(3, m=5, n=4, p=3)
    x_all = torch.cat([b.support_x, b.query_x], 1).reshape(-1, 3)
    y_all = torch.cat([b.support_y, b.query_y], 1).reshape(-1, 1)
    ols_all = torch.linalg.lstsq(x_all, y_all).solution[:, 0]
    ols_outer = torch.linalg.lstsq(b.query_x.reshape(-1, 3), b.query_y.reshape(-1, 1)).solution[:, 0]
    assert torch.allclose(fit_drs(b), ols_all, atol=1e-10)
    assert torch.allclose(fit_maml(b, 0.0), ols_outer, atol=1e-10)
    # with the outer set given all 2N points, alpha = 0 MAML is exactly DRS
    x = torch.cat([b.support_x, b.query_x], 1)
    y = torch.cat([b.support_y, b.query_y], 1)[..., 0]
    assert torch.allclose(maml_estimator(x, y, x, y, 0.0), drs_estimator(x, y), atol=1e-10)


def test_adapt_one_step_is_a_gradient_step() -> None:
    b = _small_batch(4)
    w = torch.randn(3, dtype=F64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    x, y = b.support_x[0], b.support_y[0, :, 0]
    loss = ((x @ w - y) ** 2).mean() / 2
    (g,) = torch.autograd.grad(loss, w)
    assert torch.allclose(adapt_one_step(w.detach(), x, y, 0.3), w.detach() - 0.3 * g, atol=1e-12)


def test_expected_loss_before_adaptation_by_hand() -> None:
    """kappa = 0, alpha = 0: F(w) = (beta/2)(||w - w_bar||^2 + p sigma_w^2) + sigma^2."""
    fam = LinearRegressionFamily(dim=4, beta=3.0, noise_std=0.2, weight_std=0.7)
    w = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=F64)
    hand = 1.5 * (float(((w - 1.0) ** 2).sum()) + 4 * 0.49) + 0.04
    assert abs(float(expected_test_loss(w, fam, 0.0, 5)) - hand) < 1e-12


@pytest.mark.parametrize("coupling", [0.0, 1.0])
@pytest.mark.parametrize("alpha,n", [(0.0, 4), (0.3, 4), (0.7, 2)])
def test_exact_expected_loss_matches_monte_carlo(coupling: float, alpha: float, n: int) -> None:
    fam = LinearRegressionFamily(dim=4, beta=2.0, noise_std=0.5, weight_std=0.5, coupling=coupling)
    g = torch.Generator().manual_seed(10)
    w = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [2.0, -1.0, 0.5, 1.5]], dtype=F64)
    exact = expected_test_loss(w, fam, alpha, n)
    mean, se = monte_carlo_test_loss(w, fam, alpha, n, 20000, g)
    z = (exact - mean) / se
    assert float(z.abs().max()) < 4.0, (exact, mean, se)


def test_exact_expected_loss_matches_fully_sampled_queries() -> None:
    fam = LinearRegressionFamily(dim=3, coupling=0.5)
    w = torch.tensor([0.5, 1.5, -0.5], dtype=F64)
    exact = expected_test_loss(w, fam, 0.4, 3)
    mean, se = monte_carlo_test_loss(w, fam, 0.4, 3, 20000, torch.Generator().manual_seed(11), query_points=8)
    assert abs(float((exact - mean) / se)) < 4.0


def test_exact_loss_detects_a_wrong_formula() -> None:
    """Guard that the Monte Carlo check has power: a 5% error in the loss is many standard errors off."""
    fam = LinearRegressionFamily(dim=4, coupling=1.0)
    w = torch.zeros(1, 4, dtype=F64)
    exact = expected_test_loss(w, fam, 0.3, 4)
    mean, se = monte_carlo_test_loss(w, fam, 0.3, 4, 20000, torch.Generator().manual_seed(12))
    assert float(((1.05 * exact - mean) / se).abs()) > 4.0


def test_population_solutions_are_the_argmins_before_and_after() -> None:
    """With many tasks, DRS -> argmin F_0 and MAML -> argmin F_alpha (used by the error split E9)."""
    fam = LinearRegressionFamily(dim=3, beta=2.0, noise_std=0.3, weight_std=0.3, coupling=1.0)
    alpha, n = 0.8, 10
    w_drs, w_maml = sample_estimators(fam, 40000, n, alpha, 1, torch.Generator().manual_seed(13))
    pre, post = expected_loss_form(fam, 0.0, n), expected_loss_form(fam, alpha, n)
    gap = float((pre.argmin - post.argmin).norm())
    assert gap > 0.1
    assert float((w_drs[0] - pre.argmin).norm()) < 0.1 * gap
    assert float((w_maml[0] - post.argmin).norm()) < 0.1 * gap


def test_error_split() -> None:
    fam = LinearRegressionFamily(dim=3, coupling=1.0)
    split = error_split(fam, 20, 5, 0.3, 50, torch.Generator().manual_seed(14))
    post, pre = expected_loss_form(fam, 0.3, 5), expected_loss_form(fam, 0.0, 5)
    assert split["maml"].modeling == 0.0
    expected_mod = post.scale * (pre.center - post.center) ** 2 * float((post.w_bar**2).sum())
    assert abs(split["drs"].modeling - expected_mod) < 1e-10 and expected_mod > 0
    for s in split.values():
        assert abs(s.modeling + s.optimization - s.total_excess) < 1e-9
    flat = error_split(LinearRegressionFamily(dim=3), 20, 5, 0.3, 10, torch.Generator().manual_seed(14))
    assert abs(flat["drs"].modeling) < 1e-12


def test_without_coupling_before_and_after_rank_estimators_alike() -> None:
    fam = LinearRegressionFamily(dim=4)
    res = linreg_sweep(fam, [6, 12], [2, 6], [0.2, 0.5], trials=40, seed=0)
    assert res["p_before"] == res["p_after"]
    coupled = linreg_sweep(LinearRegressionFamily(dim=4, coupling=1.0), [30], [20], [0.5], trials=40, seed=0)
    assert coupled["p_after"][0][0][0] > coupled["p_before"][0][0][0] + 0.3


def test_too_few_points_raise() -> None:
    with pytest.raises(ValueError, match="singular"):
        sample_estimators(LinearRegressionFamily(dim=8), 2, 2, 0.1, 1, torch.Generator())


def test_linreg_command_writes_one_result_per_coupling(tmp_path, capsys) -> None:
    import json

    from metabridge.theory.commands import LinregConfig, run_linreg

    config = LinregConfig(
        out=tmp_path, dim=2, coupling=[0, 1], num_tasks=[2, 4], points=[2, 3], alphas=[0.2], trials=3, mc_tasks=200
    )
    written = run_linreg(config)
    assert [p.name for p in written] == ["theory_linreg_kappa0.json", "theory_linreg_kappa1.json"]
    for tag in ("kappa0", "kappa1"):
        res = json.loads((tmp_path / f"theory_linreg_{tag}.json").read_text())
        assert len(res["monte_carlo_check"]["rows"]) == 4  # drs, maml at alpha 0 and 0.2
        assert (tmp_path / f"theory_linreg_{tag}_heatmap.png").exists()
    assert "P(MAML beats DRS)" in capsys.readouterr().out
    assert LinregConfig.from_file(tmp_path / "config.json") == config  # the resolved settings reproduce the run


def test_linreg_paper_sweep_replaces_the_grid() -> None:
    from metabridge.theory.commands import PAPER_LINREG, LinregConfig

    config = LinregConfig(paper=True, num_tasks=[3])
    assert config.num_tasks == PAPER_LINREG["num_tasks"] and config.trials == 1000


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_tasks": [2, 0]}, "num_tasks.1: must be > 0"),
        ({"alphas": [-0.1]}, "alphas.0: must be >= 0"),
        ({"coupling": ["x"]}, "coupling.0"),
        ({"trials": 0}, "trials: must be > 0"),
        ({"beta": float("nan")}, "beta: must be a finite number"),
        ({"dim": 8, "num_tasks": [2], "points": [2]}, "below dim"),
    ],
)
def test_linreg_settings_refuse_bad_values_in_one_line_naming_the_field(kwargs, message) -> None:
    from pydantic import ValidationError

    from metabridge.config import describe_validation_error
    from metabridge.theory.commands import LinregConfig

    with pytest.raises(ValidationError) as err:
        LinregConfig(**kwargs)
    text = describe_validation_error(err.value)
    assert message in text and "\n" not in text


def test_cli_theory_linreg_spelling(tmp_path) -> None:
    import json

    from cli_runner import run_cli

    res = run_cli(
        [
            "theory",
            "linreg",
            "--out",
            str(tmp_path),
            "--dim",
            "2",
            "--coupling",
            "0",
            "--num-tasks",
            "2",
            "4",
            "--points",
            "2",
            "3",
            "--alphas",
            "0.2",
            "--trials",
            "3",
            "--mc-tasks",
            "200",
        ]
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "config.json").read_text())["num_tasks"] == [2, 4]
    assert (tmp_path / "theory_linreg_kappa0.json").exists() and not (tmp_path / "theory_linreg_kappa1.json").exists()
    res = run_cli(["theory", "linreg", "--out", str(tmp_path / "never"), "--alphas", "-0.1"])
    assert res.exit_code == 2 and "alphas" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


def test_every_theory_setting_is_described() -> None:
    from metabridge.theory.commands import ClosenessConfig, LinregConfig

    for model in (LinregConfig, ClosenessConfig):
        assert all(info.description for info in model.model_fields.values()), model.__name__
        assert str(model.model_fields["out"].default).startswith("runs/theory/")
