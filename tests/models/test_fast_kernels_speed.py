"""The speed-motivated kernels of the batched Conv-4 (models/pooling.py, first_conv.py,
batch_norm.py) are exact: same values, first and second derivatives as the plain ATen
operators, ties included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metabridge.models.pooling import max_pool2x2


def _derivatives(pool, x: torch.Tensor, w: torch.Tensor, v: torch.Tensor):
    """y, dL/dx (with graph), and the double-backward gradients wrt x's weighting w."""
    y = pool(x)
    (gx,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)
    (gw,) = torch.autograd.grad((gx * v).sum(), w)
    return y, gx, gw


@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 5, 7, 7), (2, 3, 3, 3), (1, 2, 28, 28)])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool2x2_equals_max_pool2d_to_second_order(shape, ties):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if ties:  # few distinct values: many windows with equal maxima (first one must win)
        x = torch.randint(0, 3, shape, generator=g).double()
    x.requires_grad_(True)
    out = (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    w = torch.randn(out, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(shape, generator=g, dtype=torch.float64)
    ref = _derivatives(lambda t: F.max_pool2d(t, 2), x, w, v)
    got = _derivatives(max_pool2x2, x, w, v)
    for a, b in zip(ref, got):
        assert torch.equal(a, b)
    assert got[1].is_contiguous()


def test_max_pool2x2_falls_back_for_channels_last_input():
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    assert torch.equal(max_pool2x2(x), F.max_pool2d(x, 2))


def test_auto_task_chunk_groups_four_tasks_but_feeds_every_thread():
    from metabridge.algorithms.maml import auto_task_chunk

    assert auto_task_chunk(32, 2) == 4 and auto_task_chunk(32, 1) == 4
    assert auto_task_chunk(4, 2) == 2 and auto_task_chunk(5, 2) == 3 and auto_task_chunk(1, 8) == 1
    # chunks follow the support size: 5-shot inner loops (25 images) are large enough alone
    # (measured: no faster in chunks of 4, at 3.7x the memory)
    assert auto_task_chunk(32, 2, support_size=25) == 1 and auto_task_chunk(32, 2, support_size=10) == 2
    assert auto_task_chunk(32, 2, support_size=5) == 4 and auto_task_chunk(32, 2, support_size=1) == 4


def test_auto_task_chunk_is_what_maml_runs_on_cpu(monkeypatch):
    import metabridge.algorithms.maml as maml_mod
    from metabridge.models import Conv4
    from metabridge.tasks.batch import TaskBatch

    seen = []
    real = maml_mod.chunked_meta_loss
    monkeypatch.setattr(
        maml_mod,
        "chunked_meta_loss",
        lambda fn, batch, chunk, *a, **k: seen.append(chunk) or real(fn, batch, chunk, *a, **k),
    )
    model = Conv4(5, in_channels=1, hidden=8, image_size=28)
    algo = maml_mod.MAML(model, inner_lr=0.4, inner_steps=1, execution={"task_threads": 1})
    for shot, _expected in ((1, 4), (5, 1)):
        g = torch.Generator().manual_seed(shot)
        batch = TaskBatch(
            torch.randn(8, 5 * shot, 1, 28, 28, generator=g),
            torch.arange(5).repeat(8, shot),
            torch.randn(8, 5, 1, 28, 28, generator=g),
            torch.arange(5).repeat(8, 1),
        )
        algo.meta_loss(batch).backward()
    assert seen == [4, 1]


def test_default_cpu_meta_loss_runs_chunks_of_four(monkeypatch):
    import metabridge.algorithms.maml as maml_mod
    from metabridge.algorithms import MAML
    from metabridge.models import Conv4
    from metabridge.tasks.batch import TaskBatch

    seen: list[tuple[int, int]] = []
    real = maml_mod.chunked_meta_loss

    def spy(loss_fn, batch, chunk, params, threads=1, executor=None):
        seen.append((chunk, threads))
        return real(loss_fn, batch, chunk, params, threads, executor)

    monkeypatch.setattr(maml_mod, "chunked_meta_loss", spy)
    torch.manual_seed(0)
    alg = MAML(Conv4(5, hidden=4, image_size=16), inner_lr=0.3, execution={"task_threads": 1})
    labels = torch.arange(5).expand(9, -1).clone()
    batch = TaskBatch(torch.rand(9, 5, 1, 16, 16), labels, torch.rand(9, 5, 1, 16, 16), labels, n_way=5)
    alg.meta_loss(batch).backward()
    assert seen == [(4, 1)]


@pytest.mark.parametrize("groups,c_in", [(1, 1), (3, 1), (2, 2)])
def test_first_conv3x3_equals_conv2d_to_second_order(groups, c_in):
    from metabridge.models.first_conv import _FirstConv3x3, first_conv3x3

    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, groups * c_in, 9, 9, generator=g, dtype=torch.float64)
    w = torch.randn(groups * 5, c_in, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(groups * 5, generator=g, dtype=torch.float64, requires_grad=True)
    u = torch.randn(4, groups * 5, 9, 9, generator=g, dtype=torch.float64)

    def derivatives(conv):
        y = conv(x, w, b)
        gw, gb = torch.autograd.grad((torch.tanh(y) * u).sum(), (w, b), create_graph=True)
        outer = torch.autograd.grad((gw**2).sum() + (gb * torch.arange(gb.numel())).sum(), (w, b))
        return (y, gw, gb, *outer)

    ref = derivatives(lambda x_, w_, b_: F.conv2d(x_, w_, b_, padding=1, groups=groups))
    got = derivatives(lambda x_, w_, b_: first_conv3x3(x_, w_, b_, groups))
    for a, c in zip(ref, got):
        torch.testing.assert_close(c, a, rtol=1e-12, atol=1e-12)
    assert type(first_conv3x3(x, w, b, groups).grad_fn).__name__ == _FirstConv3x3.__name__ + "Backward"
    assert first_conv3x3(x.requires_grad_(), w, b, groups).grad_fn.name() == "ConvolutionBackward0"  # fallback


def _bn_inputs(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).mul_(2).add_(0.5).requires_grad_()
    gamma = torch.rand(shape[1], generator=g, dtype=torch.float64).add_(0.5).requires_grad_()
    beta = torch.randn(shape[1], generator=g, dtype=torch.float64, requires_grad=True)
    return x, gamma, beta


@pytest.mark.parametrize("shape", [(3, 2, 3, 3), (1, 3, 2, 2)])
def test_batch_norm_train_derivatives_match_finite_differences(shape):
    from metabridge.models.batch_norm import batch_norm_train

    inputs = _bn_inputs(shape, 2)
    assert torch.autograd.gradcheck(batch_norm_train, inputs)
    assert torch.autograd.gradgradcheck(batch_norm_train, inputs)


def test_batch_norm_train_equals_f_batch_norm_to_second_order():
    """The inner-loop pattern of second-order MAML: grad with create_graph, then a grad of
    a function of that gradient, with respect to the input, gamma, beta and the upstream."""
    from metabridge.models.batch_norm import _BatchNorm, batch_norm_train

    x, gamma, beta = _bn_inputs((6, 4, 5, 5), 3)
    g = torch.Generator().manual_seed(4)
    up = torch.randn(6, 4, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(6, 4, 5, 5, generator=g, dtype=torch.float64)

    def derivatives(bn):
        y = bn(x, gamma, beta)
        grads = torch.autograd.grad((torch.tanh(y) * up).sum(), (x, gamma, beta), create_graph=True)
        outer = (grads[0] * v).sum() + (grads[1] ** 2).sum() + (grads[2] * torch.arange(4.0)).sum()
        return (y, *grads, *torch.autograd.grad(outer, (x, gamma, beta, up)))

    ref = derivatives(lambda a, b, c: F.batch_norm(a, None, None, b, c, training=True, eps=1e-5))
    got = derivatives(batch_norm_train)
    for a, c in zip(ref, got):
        torch.testing.assert_close(c, a, rtol=1e-10, atol=1e-12)
    assert type(batch_norm_train(x, gamma, beta).grad_fn).__name__ == _BatchNorm.__name__ + "Backward"


def test_batch_norm_train_third_derivative_matches_finite_differences_and_channels_last_fallback():
    """A third derivative (gradgradcheck of the first-derivative map) against finite
    differences. (F.batch_norm's own third derivative fails this same check in torch 2.13,
    so it cannot serve as the reference here.)"""
    from metabridge.models.batch_norm import batch_norm_train

    x, gamma, beta = _bn_inputs((2, 2, 2, 2), 5)

    def first(x_, gamma_):
        return torch.autograd.grad(batch_norm_train(x_, gamma_, beta).pow(3).sum(), (x_, gamma_), create_graph=True)

    assert torch.autograd.gradgradcheck(first, (x, gamma))
    xl = x.detach().contiguous(memory_format=torch.channels_last)
    ref = F.batch_norm(xl, None, None, gamma, beta, training=True, eps=1e-5)
    assert torch.equal(batch_norm_train(xl, gamma, beta), ref)


def test_auto_batch_norm_takes_the_closed_form_only_where_batch_norm_is_differentiated_twice():
    from metabridge.algorithms import ANIL, FOMAML, MAML
    from metabridge.models import Conv4

    model = Conv4(5, hidden=4, image_size=16)
    assert MAML(model, inner_lr=0.1)._batch_norm_kernel() == "auto"  # closed form on CPU (batched_conv4)
    assert FOMAML(model, inner_lr=0.1)._batch_norm_kernel() == "aten"
    assert ANIL(model, inner_lr=0.1)._batch_norm_kernel() == "aten"  # body and query forward alike
    assert (
        MAML(model, inner_lr=0.1, execution={"batch_norm": "closed_form"}, first_order=True)._batch_norm_kernel()
        == "closed_form"
    )
    x = torch.rand(2, 3, 1, 16, 16)
    params = {k: v for k, v in model.named_parameters()}
    from metabridge.models.batched_conv4 import batched_conv4

    assert batched_conv4(params, x, batch_norm="auto").grad_fn is not None
    with pytest.raises(ValueError, match="batch_norm must be"):
        batched_conv4(params, x, batch_norm="fused")  # type: ignore[arg-type]
