"""Gao & Sener's linear-regression task family: Haar rotations, covariances, seeding."""

from __future__ import annotations

import math

import pytest
import torch

from metabridge.tasks.batch import TaskBatch
from metabridge.tasks.linear_regression import LinearRegressionFamily, haar_orthogonal


def test_haar_rotation_is_orthogonal() -> None:
    u = haar_orthogonal(300, 6, torch.Generator().manual_seed(0))
    eye = torch.eye(6, dtype=torch.float64)
    assert torch.allclose(u.transpose(-1, -2) @ u, eye.expand(300, 6, 6), atol=1e-12)
    assert torch.allclose(u @ u.transpose(-1, -2), eye.expand(300, 6, 6), atol=1e-12)


def test_haar_rotation_moments() -> None:
    """Haar on O(p): E[U_ij] = 0, E[U_ij^2] = 1/p, E[tr U] = 0, E[(tr U)^2] = 1.

    A QR without the sign fix gives U_11 of one fixed sign (LAPACK convention), so
    E[U_11] would be far from 0 and this test would fail.
    """
    p, n = 4, 20000
    u = haar_orthogonal(n, p, torch.Generator().manual_seed(1))
    se = math.sqrt(1.0 / p / n)
    assert abs(float(u[:, 0, 0].mean())) < 4 * se
    assert abs(float(u[:, p - 1, 0].mean())) < 4 * se
    assert abs(float((u**2).mean(0).mean()) - 1.0 / p) < 1e-3
    assert torch.allclose((u**2).mean(0), torch.full((p, p), 1.0 / p, dtype=torch.float64), atol=0.02)
    tr = torch.diagonal(u, dim1=-2, dim2=-1).sum(-1)
    assert abs(float(tr.mean())) < 4 / math.sqrt(n)
    assert abs(float((tr**2).mean()) - 1.0) < 0.06
    # both components of O(p): determinants +1 and -1 equally often
    det_plus = float((torch.linalg.det(u) > 0).double().mean())
    assert abs(det_plus - 0.5) < 4 * 0.5 / math.sqrt(n)


def test_inputs_have_task_covariance_and_labels_follow_weights() -> None:
    fam = LinearRegressionFamily(dim=3, beta=2.0, noise_std=0.3)
    g = torch.Generator().manual_seed(2)
    params, _ = fam.sample_params(2, g)
    x, y = fam.sample_data(params, 40000, g)
    for i in range(2):
        emp = x[i].T @ x[i] / x.shape[1]
        assert torch.allclose(emp, params.covariance[i], atol=0.04)
        resid = y[i] - x[i] @ params.weights[i]
        assert abs(float(resid.var()) - 0.09) < 0.005
    assert float(params.eigenvalues.min()) >= 0.0 and float(params.eigenvalues.max()) <= 2.0


def test_mean_covariance_is_isotropic_and_weights_centered() -> None:
    fam = LinearRegressionFamily(dim=4, beta=3.0, weight_std=0.5, coupling=1.0)
    params, _ = fam.sample_params(20000, torch.Generator().manual_seed(3))
    mean_q = params.covariance.mean(0)
    assert torch.allclose(mean_q, 1.5 * torch.eye(4, dtype=torch.float64), atol=0.03)
    # the coupling term has mean zero: E[w] = w_mean
    assert torch.allclose(params.weights.mean(0), torch.ones(4, dtype=torch.float64), atol=0.03)
    # and w - w_mean is correlated with Q w_mean (kappa = 1: w = (2Q/beta) w_mean + noise)
    wm = fam.mean_weights()
    expected = (2.0 / 3.0) * (params.covariance @ wm)
    noise = params.weights - expected
    assert abs(float(noise.std()) - 0.5) < 0.01
    qw = params.covariance @ wm
    cross = ((noise - noise.mean(0)) * (qw - qw.mean(0))).mean(0)
    assert float(cross.abs().max()) < 0.03


def test_batch_shapes_and_seed_reproducibility() -> None:
    fam = LinearRegressionFamily(dim=5)
    a = fam.sample(7, 3, 3, torch.Generator().manual_seed(4))
    b = fam.sample(7, 3, 3, torch.Generator().manual_seed(4))
    c = fam.sample(7, 3, 3, torch.Generator().manual_seed(5))
    assert isinstance(a, TaskBatch)
    assert a.support_x.shape == (7, 3, 5) and a.support_y.shape == (7, 3, 1)
    assert a.query_x.shape == (7, 3, 5) and a.query_y.shape == (7, 3, 1)
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_y, b.query_y)
    assert not torch.equal(a.support_x, c.support_x)


def test_finite_pool_carries_task_ids() -> None:
    fam = LinearRegressionFamily(dim=3, num_tasks=5, pool_seed=9)
    g = torch.Generator().manual_seed(6)
    p1, ids1 = fam.sample_params(50, g)
    assert ids1 is not None and int(ids1.min()) >= 0 and int(ids1.max()) < 5
    same = ids1 == ids1[0]
    assert torch.equal(p1.weights[same], p1.weights[0].expand(int(same.sum()), 3))


@pytest.mark.parametrize(
    "kwargs",
    [dict(dim=0), dict(beta=0.0), dict(noise_std=-1.0), dict(dim=2, weight_mean=(1.0, 2.0, 3.0)), dict(num_tasks=0)],
)
def test_bad_family_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        LinearRegressionFamily(**kwargs)
