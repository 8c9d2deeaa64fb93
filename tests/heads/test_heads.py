"""Batched task heads against independent references (sklearn, closed forms, per-task loops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metabridge.heads import (
    class_prototypes,
    logistic_fit,
    logistic_logits,
    metaoptnet_svm_logits,
    prototype_logits,
    r2d2_logits,
    ridge_fit,
    svm_cs_dual,
    svm_cs_fit,
)

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The heads run thousands of tiny batched LAPACK calls here (gradcheck); with 2 intra-op
    threads on a 2-core machine shared with other jobs they ran ~10x slower (OpenMP spin), so
    this module uses one thread and restores the setting afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


DEV = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def episode(t: int, n: int, k: int, q: int, d: int, *, seed: int = 0, dtype=torch.float64, spread: float = 1.0):
    """Random tasks with class-dependent means; labels 0..n-1 repeated k times (shuffled)."""
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(t, n, d, generator=g, dtype=dtype)
    ys = torch.stack([torch.randperm(n * k, generator=g) % n for _ in range(t)])
    yq = torch.stack([torch.randperm(n * q, generator=g) % n for _ in range(t)]) if q else None
    xs = means.gather(1, ys.unsqueeze(-1).expand(t, n * k, d)) + torch.randn(t, n * k, d, generator=g, dtype=dtype)
    xq = None
    if q:
        xq = means.gather(1, yq.unsqueeze(-1).expand(t, n * q, d)) + torch.randn(t, n * q, d, generator=g, dtype=dtype)
    return xs, ys, xq, yq


def separable(t: int, n: int, k: int, q: int, d: int, seed: int = 0, dtype=torch.float32):
    """Classes on orthogonal directions far apart relative to the noise: linearly separable."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0][:n].to(dtype)  # [n, d]
    ys = torch.arange(n).repeat(k).expand(t, -1).contiguous()
    yq = torch.arange(n).repeat(q).expand(t, -1).contiguous()
    xs = 5 * basis[ys] + 0.1 * torch.randn(t, n * k, d, generator=g).to(dtype)
    xq = 5 * basis[yq] + 0.1 * torch.randn(t, n * q, d, generator=g).to(dtype)
    return xs, ys, xq, yq


# ----------------------------------------------------------------------------- prototypes
def test_prototypes_match_per_task_loop():
    xs, ys, xq, _ = episode(3, 4, 3, 5, 7)
    logits = prototype_logits(xs, ys, xq, 4)
    for t in range(3):
        protos = torch.stack([xs[t][ys[t] == c].mean(0) for c in range(4)])
        ref = -((xq[t][:, None, :] - protos[None]) ** 2).sum(-1)
        torch.testing.assert_close(logits[t], ref, rtol=1e-12, atol=1e-10)
        cos = F.cosine_similarity(xq[t][:, None, :], protos[None], dim=-1)
        torch.testing.assert_close(prototype_logits(xs, ys, xq, 4, metric="cosine", scale=10.0)[t], 10 * cos)


def test_prototypes_unbalanced_shots_and_gradient():
    xs, ys, xq, _ = episode(2, 3, 3, 2, 4)
    ys = ys.clone()
    ys[:, 0] = 0  # unbalanced, still every class present with high probability
    for t in range(2):
        assert set(ys[t].tolist()) == {0, 1, 2}
    protos = class_prototypes(xs, ys, 3)
    torch.testing.assert_close(protos[1, 2], xs[1][ys[1] == 2].mean(0))
    xs.requires_grad_(True)
    xq.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: prototype_logits(a, ys, b, 3), (xs, xq))
    assert torch.autograd.gradcheck(lambda a, b: prototype_logits(a, ys, b, 3, metric="cosine"), (xs, xq))


def test_prototypes_missing_class_raises():
    xs, ys, xq, _ = episode(1, 3, 2, 2, 4)
    with pytest.raises(ValueError, match="no support example of class"):
        prototype_logits(xs, ys % 2, xq, 3)


# ----------------------------------------------------------------------------- ridge / R2D2
@pytest.mark.parametrize("d", [5, 40])  # S=12 > D (primal form) and S < D (Woodbury form)
def test_ridge_matches_closed_form_and_both_forms_agree(d):
    xs, ys, xq, _ = episode(3, 4, 3, 5, d)
    lam = 0.7
    y = F.one_hot(ys, 4).double()
    w_auto, _ = ridge_fit(xs, y, lam)
    w_wood, _ = ridge_fit(xs, y, lam, method="woodbury")
    w_prim, _ = ridge_fit(xs, y, lam, method="primal")
    torch.testing.assert_close(w_wood, w_prim, rtol=1e-9, atol=1e-10)
    for t in range(3):
        x, yt = xs[t].numpy(), y[t].numpy()
        ref = np.linalg.solve(x.T @ x + lam * np.eye(d), x.T @ yt)
        np.testing.assert_allclose(w_auto[t].numpy(), ref, rtol=1e-9, atol=1e-11)
    logits = r2d2_logits(xs, ys, xq, 4, lam, scale=2.0, bias=-0.5)
    torch.testing.assert_close(logits, 2.0 * xq @ w_auto - 0.5)


