"""The task-batched fast path (grouped / im2col Conv-4, one autograd.grad per inner
step, optional checkpointing) gives the reference per-task loop's meta-gradients."""

from __future__ import annotations

import pytest
import torch

from metabridge.algorithms import ANIL, FOMAML, MAML, MetaSGD, Reptile
from metabridge.algorithms.execution import ExecutionOptions as Ex
from metabridge.models import MLP, Conv4
from metabridge.models.batched_conv4 import batched_conv4
from metabridge.tasks.batch import TaskBatch

TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def _model(seed: int = 0) -> Conv4:
    torch.manual_seed(seed)
    return Conv4(5, hidden=6, image_size=16).double()


def _batch(seed: int = 0, tasks: int = 3, k_shot: int = 1, q_query: int = 2) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(5)
    return TaskBatch(
        torch.rand(tasks, 5 * k_shot, 1, 16, 16, generator=g, dtype=torch.float64),
        labels.repeat_interleave(k_shot).expand(tasks, -1).clone(),
        torch.rand(tasks, 5 * q_query, 1, 16, 16, generator=g, dtype=torch.float64),
        labels.repeat_interleave(q_query).expand(tasks, -1).clone(),
        n_way=5,
    )


def _grad(alg, batch) -> torch.Tensor:
    grads = torch.autograd.grad(alg.meta_loss(batch), list(alg.parameters()))
    return torch.cat([g.flatten() for g in grads])


@pytest.mark.parametrize(
    "backend,channels_last", [("grouped", False), ("grouped", True), ("im2col", False), ("loop", False)]
)
def test_batched_forward_equals_per_task_forward(backend, channels_last):
    model, batch = _model(), _batch()
    params = dict(model.named_parameters())
    per_task = {k: torch.stack([v + 0.01 * i for i in range(3)]) for k, v in params.items()}
    expected = torch.stack(
        [
            torch.func.functional_call(model, {k: v[i] for k, v in per_task.items()}, (batch.support_x[i],))
            for i in range(3)
        ]
    )
    torch.testing.assert_close(batched_conv4(per_task, batch.support_x, backend, channels_last), expected, **TIGHT)


@pytest.mark.parametrize(
    "backend,channels_last,bn",
    [
        ("grouped", False, "closed_form"),
        ("grouped", False, "aten"),
        ("grouped", True, "closed_form"),
        ("im2col", False, "closed_form"),
    ],
)
@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (MAML, {"inner_steps": 2}),
        (MAML, {"inner_steps": 2, "learn_inner_lr": "per_step"}),
        (FOMAML, {"inner_steps": 2}),
        (ANIL, {"inner_steps": 3}),
        (MetaSGD, {"inner_steps": 2}),
        (Reptile, {"inner_steps": 2}),
    ],
    ids=["maml", "maml-lslr", "fomaml", "anil", "metasgd", "reptile"],
)
def test_batched_meta_gradient_equals_loop(cls, kwargs, backend, channels_last, bn):
    batch = _batch(1)
    ref = _grad(cls(_model(1), inner_lr=0.3, execution=Ex(task_batching="loop"), **kwargs), batch)
    fast = cls(
        _model(1),
        inner_lr=0.3,
        execution=Ex(
            task_batching="batched", conv_backend=backend, channels_last=channels_last, batch_norm=bn, task_chunk=None
        ),
        **kwargs,
    )
    assert fast.batched
    got = _grad(fast, batch)
    assert ref.abs().max() > 1e-4
    torch.testing.assert_close(got, ref, **TIGHT)


def test_batched_predictions_equal_loop():
    batch = _batch(2, k_shot=2)
    ref = MAML(_model(2), inner_lr=0.3, inner_steps=2, eval_steps=3, execution=Ex(task_batching="loop")).predict(batch)
    got = MAML(_model(2), inner_lr=0.3, inner_steps=2, eval_steps=3).predict(batch)
    torch.testing.assert_close(got, ref, **TIGHT)
    ref_anil = ANIL(_model(2), inner_lr=0.3, inner_steps=2, execution={"task_batching": "loop"}).predict(batch)
    torch.testing.assert_close(ANIL(_model(2), inner_lr=0.3, inner_steps=2).predict(batch), ref_anil, **TIGHT)


def test_checkpointed_inner_loop_gives_the_same_gradients():
    batch = _batch(3)
    plain = _grad(MAML(_model(3), inner_lr=0.3, inner_steps=3, execution=Ex(task_chunk=None)), batch)
    ckpt = _grad(
        MAML(_model(3), inner_lr=0.3, inner_steps=3, execution=Ex(task_chunk=None, checkpoint_inner=True)), batch
    )
    torch.testing.assert_close(ckpt, plain, **TIGHT)


def test_anil_honours_checkpoint_inner():
    """ANIL takes the same ExecutionOptions as MAML (it once had no checkpoint_inner argument)."""
    batch = _batch(3)
    plain = ANIL(_model(3), inner_lr=0.3, inner_steps=3, execution=Ex(task_chunk=None))
    ckpt = ANIL(_model(3), inner_lr=0.3, inner_steps=3, execution=Ex(task_chunk=None, checkpoint_inner=True))
    assert ckpt.execution.checkpoint_inner and ckpt.batched
    torch.testing.assert_close(_grad(ckpt, batch), _grad(plain, batch), **TIGHT)


def test_auto_picks_batched_for_conv4_only():
    assert MAML(_model()).batched and FOMAML(_model()).batched and ANIL(_model()).batched
    assert not MAML(MLP()).batched
    assert not MAML(Conv4(5, image_size=16, track_running_stats=True)).batched
    assert MetaSGD(_model()).batched and Reptile(_model()).batched  # "auto" for the whole family
    with pytest.raises(ValueError, match="batched"):
        MAML(MLP(), execution=Ex(task_batching="batched"))
    with pytest.raises(ValueError, match="task_batching"):
        MAML(_model(), execution={"task_batching": "threads"})


@pytest.mark.parametrize("chunk", [1, 2, "auto"])
@pytest.mark.parametrize("cls", [MAML, FOMAML, ANIL])
def test_chunked_meta_loss_has_the_same_value_and_gradient(cls, chunk):
    batch = _batch(4, tasks=5)
    whole = cls(_model(4), inner_lr=0.3, inner_steps=2, execution=Ex(task_chunk=None))
    chunked = cls(_model(4), inner_lr=0.3, inner_steps=2, execution=Ex(task_chunk=chunk))
    torch.testing.assert_close(chunked.meta_loss(batch), whole.meta_loss(batch), **TIGHT)
    torch.testing.assert_close(_grad(chunked, batch), _grad(whole, batch), **TIGHT)


def test_chunks_in_threads_give_the_same_gradient_and_restore_threads():
    batch = _batch(5, tasks=4)
    threads = torch.get_num_threads()
    ref = _grad(MAML(_model(5), inner_lr=0.3, inner_steps=2, execution=Ex(task_chunk=None)), batch)
    got = _grad(MAML(_model(5), inner_lr=0.3, inner_steps=2, execution=Ex(task_chunk=1, task_threads=2)), batch)
    torch.testing.assert_close(got, ref, **TIGHT)
    assert torch.get_num_threads() == threads
