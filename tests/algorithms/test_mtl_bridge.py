"""Wang et al.'s MTL with classes as tasks under a weighting method (the bridge)."""

import pytest
import torch
import torch.nn.functional as F

from metabridge import MTL
from metabridge.tasks.batch import TaskBatch


def _batch(seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    t, n, k, q = 3, 4, 1, 2
    sy = torch.arange(n).repeat_interleave(k).repeat(t, 1)
    qy = torch.arange(n).repeat_interleave(q).repeat(t, 1)
    class_ids = torch.stack([torch.randperm(10, generator=g)[:n] for _ in range(t)])
    return TaskBatch(
        torch.randn(t, n * k, 12, generator=g),
        sy,
        torch.randn(t, n * q, 12, generator=g),
        qy,
        class_ids=class_ids,
        n_way=n,
    )


def _mtl(**kw) -> MTL:
    torch.manual_seed(0)
    body = torch.nn.Linear(12, 6)
    return MTL(body, feature_dim=6, num_train_heads=10, **kw)


def _per_class_losses(model: MTL, batch: TaskBatch) -> torch.Tensor:
    x = torch.cat([batch.support_x, batch.query_x], 1)
    y = torch.cat([batch.support_y, batch.query_y], 1)
    f = F.normalize(model.body(x), dim=-1)
    out = []
    for t in range(x.shape[0]):
        logits = f[t] @ model.heads[batch.class_ids[t]].T
        for c in range(batch.n_way):
            mask = y[t] == c
            out.append(F.cross_entropy(logits[mask], y[t][mask]))
    return torch.stack(out)


def test_exact_minmax_is_the_worst_class_loss():
    batch = _batch()
    model = _mtl(class_weighting="minmax")
    expected = _per_class_losses(model, batch).max()
    torch.testing.assert_close(model.meta_loss(batch), expected)


def test_smooth_minmax_is_logsumexp_of_per_class_losses():
    batch = _batch(1)
    model = _mtl(class_weighting="minmax", class_weighting_temperature=0.5)
    losses = _per_class_losses(model, batch)
    torch.testing.assert_close(model.meta_loss(batch), 0.5 * torch.logsumexp(losses / 0.5, 0))


def test_mean_class_weighting_is_the_default_loss_and_scale_invariant_sums_logs():
    batch = _batch(2)
    plain = _mtl()
    losses = _per_class_losses(plain, batch)
    torch.testing.assert_close(plain.meta_loss(batch), losses.mean())  # equal class sizes
    si = _mtl(class_weighting="scale_invariant")
    torch.testing.assert_close(si.meta_loss(batch), losses.log().sum(), rtol=1e-4, atol=1e-4)


def test_minmax_gradient_reaches_only_the_worst_class_head():
    batch = _batch(3)
    model = _mtl(class_weighting="minmax")
    model.meta_loss(batch).backward()
    touched = (model.heads.grad.abs().sum(1) > 0).nonzero().flatten().tolist()
    worst = int(_per_class_losses(model, batch).argmax())
    task = worst // batch.n_way
    # the worst class's loss is a softmax over its task's N heads: exactly those rows get gradient
    assert sorted(touched) == sorted(batch.class_ids[task].tolist())


@pytest.mark.parametrize(
    "bad",
    [
        dict(class_weighting="uw"),
        dict(class_weighting="famo"),
        dict(class_weighting="mean", class_weighting_temperature=1.0),
        dict(class_weighting="minmax", class_weighting_temperature=-1.0),
    ],
)
def test_bad_class_weighting_is_refused(bad):
    with pytest.raises(ValueError, match="class_weighting"):
        _mtl(**bad)
