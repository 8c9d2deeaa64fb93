"""MTL's switches towards Wang et al.'s official code (GitHub AI-secure/multi-task-learning
at 81ea1f5): ``head_init="official"`` and ``train_forward="per_task"``, and the official
ResNet-12's DropBlock ramp reached through the trainer's ``set_training_progress`` hook."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from metabridge.algorithms import MTL
from metabridge.algorithms.registry import algorithm_hparams, build_algorithm
from metabridge.models import Conv4Backbone
from metabridge.tasks.batch import TaskBatch

T, N, SHOTS, QUERIES, SIDE, CLASSES = 3, 3, 2, 2, 16, 7


def _batch(dtype: torch.dtype = torch.float64, seed: int = 0) -> TaskBatch:
    """T tasks on very different intensity scales: their batch statistics differ."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1.0, 4.0, 0.25], dtype=dtype).view(T, 1, 1, 1, 1)
    xs = torch.rand(T, N * SHOTS, 1, SIDE, SIDE, generator=g, dtype=dtype) * scale
    xq = torch.rand(T, N * QUERIES, 1, SIDE, SIDE, generator=g, dtype=dtype) * scale
    ys = torch.arange(N).repeat_interleave(SHOTS).expand(T, -1).clone()
    yq = torch.arange(N).repeat_interleave(QUERIES).expand(T, -1).clone()
    ids = torch.stack([torch.randperm(CLASSES, generator=g)[:N] for _ in range(T)])
    return TaskBatch(xs, ys, xq, yq, class_ids=ids, n_way=N)


def _mtl(**kw) -> MTL:
    torch.manual_seed(0)
    body = Conv4Backbone(1, 4, SIDE, track_running_stats=True)
    return MTL(body, body.feature_dim, CLASSES, **kw).double().train()


def _grads(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in m.named_parameters()}


# ------------------------------------------------------------------ head_init
def test_official_head_init_is_the_uniform_one_scaled_by_sqrt_classes_over_ways():
    """lightning_mtl.py:119-121: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(D)), times sqrt(C_train / N)."""
    d, c, n = 640, 64, 5
    torch.manual_seed(3)
    plain = MTL(nn.Identity(), d, c).heads.detach()
    torch.manual_seed(3)
    official = MTL(nn.Identity(), d, c, head_init="official", n_way=n).heads.detach()
    torch.testing.assert_close(official, plain * math.sqrt(c / n), rtol=1e-6, atol=0)
    assert plain.abs().max() <= 1 / math.sqrt(d)
    # row norms: sqrt(D * (1/D) / 3) = 0.577 for ours, 2.07 for 64 classes 5-way (the "about 2")
    assert plain.norm(dim=1).mean() == pytest.approx(1 / math.sqrt(3), rel=0.02)
    assert official.norm(dim=1).mean() == pytest.approx(math.sqrt(64 / 5 / 3), rel=0.02)


def test_official_head_init_needs_the_training_n_way_and_the_registry_supplies_it():
    with pytest.raises(ValueError, match="needs n_way"):
        MTL(nn.Identity(), 8, 10, head_init="official")
    with pytest.raises(ValueError, match="classification"):
        MTL(nn.Identity(), 8, 10, task="regression", head_init="official", n_way=5)
    with pytest.raises(ValueError, match="'uniform' or 'official'"):
        MTL(nn.Identity(), 8, 10, head_init="kaiming")
    torch.manual_seed(0)
    mtl = build_algorithm(
        "mtl",
        model="conv4",
        n_way=5,
        image_size=16,
        num_train_classes=80,
        model_kwargs={"hidden": 8},
        head_init="official",
    )
    assert mtl.n_way == 5 and mtl.head_init == "official"
    bound = 1 / math.sqrt(mtl.heads.shape[1]) * math.sqrt(80 / 5)
    assert mtl.heads.abs().max() <= bound and mtl.heads.abs().max() > 0.9 * bound
    assert "n_way" not in algorithm_hparams("mtl")  # filled in from the data, not a --hp
    assert {"head_init", "train_forward"} <= set(algorithm_hparams("mtl"))
    reg = build_algorithm("mtl", model="mlp", out_dim=1, num_train_tasks=4, model_kwargs={"hidden": (8,)})
    assert reg.n_way is None


