"""MTL (Wang et al. 2021): head refit, per-class head rows, regression heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metabridge.algorithms import MTL, per_task_score
from metabridge.tasks.batch import TaskBatch
from metabridge.tasks.sinusoid import SinusoidFamily


def _separable_batch(t: int = 8, n: int = 5, k: int = 1, q: int = 15, d: int = 16, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(t, n, d, generator=g) * 3

    def draw(m):
        y = torch.arange(n).repeat_interleave(m).expand(t, -1)
        x = centers.gather(1, y[..., None].expand(-1, -1, d)) + 0.2 * torch.randn(t, n * m, d, generator=g)
        return x, y.clone()

    xs, ys = draw(k)
    xq, yq = draw(q)
    return TaskBatch(xs, ys, xq, yq, class_ids=torch.arange(n).expand(t, -1).clone(), n_way=n)


def _overlapping_batch(t: int = 3, n: int = 5, k: int = 6, q: int = 10, d: int = 4, seed: int = 0) -> TaskBatch:
    """Classes whose clusters overlap in few dimensions: the support sets are not separable."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(t, n, d, generator=g, dtype=torch.float64)

    def draw(m):
        y = torch.arange(n).repeat_interleave(m).expand(t, -1).clone()
        x = centers.gather(1, y[..., None].expand(-1, -1, d)) + torch.randn(
            t, n * m, d, generator=g, dtype=torch.float64
        )
        return x, y

    xs, ys = draw(k)
    xq, yq = draw(q)
    return TaskBatch(xs, ys, xq, yq, class_ids=torch.arange(n).expand(t, -1).clone(), n_way=n)


def test_test_time_head_is_scikit_learns_logistic_regression_with_c_3():
    """Wang et al.'s protocol: sklearn's LogisticRegression(C=3) on the L2-normalized support
    features. On non-separable features C decides the fit, so a wrong C (or a penalized
    intercept, or unnormalized features) gives other probabilities."""
    from sklearn.linear_model import LogisticRegression

    batch = _overlapping_batch()
    mtl = MTL(nn.Identity(), 4, 5).eval()
    with torch.no_grad():
        probs = torch.softmax(mtl.predict(batch), -1)
    for t in range(batch.num_tasks):
        xs = F.normalize(batch.support_x[t], dim=-1).numpy()
        ref = LogisticRegression(C=3.0, solver="newton-cholesky", tol=1e-14, max_iter=1000)
        ref.fit(xs, batch.support_y[t].numpy())
        assert ref.score(xs, batch.support_y[t].numpy()) < 1.0  # not separable: the optimum is interior
        expected = ref.predict_proba(F.normalize(batch.query_x[t], dim=-1).numpy())
        np.testing.assert_allclose(probs[t].numpy(), expected, rtol=0, atol=1e-8)


def test_meta_loss_uses_the_rows_of_each_tasks_classes():
    batch = _separable_batch(t=2, n=3)
    batch.class_ids = torch.tensor([[4, 0, 2], [1, 3, 4]])
    mtl = MTL(nn.Identity(), feature_dim=16, num_train_heads=6)
    mtl.meta_loss(batch).backward()
    used = mtl.heads.grad.abs().sum(1) > 0
    assert used.tolist() == [True, True, True, True, True, False]