def test_ridge_regression_with_bias_matches_sklearn():
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(4, 10, 6, generator=g, dtype=torch.float64)
    yt = torch.randn(4, 10, 2, generator=g, dtype=torch.float64) + 3.0
    lam = torch.tensor([0.1, 1.0, 2.0, 10.0], dtype=torch.float64)
    w, b = ridge_fit(xs, yt, lam, fit_bias=True)
    for t in range(4):
        ref = Ridge(alpha=float(lam[t]), fit_intercept=True, solver="cholesky").fit(xs[t].numpy(), yt[t].numpy())
        np.testing.assert_allclose(w[t].numpy(), ref.coef_.T, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(b[t].numpy(), ref.intercept_, rtol=1e-9, atol=1e-11)


def test_r2d2_gradients_features_and_lambda():
    xs, ys, xq, _ = episode(2, 3, 2, 2, 8)
    lam = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    xs.requires_grad_(True)
    xq.requires_grad_(True)
    for method in ("woodbury", "primal"):
        fn = lambda a, b, lam, s: r2d2_logits(a, ys, b, 3, lam, scale=s, method=method)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (xs, xq, lam, scale))


# ----------------------------------------------------------------------------- SVM
def _cs_primal(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, c: float) -> float:
    scores = x @ w
    margins = scores + 1 - F.one_hot(y, w.shape[1]).to(x.dtype) - scores.gather(1, y[:, None])
    return float(0.5 * (w**2).sum() + c * margins.max(1).values.clamp_min(0).sum())


@pytest.mark.parametrize("d,c", [(4, 1.0), (32, 0.1), (32, 10.0), (100, 0.1)])
def test_svm_matches_liblinear_crammer_singer(d, c):
    xs, ys, _, _ = episode(3, 5, 5, 0, d, seed=d)
    xs = F.normalize(xs, dim=-1)
    w = svm_cs_fit(xs, ys, 5, c)
    for t in range(3):
        ref = LinearSVC(C=c, multi_class="crammer_singer", fit_intercept=False, tol=1e-12, max_iter=1_000_000)
        ref.fit(xs[t].numpy(), ys[t].numpy())
        np.testing.assert_allclose(w[t].numpy(), ref.coef_.T, atol=1e-7)
        # our solution is at least as good as liblinear's on the primal objective (1)
        assert _cs_primal(w[t], xs[t], ys[t], c) <= _cs_primal(torch.tensor(ref.coef_.T), xs[t], ys[t], c) + 1e-10


