"""Trade-off maps of DRS against MAML (Gao & Sener 2020): special functions, Welch test, map, plot.

SciPy is a dev-only reference here; the library module itself never imports it.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

special = pytest.importorskip("scipy.special")
stats = pytest.importorskip("scipy.stats")

from metabridge.rl.tradeoff import (  # noqa: E402
    COLORBAR_LABEL,
    TradeoffMap,
    plot_tradeoff_map,
    regularized_incomplete_beta,
    seed_statistics,
    student_t_sf,
    tradeoff_map,
    welch_one_sided,
)

# ----------------------------------------------------------------------------- incomplete beta

X_GRID = np.array([0.0, 1e-12, 1e-5, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1 - 1e-6, 1 - 1e-12, 1.0])


def _rel_err(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)


def test_module_does_not_import_scipy() -> None:
    import metabridge.rl.tradeoff as mod

    source = open(mod.__file__, encoding="utf-8").read()
    assert "import scipy" not in source and "from scipy" not in source


@pytest.mark.parametrize(
    "ab", [[1e-3, 0.1, 0.5, 1.0, 2.5, 7.3, 10.0, 33.0], [100.0, 1e3, 1e4, 1e5, 1e6]], ids=["moderate", "large"]
)
def test_incomplete_beta_matches_scipy(ab: list[float]) -> None:
    vals = [0.1, 1.0, 4.0] + ab
    a, b, x = np.meshgrid(vals, vals, X_GRID, indexing="ij")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (log(0), overflow, non-convergence)
        got = regularized_incomplete_beta(a, b, x)
    ref = special.betainc(a, b, x)
    assert got.shape == a.shape and got.dtype == np.float64
    assert np.all((got >= 0) & (got <= 1))
    assert np.abs(got - ref).max() < 1e-10
    resolvable = ref > 1e-280
    # scipy itself is off by ~4e-11 relative at e.g. (10, 1e6, 1e-5) (mpmath agrees with us, below)
    assert _rel_err(got, ref)[resolvable].max() < (1e-10 if ab[0] < 100 else 1e-9)


def test_incomplete_beta_edges_and_identities() -> None:
    a = np.array([0.3, 1.0, 5.0, 1e4])
    assert np.all(regularized_incomplete_beta(a, 2.0, 0.0) == 0.0)
    assert np.all(regularized_incomplete_beta(a, 2.0, 1.0) == 1.0)
    x = np.linspace(0.0, 1.0, 41)
    np.testing.assert_allclose(regularized_incomplete_beta(1.0, 1.0, x), x, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(regularized_incomplete_beta(3.5, 1.0, x), x**3.5, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(regularized_incomplete_beta(1.0, 2.5, x), 1.0 - (1.0 - x) ** 2.5, rtol=1e-12, atol=1e-15)
    # symmetry I_x(a, b) = 1 - I_{1-x}(b, a) across the continued fraction's switch point
    lhs = regularized_incomplete_beta(2.0, 7.0, x)
    rhs = 1.0 - regularized_incomplete_beta(7.0, 2.0, 1.0 - x)
    np.testing.assert_allclose(lhs, rhs, atol=1e-14)
    # I_{1/2}(a, a) = 1/2
    np.testing.assert_allclose(
        regularized_incomplete_beta(np.array([0.5, 3.0, 1e3, 1e6]), np.array([0.5, 3.0, 1e3, 1e6]), 0.5),
        0.5,
        atol=1e-13,
    )
    # mpmath (40 digits): I_{1e-5}(10, 1e6) = 0.54208217098508463675...
    assert abs(regularized_incomplete_beta(10.0, 1e6, 1e-5) - 0.5420821709850846368) < 1e-14


def test_incomplete_beta_inputs() -> None:
    scalar = regularized_incomplete_beta(2.0, 3.0, 0.4)
    assert np.ndim(scalar) == 0 and isinstance(float(scalar), float)
    assert abs(float(scalar) - special.betainc(2.0, 3.0, 0.4)) < 1e-15
    got = regularized_incomplete_beta(torch.tensor([2.0, 3.0]), 1.5, torch.tensor([[0.2], [0.9]], dtype=torch.float64))
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got, special.betainc([2.0, 3.0], 1.5, [[0.2], [0.9]]), rtol=1e-13)
    assert np.isnan(regularized_incomplete_beta(2.0, 3.0, np.nan))
    for bad in [(0.0, 1.0, 0.5), (1.0, -1.0, 0.5), (1.0, 1.0, 1.5), (1.0, 1.0, -0.1)]:
        with pytest.raises(ValueError):
            regularized_incomplete_beta(*bad)


# ----------------------------------------------------------------------------- Student t


def test_student_t_sf_matches_scipy() -> None:
    t = np.array([-np.inf, -1e200, -50, -3, -1, -0.25, 0, 0.5, 1, 2, 3, 10, 50, 1e5, 1e200, np.inf])
    dof = np.array([0.3, 0.8, 1.0, 1.5, 2.0, 4.0, 7.7, 30.0, 1e3, 1e6])
    tt, dd = np.meshgrid(t, dof, indexing="ij")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = student_t_sf(tt, dd)
    ref = stats.t.sf(tt, dd)
    assert np.abs(got - ref).max() < 1e-12
    resolvable = ref > 1e-280
    assert _rel_err(got, ref)[resolvable].max() < 1e-9
    assert np.all(student_t_sf(np.inf, dof) == 0.0) and np.all(student_t_sf(-np.inf, dof) == 1.0)
    assert np.all(student_t_sf(0.0, dof) == 0.5)


def test_student_t_sf_closed_forms_and_normal_limit() -> None:
    t = np.array([-20.0, -1.0, -1e-8, 0.0, 1e-8, 0.3, 2.0, 1e3])
    # Cauchy (dof 1) and dof 2 have closed forms; for tiny t they are sharper than scipy (~3e-9 there)
    np.testing.assert_allclose(student_t_sf(t, 1.0), np.arctan2(1.0, t) / np.pi, rtol=1e-13)
    r = np.sqrt(2.0 + t * t)  # 0.5 - t / (2r), written without cancellation for t > 0
    np.testing.assert_allclose(
        student_t_sf(t, 2.0), np.where(t > 0, 1.0 / (r * (r + t)), 0.5 - t / (2.0 * r)), rtol=1e-13
    )
    np.testing.assert_allclose(student_t_sf(t, np.inf), stats.norm.sf(t), rtol=1e-13)
    with pytest.raises(ValueError):
        student_t_sf(1.0, 0.0)
    assert np.isnan(student_t_sf(np.nan, 3.0))


# ----------------------------------------------------------------------------- Welch


@pytest.mark.parametrize("seed", range(6))
def test_welch_matches_scipy_ttest_ind(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n1, n2 = int(rng.integers(2, 12)), int(rng.integers(2, 12))
    x = rng.normal(rng.normal(), rng.uniform(0.2, 3.0), n1)
    y = rng.normal(rng.normal(), rng.uniform(0.2, 3.0), n2)
    t, dof, p = welch_one_sided(x.mean(), x.std(ddof=1), n1, y.mean(), y.std(ddof=1), n2)
    ref = stats.ttest_ind(x, y, equal_var=False, alternative="greater" if t > 0 else "less")
    assert t == pytest.approx(ref.statistic, rel=1e-12)
    assert dof == pytest.approx(ref.df, rel=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
    assert 0.0 <= p <= 0.5
    # swapping the samples flips t, keeps dof and the one-sided p of the observed direction
    t2, dof2, p2 = welch_one_sided(y.mean(), y.std(ddof=1), n2, x.mean(), x.std(ddof=1), n1)
    assert t2 == pytest.approx(-t) and dof2 == pytest.approx(dof) and p2 == pytest.approx(p, rel=1e-12)


def test_welch_vectorised_and_paper_dof() -> None:
    rng = np.random.default_rng(7)
    m1, m2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    s1, s2 = rng.uniform(0.1, 2.0, (4, 3)), rng.uniform(0.1, 2.0, (4, 3))
    n = 5
    t, dof, p = welch_one_sided(m1, s1, n, m2, s2, n)
    tp, dofp, pp = welch_one_sided(m1, s1, n, m2, s2, n, paper_dof=True)
    assert t.shape == dof.shape == p.shape == (4, 3)
    np.testing.assert_allclose(tp, t)
    # the reference code's nu, written out as in summary.py
    nu_ref = (s1**2 / n + s2**2 / n) ** 2 / (s1**4 / n / (n - 1) + s2**4 / n / (n - 1))
    np.testing.assert_allclose(dofp, nu_ref, rtol=1e-12)
    np.testing.assert_allclose(dofp, dof / n, rtol=1e-12)  # equal n: the textbook value over n
    np.testing.assert_allclose(pp, 0.5 * special.betainc(nu_ref / 2, 0.5, nu_ref / (nu_ref + tp**2)), rtol=1e-9)
    assert np.all(pp >= p)  # fewer degrees of freedom: heavier tails, larger p
    assert np.all((dof >= n - 1 - 1e-12) & (dof <= 2 * (n - 1) + 1e-12))


def test_welch_zero_variance() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t, dof, p = welch_one_sided(1.0, 0.0, 5, 1.0, 0.0, 5)
        assert (t, p) == (0.0, 0.5) and dof == 8.0
        t, dof, p = welch_one_sided(2.0, 0.0, 5, 1.0, 0.0, 4)
        assert t == np.inf and p == 0.0 and np.isfinite(dof)
        t, dof, p = welch_one_sided(1.0, 0.0, 5, 2.0, 0.0, 5)
        assert t == -np.inf and p == 0.0
        # one variance zero: the limit of Welch-Satterthwaite, dof = n_other - 1
        t, dof, p = welch_one_sided(1.0, 0.0, 5, 2.0, 1.0, 4)
        assert dof == pytest.approx(3.0) and t == pytest.approx(-2.0)
        assert p == pytest.approx(stats.t.sf(2.0, 3.0), rel=1e-10)
        t, dof, p = welch_one_sided(
            np.array([1.0, 1.0, 3.0]), 0.0, 5, 1.0, np.array([0.0, 1.0, 0.0]), 5, paper_dof=True
        )
        assert not np.any(np.isnan(t) | np.isnan(dof) | np.isnan(p))
        np.testing.assert_allclose(p, [0.5, 0.5, 0.0])
    with pytest.raises(ValueError):
        welch_one_sided(0.0, 1.0, 1, 0.0, 1.0, 5)
    with pytest.raises(ValueError):
        welch_one_sided(0.0, -1.0, 3, 0.0, 1.0, 5)


# ----------------------------------------------------------------------------- seeds


def test_seed_statistics_from_trials() -> None:
    rng = np.random.default_rng(1)
    trials = rng.normal(3.0, 2.0, size=(5, 20, 3, 2))
    mean, stderr = seed_statistics(trials)
    seed_means = trials.mean(1)
    seed_se = trials.std(1) / math.sqrt(20)  # np.std: ddof=0, as summary.py
    np.testing.assert_allclose(mean, seed_means.mean(0))
    np.testing.assert_allclose(stderr, np.sqrt((seed_means.var(0) + (seed_se**2).mean(0)) / 5))
    # the same from per-seed summaries, and from torch
    m2, s2 = seed_statistics(seed_means=seed_means, seed_stderrs=torch.from_numpy(seed_se))
    np.testing.assert_allclose(m2, mean)
    np.testing.assert_allclose(s2, stderr)
    # ddof=1 for both variances
    m3, s3 = seed_statistics(trials, ddof=1)
    se1 = trials.std(1, ddof=1) / math.sqrt(20)
    np.testing.assert_allclose(s3, np.sqrt((seed_means.var(0, ddof=1) + (se1**2).mean(0)) / 5))


def test_seed_statistics_ragged_and_defaults() -> None:
    runs = [[1.0, 2.0, 3.0], [2.0, 4.0], [0.5, 0.5, 0.5, 1.5]]
    mean, stderr = seed_statistics(runs)
    means = np.array([np.mean(r) for r in runs])
    ses = np.array([np.std(r) / math.sqrt(len(r)) for r in runs])
    assert float(mean) == pytest.approx(means.mean())
    assert float(stderr) == pytest.approx(math.sqrt((means.var() + (ses**2).mean()) / 3))
    m, s = seed_statistics(seed_means=[1.0, 2.0, 3.0])  # stderrs default to zero
    assert float(m) == 2.0 and float(s) == pytest.approx(math.sqrt(np.var([1.0, 2.0, 3.0]) / 3))
    with pytest.raises(ValueError):
        seed_statistics()
    with pytest.raises(ValueError):
        seed_statistics(seed_means=[1.0, 2.0], seed_stderrs=[0.1])


# ----------------------------------------------------------------------------- map


def _reference_map(drs: np.ndarray, maml: np.ndarray, drs_se: np.ndarray, maml_se: np.ndarray) -> np.ndarray:
    """summary.py's averaging and get_tradeoff_map (paper degrees of freedom), with scipy's betainc."""
    n = drs.shape[0]
    means = np.stack([drs.mean(0), maml.mean(0)])
    ses = np.stack([np.sqrt((drs.var(0) + (drs_se**2).mean(0)) / n), np.sqrt((maml.var(0) + (maml_se**2).mean(0)) / n)])
    out = np.zeros(means.shape[1:])
    for c in range(out.shape[0]):
        for u in range(out.shape[1]):
            ts, cs = math.sqrt(n) * ses[1, c, u], math.sqrt(n) * ses[0, c, u]  # target MAML, comparison DRS
            nu = (ts**2 / n + cs**2 / n) ** 2 / (ts**4 / n / (n - 1) + cs**4 / n / (n - 1))
            t = (means[1, c, u] - means[0, c, u]) / math.sqrt(ts**2 / n + cs**2 / n)
            p = 0.5 * special.betainc(nu / 2, 0.5, nu / (t**2 + nu))
            out[c, u] = (1.0 if means[0, c, u] > means[1, c, u] else -1.0) * (1 - 2 * p)
    return out


def _synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """5 seeds x 6 checkpoints x 4 updates: DRS clearly better at k = 0, MAML clearly better at k = 3."""
    rng = np.random.default_rng(seed)
    shape = (5, 6, 4)
    base = np.linspace(0.0, 5.0, 6)[None, :, None]
    gap = np.array([4.0, 0.5, -0.5, -4.0])[None, None, :]  # DRS - MAML per update count
    maml = base + rng.normal(0.0, 0.3, shape)
    drs = base + gap + rng.normal(0.0, 0.3, shape)
    return drs, maml, rng.uniform(0.05, 0.2, shape), rng.uniform(0.05, 0.2, shape)


def test_tradeoff_map_sign_and_range() -> None:
    drs, maml, drs_se, maml_se = _synthetic()
    res = tradeoff_map(drs, maml, drs_se, maml_se)
    assert isinstance(res, TradeoffMap) and res.shape == (6, 4)
    for arr in (res.value, res.p, res.t, res.dof, res.drs_mean, res.drs_stderr, res.maml_mean, res.maml_stderr):
        assert arr.shape == (6, 4) and np.all(np.isfinite(arr))
    assert np.all((res.value >= -1) & (res.value <= 1)) and np.all((res.p >= 0) & (res.p <= 0.5))
    assert np.all(res.value[:, 0] > 0.99) and np.all(res.value[:, 3] < -0.99)  # clear wins either way
    np.testing.assert_array_equal(np.sign(res.value), np.where(res.drs_mean > res.maml_mean, 1.0, -1.0))
    np.testing.assert_array_equal(res.sign, np.sign(res.value))
    assert res.significant(0.01)[:, [0, 3]].all()
    np.testing.assert_allclose(res.drs_mean, drs.mean(0))
    np.testing.assert_allclose(res.value, res.sign * (1 - 2 * res.p))
    # same as scipy's Welch on the seed summaries (s_j = sqrt(n) stderr_j)
    _, p_ref = stats.ttest_ind_from_stats(
        res.drs_mean,
        math.sqrt(5) * res.drs_stderr,
        5,
        res.maml_mean,
        math.sqrt(5) * res.maml_stderr,
        5,
        equal_var=False,
    )
    np.testing.assert_allclose(res.p, p_ref / 2, rtol=1e-9)  # one-sided = two-sided / 2
    # swapping the methods negates the map
    swapped = tradeoff_map(maml, drs, maml_se, drs_se)
    np.testing.assert_allclose(swapped.value, -res.value, atol=1e-12)


def test_tradeoff_map_reproduces_reference_code_with_paper_dof() -> None:
    drs, maml, drs_se, maml_se = _synthetic(3)
    drs[:, :, 1:3] += np.random.default_rng(4).normal(0.0, 0.6, (5, 6, 2))  # murkier middle columns
    res = tradeoff_map(drs, maml, drs_se, maml_se, paper_dof=True)
    np.testing.assert_allclose(res.value, _reference_map(drs, maml, drs_se, maml_se), atol=1e-9)
    textbook = tradeoff_map(drs, maml, drs_se, maml_se)
    assert np.all(np.abs(textbook.value) >= np.abs(res.value) - 1e-12)  # more dof: more confident


def test_tradeoff_map_zero_variance_and_json() -> None:
    drs = np.zeros((5, 3, 2))
    maml = np.zeros((5, 3, 2))
    drs[:, 1, :] = 1.0  # identical seeds, no trial noise: DRS better, infinitely sure
    maml[:, 2, :] = 1.0  # MAML better
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = tradeoff_map(torch.from_numpy(drs), maml)
    np.testing.assert_array_equal(res.value, [[0.0, 0.0], [1.0, 1.0], [-1.0, -1.0]])
    np.testing.assert_array_equal(res.p, [[0.5, 0.5], [0.0, 0.0], [0.0, 0.0]])
    payload = json.loads(json.dumps(res.to_json(), allow_nan=False))
    assert payload["value"] == [[0.0, 0.0], [1.0, 1.0], [-1.0, -1.0]]
    assert payload["t"][1] == [None, None]  # t = +inf is not strict JSON
    assert payload["n_drs"] == 5 and payload["n_maml"] == 5 and payload["paper_dof"] is False
    assert (payload["checkpoints"], payload["updates"]) == (3, 2)


def test_tradeoff_map_validates_shapes() -> None:
    with pytest.raises(ValueError):
        tradeoff_map(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError):
        tradeoff_map(np.zeros((5, 3, 2)), np.zeros((5, 4, 2)))
    with pytest.raises(ValueError):
        tradeoff_map(np.zeros((1, 3, 2)), np.zeros((5, 3, 2)))
    res = tradeoff_map(np.ones((3, 2, 2)), np.zeros((6, 2, 2)))  # unequal seed counts are fine
    assert (res.n_drs, res.n_maml) == (3, 6) and np.all(res.value == 1.0)


# ----------------------------------------------------------------------------- plot


def test_plot_tradeoff_map(tmp_path) -> None:
    from matplotlib.figure import Figure

    res = tradeoff_map(*_synthetic()[:2])
    budgets = np.arange(1, 7) * 1.6e6  # training samples
    fig = plot_tradeoff_map(res, budgets, [0, 1, 2, 3], "HalfCheetahVel: DRS-TRPO vs MAML-TRPO")
    assert isinstance(fig, Figure)
    ax, cax = fig.axes
    assert cax.get_ylabel() == COLORBAR_LABEL == "sign(DRS - MAML) (1 - 2p)"
    assert ax.get_title().startswith("HalfCheetahVel") and len(ax.texts) == 6 * 4
    mesh = ax.collections[0]
    assert mesh.get_cmap().name == "RdBu_r" and mesh.get_clim() == (-1.0, 1.0)
    path = tmp_path / "map.png"
    fig.savefig(path, dpi=60)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    contour = plot_tradeoff_map(res.value, kind="contourf", annotate=False)
    assert len(contour.axes[0].texts) == 0
    contour.savefig(tmp_path / "contour.png", dpi=40)
    big = plot_tradeoff_map(np.zeros((21, 6)))  # larger than 12 x 8 in one direction: no annotation
    assert len(big.axes[0].texts) == 0
    with pytest.raises(ValueError):
        plot_tradeoff_map(res, budgets[:3])
    with pytest.raises(ValueError):
        plot_tradeoff_map(res, kind="surface")