def test_regression_mtl_learns_sinusoids_and_refits_by_ridge():
    torch.manual_seed(0)
    fam = SinusoidFamily(num_tasks=20)
    body = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU())
    mtl = MTL(body, 40, 20, task="regression")
    opt = torch.optim.Adam(mtl.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(600):
        loss = mtl.meta_loss(fam.sample(20, 10, 10, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = SinusoidFamily().sample(100, 10, 50, torch.Generator().manual_seed(123))
    mse = per_task_score(mtl.predict(test), test.query_y).mean()
    baseline = (test.query_y**2).mean()  # predicting 0
    assert loss.item() < 0.1
    assert mse < 0.05 * baseline
    mtl.regression_refit = "ridge"  # plain ridge overfits 10 points in 40 dimensions
    assert per_task_score(mtl.predict(test), test.query_y).mean() > 2 * mse


def test_prior_refit_with_wide_features_matches_the_normal_equations_under_two_threads() -> None:
    """Regression: torch 2.13's CPU LU fails with 2 threads at >= ~200 unknowns; the refit must not use it."""
    torch.manual_seed(0)
    d, tasks, shots = 256, 6, 10
    mtl = MTL(nn.Identity(), d, 40, task="regression")
    fs, ys = torch.randn(tasks, shots, d), torch.randn(tasks, shots, 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        w, b = mtl._prior_refit(fs, ys)
    finally:
        torch.set_num_threads(threads)
    heads = torch.cat([mtl.heads, mtl.head_bias.unsqueeze(1)], 1).double()[..., 0]  # [M, D+1]
    mu, c = heads.mean(0), heads - heads.mean(0)
    prec = torch.linalg.pinv(c.T @ c / 39 + mtl.prior_eps * torch.eye(d + 1, dtype=torch.float64))
    z = torch.cat([fs, torch.ones(tasks, shots, 1)], -1).double()
    for t in range(tasks):  # independent reference: normal equations solved one task at a time by lstsq
        a = z[t].T @ z[t] + mtl.prior_lambda * prec
        rhs = z[t].T @ ys[t].double()[:, 0] + mtl.prior_lambda * prec @ mu
        v = torch.linalg.lstsq(a, rhs.unsqueeze(1)).solution[:, 0]
        assert torch.allclose(w[t, :, 0].double(), v[:-1], atol=1e-4, rtol=1e-4)
        assert torch.allclose(b[t].double(), v[-1:], atol=1e-4, rtol=1e-4)


def test_task_batch_norm_uses_each_tasks_own_statistics_and_keeps_running_ones():
    """test_batch_norm="task": task t's features equal a train-mode BN forward of task t alone."""
    import copy

    from metabridge.models import build_model

    torch.manual_seed(0)
    body = build_model("conv4", 5, in_channels=1, image_size=28, track_running_stats=True).body
    mtl = MTL(
        body, feature_dim=body(torch.zeros(1, 1, 28, 28)).shape[-1], num_train_heads=10, test_batch_norm="task"
    ).eval()
    before = {k: v.clone() for k, v in body.state_dict().items()}
    # tasks on very different intensity scales: running statistics fit neither
    x = torch.rand(3, 6, 1, 28, 28) * torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1, 1, 1)
    with torch.no_grad():
        f = mtl.features(x)
        for t in range(3):
            ref = copy.deepcopy(body).train()(x[t])  # an independent train-mode forward
            torch.testing.assert_close(f[t], torch.nn.functional.normalize(ref, dim=-1), rtol=1e-5, atol=1e-6)
        running = MTL(body, feature_dim=f.shape[-1], num_train_heads=10).eval().features(x)
    assert not torch.allclose(f, running, atol=1e-3)
    for k, v in body.state_dict().items():  # running statistics untouched
        assert torch.equal(v, before[k]), k
    assert not body.training
    with pytest.raises(ValueError, match="'running' or 'task'"):
        MTL(body, feature_dim=8, num_train_heads=2, test_batch_norm="batch")


def test_finetuning_is_sgd_on_body_and_refit_head_and_lowers_the_support_loss():
    """finetune_steps=k: k SGD steps of the support cross-entropy on (body, refit head), per task,
    starting from the logistic refit; the module's own parameters stay as they were."""
    from torch.func import functional_call

    from metabridge.heads.logistic import logistic_fit

    torch.manual_seed(0)
    batch = _overlapping_batch().to("cpu", torch.float32)
    body = nn.Sequential(nn.Linear(4, 16), nn.Tanh())
    steps, lr = 3, 0.5
    mtl = MTL(body, 16, 5, finetune_steps=steps, finetune_lr=lr).eval()
    before = [p.detach().clone() for p in mtl.parameters()]
    with torch.no_grad():  # as in evaluation: fine-tuning re-enables gradients itself
        tuned = mtl.adapt(batch)
        tuned_support, tuned_query = tuned(batch.support_x), tuned(batch.query_x)
        mtl.finetune_steps = 0
        refit = mtl.adapt(batch)
        refit_support, refit_query = refit(batch.support_x), refit(batch.query_x)
    assert all(torch.equal(a, b) for a, b in zip(before, mtl.parameters()))
    assert (tuned_query - refit_query).abs().max() > 1e-3
    for t in range(batch.num_tasks):
        xs, ys = batch.support_x[t], batch.support_y[t]
        assert F.cross_entropy(tuned_support[t], ys) < F.cross_entropy(refit_support[t], ys) - 1e-3
        # an independent k-step SGD by hand, from the refit head
        with torch.no_grad():
            w, b = logistic_fit(F.normalize(body(xs), dim=-1)[None], ys[None], 5, 3.0)
        p = {**{k: v.detach().clone() for k, v in body.named_parameters()}, "w": w[0], "b": b[0]}

        def logits(p, x):
            f = F.normalize(functional_call(body, {k: v for k, v in p.items() if k not in ("w", "b")}, (x,)), dim=-1)
            return f @ p["w"] + p["b"]

        for _ in range(steps):
            p = {k: v.requires_grad_() for k, v in p.items()}
            grads = torch.autograd.grad(F.cross_entropy(logits(p, xs), ys), list(p.values()))
            p = {k: (v - lr * g).detach() for (k, v), g in zip(p.items(), grads)}
        torch.testing.assert_close(tuned_query[t], logits(p, batch.query_x[t]), rtol=1e-4, atol=1e-5)
