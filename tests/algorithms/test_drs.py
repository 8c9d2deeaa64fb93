"""DRS / joint training (Gao & Sener 2020): the pooled loss, and test-time fine-tuning as plain SGD."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from metabridge.algorithms import DRS
from metabridge.models import MLP
from metabridge.tasks.batch import TaskBatch

D, TRAIN_CLASSES, N_WAY = 4, 6, 3


def _classification_batch(t: int = 3, k: int = 2, q: int = 3, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    class_ids = torch.stack([torch.randperm(TRAIN_CLASSES, generator=g)[:N_WAY] for _ in range(t)])
    ys = torch.arange(N_WAY).repeat_interleave(k).expand(t, -1).clone()
    yq = torch.arange(N_WAY).repeat_interleave(q).expand(t, -1).clone()
    xs, xq = torch.randn(t, N_WAY * k, D, generator=g), torch.randn(t, N_WAY * q, D, generator=g)
    return TaskBatch(xs, ys, xq, yq, class_ids=class_ids, n_way=N_WAY)


def _regression_batch(t: int = 3, s: int = 5, q: int = 4, seed: int = 1) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    return TaskBatch(
        torch.randn(t, s, D, generator=g),
        torch.randn(t, s, 1, generator=g),
        torch.randn(t, q, D, generator=g),
        torch.randn(t, q, 1, generator=g),
    )


def _drs(out_dim: int, **kwargs) -> DRS:
    torch.manual_seed(0)
    return DRS(MLP(D, out_dim, hidden=(8,)), **kwargs)


def test_classification_meta_loss_is_the_cross_entropy_over_the_pooled_training_classes():
    algo = _drs(TRAIN_CLASSES)
    batch = _classification_batch()
    x = torch.cat([batch.support_x, batch.query_x], 1).reshape(-1, D)
    local = torch.cat([batch.support_y, batch.query_y], 1)
    global_labels = torch.stack([batch.class_ids[t][local[t]] for t in range(batch.num_tasks)]).reshape(-1)
    expected = F.cross_entropy(algo.model(x), global_labels)
    torch.testing.assert_close(algo.meta_loss(batch), expected)
    # the labels really are global: the local ones give another loss
    assert not torch.allclose(expected, F.cross_entropy(algo.model(x), local.reshape(-1)))


def test_regression_meta_loss_is_the_mse_over_all_pooled_points():
    algo = _drs(1)
    batch = _regression_batch()
    x = torch.cat([batch.support_x, batch.query_x], 1).reshape(-1, D)
    y = torch.cat([batch.support_y, batch.query_y], 1).reshape(-1, 1)
    torch.testing.assert_close(algo.meta_loss(batch), ((algo.model(x) - y) ** 2).mean())


def test_one_training_step_trains_the_shared_model():
    algo = _drs(TRAIN_CLASSES)
    before = [p.detach().clone() for p in algo.parameters()]
    opt = torch.optim.SGD(algo.parameters(), lr=0.5)
    batch = _classification_batch()
    first = algo.meta_loss(batch)
    opt.zero_grad()
    first.backward()
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, algo.parameters()))
    assert algo.meta_loss(batch) < first


def _hand_finetuned_logits(algo: DRS, batch: TaskBatch, steps: int, lr: float, head_only: bool) -> torch.Tensor:
    """``steps`` SGD steps on the mean support cross-entropy, per task, from the trained body and
    a zero N-way head; written out with autograd, independently of the inner-loop machinery."""
    out = []
    for t in range(batch.num_tasks):
        p = {k: v.detach().clone() for k, v in algo.model.named_parameters()}
        p["head.weight"] = torch.zeros(N_WAY, p["head.weight"].shape[1])
        p["head.bias"] = torch.zeros(N_WAY)
        trained = [k for k in p if k.startswith("head.") or not head_only]
        for _ in range(steps):
            for k in trained:
                p[k].requires_grad_(True)
            loss = F.cross_entropy(functional_call(algo.model, p, (batch.support_x[t],)), batch.support_y[t])
            grads = torch.autograd.grad(loss, [p[k] for k in trained])
            p = {**p, **{k: (p[k] - lr * g).detach() for k, g in zip(trained, grads)}}
        out.append(functional_call(algo.model, p, (batch.query_x[t],)))
    return torch.stack(out)


@pytest.mark.parametrize("finetune", ["all", "head"])
@pytest.mark.parametrize("steps", [1, 3])
def test_test_time_finetuning_is_k_plain_sgd_steps_from_a_zero_head(finetune, steps):
    lr = 0.3
    algo = _drs(TRAIN_CLASSES, finetune_lr=lr, finetune_steps=steps, finetune=finetune).eval()
    batch = _classification_batch(seed=2)
    before = [p.detach().clone() for p in algo.parameters()]
    with torch.no_grad():  # as in evaluation
        logits = algo.predict(batch)
    assert logits.shape == (batch.num_tasks, batch.query_x.shape[1], N_WAY)
    torch.testing.assert_close(
        logits, _hand_finetuned_logits(algo, batch, steps, lr, finetune == "head"), rtol=1e-5, atol=1e-6
    )
    assert all(torch.equal(a, b) for a, b in zip(before, algo.parameters()))  # the shared model is untouched


def test_regression_with_zero_finetuning_steps_predicts_with_the_joint_model():
    algo = _drs(1, finetune_steps=0).eval()
    batch = _regression_batch()
    with torch.no_grad():
        torch.testing.assert_close(algo.predict(batch), algo.model(batch.query_x))
    with pytest.raises(ValueError, match="finetune_steps"):
        _drs(TRAIN_CLASSES, finetune_steps=0).eval().predict(_classification_batch())