def test_svm_dual_kkt_with_dual_ridge_and_batched_equals_single():
    xs, ys, xq, _ = episode(4, 5, 3, 2, 16, seed=3)
    gram = xs @ xs.transpose(1, 2)
    a = svm_cs_dual(gram, ys, 5, C=0.5, dual_ridge=1.0)
    onehot = F.one_hot(ys, 5).double()
    assert (a <= 0.5 * onehot + 1e-10).all()
    torch.testing.assert_close(a.sum(-1), torch.zeros(4, 15, dtype=torch.float64), atol=1e-10, rtol=0)
    logits = metaoptnet_svm_logits(xs, ys, xq, 5, 0.5, dual_ridge=1.0)
    for t in range(4):
        single = metaoptnet_svm_logits(xs[t : t + 1], ys[t : t + 1], xq[t : t + 1], 5, 0.5, dual_ridge=1.0)
        torch.testing.assert_close(logits[t : t + 1], single, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("d,c,rho", [(6, 0.1, 0.0), (6, 2.0, 0.0), (4, 1.0, 1.0), (3, 1.0, 0.0)])  # last two: S > D
def test_svm_gradient_matches_finite_differences(d, c, rho):
    xs, ys, xq, _ = episode(2, 3, 2, 1, d, seed=7)
    xs.requires_grad_(True)
    xq.requires_grad_(True)
    fn = lambda a, b: metaoptnet_svm_logits(a, ys, b, 3, c, dual_ridge=rho, tol=1e-12)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (xs, xq), eps=1e-6, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- logistic
@pytest.mark.parametrize("d", [8, 100])  # D < S and D > S
def test_logistic_matches_sklearn(d):
    xs, ys, xq, _ = episode(3, 5, 5, 3, d, seed=d)
    w, b = logistic_fit(xs, ys, 5, C=3.0, normalize=True)
    wp, bp = logistic_fit(xs, ys, 5, C=3.0, normalize=True, penalize_bias=True)
    w0, b0 = logistic_fit(xs, ys, 5, C=3.0, normalize=True, fit_bias=False)
    assert b0 is None
    logits = logistic_logits(xs, ys, xq, 5, C=3.0, normalize=True)
    for t in range(3):
        x = F.normalize(xs[t], dim=-1).numpy()
        kw = dict(C=3.0, tol=1e-14, max_iter=1000, solver="newton-cholesky")
        ref = LogisticRegression(**kw).fit(x, ys[t].numpy())
        np.testing.assert_allclose(w[t].numpy(), ref.coef_.T, atol=1e-8)
        # the intercept is defined up to a common shift of the softmax; compare centred
        np.testing.assert_allclose(
            b[t].numpy() - b[t].numpy().mean(), ref.intercept_ - ref.intercept_.mean(), atol=1e-8
        )
        qn = F.normalize(xq[t], dim=-1).numpy()
        np.testing.assert_allclose(torch.softmax(logits[t], -1).numpy(), ref.predict_proba(qn), atol=1e-8)
        # penalised bias == a constant feature column without intercept (liblinear's convention)
        refp = LogisticRegression(fit_intercept=False, **kw).fit(np.hstack([x, np.ones((len(x), 1))]), ys[t].numpy())
        np.testing.assert_allclose(wp[t].numpy(), refp.coef_[:, :-1].T, atol=1e-8)
        np.testing.assert_allclose(bp[t].numpy(), refp.coef_[:, -1], atol=1e-8)
        ref0 = LogisticRegression(fit_intercept=False, **kw).fit(x, ys[t].numpy())
        np.testing.assert_allclose(w0[t].numpy(), ref0.coef_.T, atol=1e-8)


def test_logistic_default_lbfgs_agrees_and_float32_input():
    xs, ys, xq, _ = episode(2, 5, 5, 3, 64, seed=11, dtype=torch.float32)
    w, b = logistic_fit(xs, ys, 5, C=3.0, normalize=True)
    assert w.dtype == torch.float32
    for t in range(2):
        x = F.normalize(xs[t].double(), dim=-1).numpy()
        ref = LogisticRegression(C=3.0, tol=1e-10, max_iter=10000).fit(x, ys[t].numpy())  # default lbfgs
        np.testing.assert_allclose(w[t].numpy(), ref.coef_.T, atol=1e-5)


# ----------------------------------------------------------------------------- shared
@pytest.mark.parametrize("device", DEV)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_separable_tasks_give_full_accuracy(device, dtype):
    xs, ys, xq, yq = separable(4, 5, 5, 15, 64, dtype=dtype)
    xs, ys, xq, yq = xs.to(device), ys.to(device), xq.to(device), yq.to(device)
    heads = {
        "logistic": logistic_logits(xs, ys, xq, 5, C=3.0, normalize=True),
        "svm": metaoptnet_svm_logits(xs, ys, xq, 5, C=0.1),
        "r2d2": r2d2_logits(xs, ys, xq, 5, 1.0),
        "proto": prototype_logits(xs, ys, xq, 5),
    }
    for name, logits in heads.items():
        assert logits.shape == (4, 75, 5) and logits.dtype == dtype and logits.device.type == device, name
        assert (logits.argmax(-1) == yq).all(), name


HEAD_CALLS = {
    "proto": lambda s, y, q, n: prototype_logits(s, y, q, n),
    "r2d2": lambda s, y, q, n: r2d2_logits(s, y, q, n),
    "svm": lambda s, y, q, n: metaoptnet_svm_logits(s, y, q, n),
    "logistic": lambda s, y, q, n: logistic_logits(s, y, q, n),
}


@pytest.mark.parametrize("head", sorted(HEAD_CALLS))
def test_bad_inputs_raise_clear_errors(head):
    call = HEAD_CALLS[head]
    xs, ys, xq, _ = episode(2, 3, 2, 2, 4, dtype=torch.float32)
    with pytest.raises(ValueError, match="0..n_way-1"):
        call(xs, ys + 1, xq, 3)
    with pytest.raises(ValueError, match=r"labels must be \[T, S\]"):
        call(xs, ys[:, :-1], xq, 3)
    with pytest.raises(ValueError, match="same tasks and feature dimension"):
        call(xs, ys, xq[..., :3], 3)
    with pytest.raises(ValueError, match="S=0"):
        call(xs[:, :0], ys[:, :0], xq, 3)
    with pytest.raises(ValueError, match="unsqueeze"):
        call(xs[0], ys[0], xq[0], 3)
    with pytest.raises(TypeError, match="int64"):
        call(xs, ys.float(), xq, 3)
    with pytest.raises(TypeError, match="floating point"):
        call(xs.long(), ys, xq.long(), 3)
