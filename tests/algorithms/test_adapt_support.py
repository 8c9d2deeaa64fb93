"""Adaptation without queries (``adapt_support``), custom inner / outer losses for the
MAML family, and DRS with zero fine-tuning steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from metabridge.algorithms import ANIL, DRS, FOMAML, MAML, MTL, MetaOptNet, ProtoNet, Reptile, build_algorithm
from metabridge.algorithms.execution import ExecutionOptions as Ex
from metabridge.models import MLP, Conv4
from metabridge.tasks.batch import TaskBatch

TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def _linear(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(in_dim=2, out_dim=1, hidden=()).double()  # pred = x w^T + b


def _regression(seed: int = 0, tasks: int = 1, k_shot: int = 6, q_query: int = 4):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(tasks, k_shot, 2, generator=g, dtype=torch.float64)
    ys = torch.randn(tasks, k_shot, 1, generator=g, dtype=torch.float64)
    xq = torch.randn(tasks, q_query, 2, generator=g, dtype=torch.float64)
    yq = torch.randn(tasks, q_query, 1, generator=g, dtype=torch.float64)
    return xs, ys, xq, yq


def _classification(
    seed: int = 0,
    tasks: int = 2,
    n_way: int = 3,
    k_shot: int = 2,
    q_query: int = 2,
    shape: tuple[int, ...] = (1, 16, 16),
) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_way)
    return TaskBatch(
        torch.rand(tasks, n_way * k_shot, *shape, generator=g, dtype=torch.float64),
        labels.repeat(k_shot).expand(tasks, -1).clone(),
        torch.rand(tasks, n_way * q_query, *shape, generator=g, dtype=torch.float64),
        labels.repeat_interleave(q_query).expand(tasks, -1).clone(),
        n_way=n_way,
    )


def _one_step_by_hand(model: MLP, xs: Tensor, ys: Tensor, lr: float, scale: float) -> tuple[Tensor, Tensor]:
    """One SGD step on scale * MSE for the linear model, gradient written out:
    d/dw scale * mean(r^2) = scale * 2/S * r^T X, d/db = scale * 2/S * sum(r), r = X w^T + b - y."""
    w, b = model.head.weight.detach(), model.head.bias.detach()
    r = xs @ w.T + b - ys  # [S, 1]
    s = xs.shape[0]
    return w - lr * scale * 2 / s * (r.T @ xs), b - lr * scale * 2 / s * r.sum(0)


# ------------------------------------------------------------------- custom losses
def test_custom_inner_loss_changes_the_adapted_weights_exactly():
    model = _linear()
    xs, ys, xq, _ = _regression()
    double_mse = MAML(model, inner_lr=0.1, inner_loss=lambda p, y: 2 * F.mse_loss(p, y))
    w, b = _one_step_by_hand(model, xs[0], ys[0], 0.1, 2.0)
    torch.testing.assert_close(double_mse.adapt_support(xs[0], ys[0])(xq[0]), xq[0] @ w.T + b, **TIGHT)
    w1, b1 = _one_step_by_hand(model, xs[0], ys[0], 0.1, 1.0)
    plain = MAML(model, inner_lr=0.1).adapt_support(xs[0], ys[0])(xq[0])
    torch.testing.assert_close(plain, xq[0] @ w1.T + b1, **TIGHT)
    assert (plain - xq[0] @ w.T - b).abs().max() > 1e-3  # the loss really changed the step


def test_outer_loss_is_the_query_loss_and_inner_loss_only_the_support_loss():
    model = _linear(1)
    xs, ys, xq, yq = _regression(1, tasks=3)
    alg = MAML(
        model, inner_lr=0.1, inner_loss=lambda p, y: 2 * F.mse_loss(p, y), outer_loss=lambda p, y: (p - y).abs().mean()
    )
    expected = []
    for i in range(3):
        w, b = _one_step_by_hand(model, xs[i], ys[i], 0.1, 2.0)
        expected.append((xq[i] @ w.T + b - yq[i]).abs().mean())
    torch.testing.assert_close(alg.meta_loss(TaskBatch(xs, ys, xq, yq)), torch.stack(expected).mean(), **TIGHT)


@pytest.mark.parametrize("cls", [MAML, FOMAML, ANIL])
def test_custom_losses_on_the_batched_path_equal_the_loop(cls):
    batch = _classification(3, tasks=3)

    def smooth(p: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(p, y, label_smoothing=0.2)

    def triple(p: Tensor, y: Tensor) -> Tensor:
        return 3 * F.cross_entropy(p, y)

    def make(execution: Ex, **kw) -> MAML:
        torch.manual_seed(0)
        return cls(Conv4(3, hidden=4, image_size=16).double(), inner_lr=0.3, inner_steps=2, execution=execution, **kw)

    def grad(alg: MAML) -> Tensor:
        return torch.cat([g.flatten() for g in torch.autograd.grad(alg.meta_loss(batch), list(alg.parameters()))])

    loop = make(Ex(task_batching="loop"), inner_loss=smooth, outer_loss=triple)
    for chunk in (None, 1):
        fast = make(Ex(task_chunk=chunk), inner_loss=smooth, outer_loss=triple)
        assert fast.batched
        torch.testing.assert_close(grad(fast), grad(loop), **TIGHT)
    plain = make(Ex(task_chunk=None), outer_loss=triple)
    torch.testing.assert_close(plain.meta_loss(batch), 3 * make(Ex(task_chunk=None)).meta_loss(batch), **TIGHT)
    assert (grad(plain) - grad(loop)).abs().max() > 1e-6  # label smoothing changed the inner loop


# ------------------------------------------------------------------ adapt_support
def _algorithms():
    torch.manual_seed(0)
    conv = Conv4(3, hidden=4, image_size=16).double()
    torch.manual_seed(0)
    running = Conv4(3, hidden=4, image_size=16, track_running_stats=True).double()
    return {
        "maml-batched": MAML(conv, inner_lr=0.3, inner_steps=2),
        "maml-vmap": MAML(conv, inner_lr=0.3, inner_steps=2, execution=Ex(task_batching="vmap")),
        "anil": ANIL(conv, inner_lr=0.3, eval_steps=2),
        "reptile": Reptile(conv, inner_lr=0.3, inner_steps=2),
        "drs": DRS(running, finetune_lr=0.3, finetune_steps=2, finetune="head"),
        "protonet": ProtoNet(running.body),
        "metaoptnet-ridge": MetaOptNet(running.body, head="ridge"),
        "metaoptnet-svm": MetaOptNet(running.body, head="svm"),
        "mtl": MTL(running.body, running.feature_dim, 10),
    }


@pytest.mark.parametrize("name", list(_algorithms()))
def test_adapt_support_equals_adapt_on_a_task_batch(name):
    alg = _algorithms()[name].eval()
    batch = _classification(4, tasks=2)
    expected = alg.predict(batch)
    one = alg.adapt_support(batch.support_x[1], batch.support_y[1])(batch.query_x[1])
    assert one.shape == (6, 3)
    torch.testing.assert_close(one, expected[1], **TIGHT)
    many = alg.adapt_support(batch.support_x, batch.support_y)(batch.query_x)
    torch.testing.assert_close(many, expected, **TIGHT)


def test_adapt_support_single_regression_task_equals_t1_batch():
    model = _linear(2)
    xs, ys, xq, yq = _regression(2)
    for alg in (MAML(model, inner_lr=0.1, eval_steps=3), DRS(model, finetune_lr=0.1, finetune_steps=3)):
        ref = alg.predict(TaskBatch(xs, ys, xq, yq))[0]
        torch.testing.assert_close(alg.adapt_support(xs[0], ys[0])(xq[0]), ref, **TIGHT)


def test_adapt_support_refuses_bad_supports_with_the_fix():
    alg = MAML(_linear())
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="int64.*long"):
        alg.adapt_support(x, torch.tensor([0, 1, 0, 1], dtype=torch.int32))
    with pytest.raises(ValueError, match="task 0 has no support example of class 1.*every class"):
        alg.adapt_support(x, torch.tensor([0, 2, 0, 2]))
    with pytest.raises(ValueError, match="0..N-1"):
        alg.adapt_support(x, torch.tensor([-1, 0, 1, 0]))
    with pytest.raises(ValueError, match="unsqueeze\\(-1\\)"):
        alg.adapt_support(x, torch.randn(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="same leading size"):
        alg.adapt_support(x, torch.randn(3, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="floating-point"):
        alg.adapt_support(x.to(torch.uint8), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="empty"):
        alg.adapt_support(x[:0], torch.randn(0, 1, dtype=torch.float64))
    predictor = alg.adapt_support(x, torch.randn(4, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="one task.*\\[Q, 2\\]"):
        predictor(torch.randn(1, 3, 2, dtype=torch.float64))
    batched = alg.adapt_support(x.expand(2, 4, 2), torch.randn(2, 4, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="2 tasks.*\\[2, Q, 2\\]"):
        batched(torch.randn(3, 5, 2, dtype=torch.float64))


def test_adapt_support_through_the_registry_on_mlp_inputs():
    alg = build_algorithm(
        "mtl", model="mlp", out_dim=3, in_channels=4, num_train_classes=6, model_kwargs={"hidden": (8,)}
    ).eval()
    x = torch.randn(6, 4)
    probs = alg.adapt_support(x, torch.tensor([0, 1, 2, 0, 1, 2]))(torch.randn(5, 4))
    assert probs.shape == (5, 3)


# ----------------------------------------------------------------------- DRS, 0 steps
def test_drs_zero_finetune_steps_predicts_with_the_joint_model():
    """Defect 4: DRS(finetune_steps=0) used to fail with a message about inner_steps."""
    model = _linear(3)
    drs = DRS(model, finetune_steps=0)
    xs, ys, xq, _ = _regression(3)
    torch.testing.assert_close(drs.adapt_support(xs[0], ys[0])(xq[0]), model(xq[0]), **TIGHT)
    with pytest.raises(ValueError, match="finetune_steps=0.*chance.*finetune_steps >= 1"):
        DRS(Conv4(3, image_size=16).double(), finetune_steps=0).predict(_classification())
    with pytest.raises(ValueError, match="finetune_steps=-1"):
        DRS(model, finetune_steps=-1)
    assert build_algorithm("drs", model="mlp", out_dim=1, finetune_steps=0).eval_steps == 0


def test_drs_finetunes_in_train_mode_without_touching_running_statistics():
    torch.manual_seed(0)
    model = Conv4(3, hidden=4, image_size=16, track_running_stats=True).double()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    drs = DRS(model, finetune_lr=0.3, finetune_steps=2).train()
    batch = _classification(5)
    pred = drs.predict(batch)
    assert pred.shape == (2, 6, 3) and torch.isfinite(pred).all()
    for k, v in model.named_buffers():
        torch.testing.assert_close(v, buffers[k], rtol=0, atol=0)
