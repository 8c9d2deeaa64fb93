"""The MetaOptNet algorithm class: learned logit scale, ridge (R2D2) head, SVM training step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metabridge.algorithms import MetaOptNet
from metabridge.tasks.batch import TaskBatch


def _batch(
    t: int = 4, n: int = 3, k: int = 2, q: int = 4, d: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32
) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(t, n, d, generator=g, dtype=dtype)

    def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n).repeat_interleave(m).expand(t, -1).clone()
        x = centers.gather(1, y[..., None].expand(-1, -1, d)) + 0.7 * torch.randn(t, n * m, d, generator=g, dtype=dtype)
        return x, y

    xs, ys = draw(k)
    xq, yq = draw(q)
    return TaskBatch(xs, ys, xq, yq, n_way=n)


def _body(d: int = 8, width: int = 16) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width))


@pytest.mark.parametrize("head", ["svm", "ridge"])
def test_learned_logit_scale_gets_a_gradient_and_moves_with_an_optimizer_step(head):
    algo = MetaOptNet(_body(), head=head, scale=1.0)
    learned = (
        {"scale": algo.scale} if head == "svm" else {"scale": algo.scale, "bias": algo.bias, "log_lam": algo.log_lam}
    )
    before = {k: v.detach().clone() for k, v in learned.items()}
    opt = torch.optim.SGD(algo.parameters(), lr=0.1)
    loss = algo.meta_loss(_batch())
    loss.backward()
    assert torch.isfinite(loss)
    for k, v in learned.items():
        assert v.grad is not None and v.grad.abs() > 0, k
    opt.step()
    for k, v in learned.items():
        assert not torch.equal(v.detach(), before[k]), k
    if head == "svm":  # the ridge-only parameters are not used by the SVM head
        assert algo.bias.grad is None and algo.log_lam.grad is None


def test_ridge_lambda_stays_fixed_when_not_learned():
    algo = MetaOptNet(_body(), head="ridge", lam=5.0, learn_lambda=False)
    algo.meta_loss(_batch()).backward()
    assert not algo.log_lam.requires_grad and algo.log_lam.grad is None
    assert float(algo.log_lam.exp()) == pytest.approx(5.0)


@pytest.mark.parametrize("d", [3, 12])  # fewer and more feature dimensions than the 6 support points
def test_ridge_head_is_the_closed_form_ridge_regression_on_the_support_features(d):
    """logits = s * x_q W + beta with W = (X^T X + lambda I)^-1 X^T onehot(y), solved here in the
    primal form per task (the class may use the Woodbury form)."""
    batch = _batch(d=d, dtype=torch.float64)
    lam, scale, beta = 2.5, 3.0, -0.4
    algo = MetaOptNet(nn.Identity(), head="ridge", lam=lam, scale=scale).double()
    with torch.no_grad():
        algo.bias.fill_(beta)
        logits = algo.predict(batch)
    assert logits.shape == (4, 12, 3)
    lam = algo.log_lam.exp().item()  # lambda is stored as a learnable log (float32 at creation)
    assert lam == pytest.approx(2.5, rel=1e-6)
    for t in range(batch.num_tasks):
        x, y = batch.support_x[t], F.one_hot(batch.support_y[t], 3).double()
        w = torch.linalg.solve(x.T @ x + lam * torch.eye(d, dtype=torch.float64), x.T @ y)
        torch.testing.assert_close(logits[t], scale * batch.query_x[t] @ w + beta, rtol=1e-10, atol=1e-10)


def test_svm_variant_trains_the_body_and_lowers_the_query_loss():
    torch.manual_seed(0)
    algo = MetaOptNet(_body(), head="svm", C=0.1)
    batch = _batch(seed=3)
    opt = torch.optim.Adam(algo.parameters(), lr=1e-2)
    body_before = [p.detach().clone() for p in algo.body.parameters()]
    losses = []
    for _ in range(5):
        loss = algo.meta_loss(batch)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in algo.body.parameters())
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b.detach()) for a, b in zip(body_before, algo.body.parameters()))
    assert losses[-1] < losses[0]


def test_metaoptnet_refuses_regression_tasks_and_unknown_heads():
    with pytest.raises(ValueError, match="'svm' or 'ridge'"):
        MetaOptNet(nn.Identity(), head="lasso")
    regression = TaskBatch(torch.zeros(1, 2, 1), torch.zeros(1, 2, 1), torch.zeros(1, 2, 1), torch.zeros(1, 2, 1))
    with pytest.raises(ValueError, match="N-way"):
        MetaOptNet(nn.Identity()).adapt(regression)