# ------------------------------------------------------------------ train_forward
def test_per_task_gradient_is_the_mean_of_single_task_backward_passes_and_batched_differs():
    """Wang et al.: one task per forward, PL's accumulate_grad_batches=T dividing each loss by T
    (train.py:201): the gradient of one step is the mean of T single-task gradients."""
    batch = _batch()
    mtl = _mtl(train_forward="per_task")
    single = copy.deepcopy(mtl)
    batched = copy.deepcopy(mtl)
    batched.train_forward = "batched"

    mtl.meta_loss(batch).backward()
    per_task = _grads(mtl)

    accumulated = {k: torch.zeros_like(p) for k, p in single.named_parameters()}
    for t in range(T):  # T separate single-task steps, as their accumulation runs them
        single.zero_grad()
        single.meta_loss(batch[t]).backward()
        for k, p in single.named_parameters():
            accumulated[k] += p.grad / T
    for k in per_task:
        torch.testing.assert_close(per_task[k], accumulated[k], rtol=1e-10, atol=1e-12, msg=k)

    batched.meta_loss(batch).backward()
    gap = max(
        float((batched_g - per_task[k]).abs().max())
        for k, batched_g in _grads(batched).items()
        if k.startswith("body.")
    )
    assert gap > 1e-4  # batch norm over the meta-batch is another function of the parameters
    # the same without batch norm: then the two are one computation
    plain = MTL(nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 6)), 6, CLASSES).double()
    each = copy.deepcopy(plain)
    each.train_forward = "per_task"
    plain.meta_loss(batch).backward()
    each.meta_loss(batch).backward()
    for (k, a), b in zip(_grads(plain).items(), _grads(each).values()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=k)


def test_per_task_updates_running_statistics_once_per_task_and_leaves_evaluation_alone():
    batch = _batch()
    mtl = _mtl(train_forward="per_task")
    ref_body = copy.deepcopy(mtl.body).train()
    batched = copy.deepcopy(mtl)
    batched.train_forward = "batched"
    x = torch.cat([batch.support_x, batch.query_x], 1)
    with torch.no_grad():
        mtl.meta_loss(batch)
        batched.meta_loss(batch)
        for t in range(T):  # their loop: one training-mode forward per task
            ref_body(x[t])
    norms = [m for m in mtl.body.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(int(m.num_batches_tracked) == T for m in norms)
    for (k, v), ref in zip(mtl.body.state_dict().items(), ref_body.state_dict().values()):
        torch.testing.assert_close(v, ref, rtol=1e-12, atol=1e-12, msg=k)
    assert all(int(m.num_batches_tracked) == 1 for m in batched.body.modules() if isinstance(m, nn.BatchNorm2d))
    # evaluation: running statistics, one forward either way; the same predictions
    batched.load_state_dict(mtl.state_dict())
    mtl.eval(), batched.eval()
    with torch.no_grad():
        torch.testing.assert_close(mtl.predict(batch), batched.predict(batch), rtol=1e-9, atol=1e-10)
    with pytest.raises(ValueError, match="'batched' or 'per_task'"):
        MTL(nn.Identity(), 8, 10, train_forward="loop")


def test_per_task_runs_one_body_forward_per_task_not_per_image():
    batch = _batch()
    sizes = {}
    for mode in ("batched", "per_task"):
        mtl = _mtl(train_forward=mode)
        calls: list[int] = []
        mtl.body.register_forward_hook(lambda _m, args, _out: calls.append(args[0].shape[0]))
        mtl.meta_loss(batch)
        sizes[mode] = calls
    per_task_images = N * (SHOTS + QUERIES)
    assert sizes == {"batched": [T * per_task_images], "per_task": [per_task_images] * T}


# ------------------------------------------------------------------ the trainer's progress hook
def test_official_resnet12_ramp_is_reached_through_the_algorithms_modules():
    """The trainer calls set_training_progress(fraction) on every submodule defining it: the
    official ResNet-12's DropBlocks then ramp from 0 to 0.1 (blocks 3-4); dropout stays 0.1."""
    mtl = build_algorithm(
        "mtl",
        model="resnet12",
        n_way=5,
        in_channels=3,
        image_size=32,
        num_train_classes=20,
        model_kwargs={"widths": [4, 8, 8, 16], "variant": "official"},
        head_init="official",
        train_forward="per_task",
    )
    blocks = list(mtl.body.blocks)
    assert [b.dropout for b in blocks] == [0.1, 0.1, 0.0, 0.0]
    assert [b.dropblock.block_size for b in blocks[2:]] == [2, 2]
    rates = {}
    for fraction in (0.0, 0.5, 1.0):
        for m in mtl.modules():
            if hasattr(m, "set_training_progress"):
                m.set_training_progress(fraction)
        rates[fraction] = [b.dropblock.current_drop_prob for b in blocks]
    assert rates[0.0] == [0.0, 0.0, 0.0, 0.0]
    assert rates[0.5] == pytest.approx([0.0, 0.0, 0.05, 0.05])
    assert rates[1.0] == pytest.approx([0.0, 0.0, 0.1, 0.1])


def test_every_mtl_constructor_argument_is_documented_under_args():
    import inspect

    args = (inspect.getdoc(MTL) or "").split("Args:", 1)[1]
    described = "\n" + "\n".join(line.strip() for line in args.splitlines())
    for k in inspect.signature(MTL.__init__).parameters:
        if k != "self":
            assert f"\n{k}:" in described, f"MTL's docstring does not describe {k}"
