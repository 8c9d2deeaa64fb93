"""Training and scoring of a multi-task model under a weighting method.

One step (CS330 lecture 2's objective, with the weighting method choosing the update):

    losses_k = L_k(f_theta(x)_k, y_k)            for the K tasks of a minibatch
    weighted_backward(method, losses, shared, task-specific, features)
    optimizer.step(); method.after_step(recompute)

The data live in memory as tensors on the training device; a minibatch is a gather by
index from a seeded permutation per epoch (so :meth:`Weighting.end_epoch` marks real
epochs). Model selection follows the usual multi-task protocol: the split is scored every
``eval_every`` steps and the test metrics reported are those at the evaluation with the
lowest validation loss (sum over tasks of the standardised per-task losses), or the last.

Data parallelism (``train_multitask(..., distributed=context)``; ``torchrun
--nproc-per-node W -m metabridge mtl ...``): every rank draws the same permutation (the
seed is not rank-dependent here: the ranks split one minibatch, they do not draw their
own), takes its contiguous block of B/W examples of each step's minibatch of B, and
:func:`~metabridge.multitask.weighting.base.weighted_backward` with the ranks makes every
rank's gradient the whole minibatch's (the per-method argument is in
:mod:`metabridge.multitask.weighting.base`): the run is the single-process run, up to
rounding, for every built-in method. Rank 0 scores the splits and the others receive its
scores; the result reports the world size and each rank's seconds in collectives per
step (``comm_s_per_step``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..collectives import RankMean
from ..distributed import DistributedContext
from .gradients import GradientMode
from .models.base import MultiTaskModel, TaskOutputs
from .tasks import MultiTaskBenchmark, MultiTaskData, TaskSpec
from .weighting.base import Weighting, weighted_backward

__all__ = ["MultiTaskResult", "evaluate_split", "task_losses", "train_multitask"]


def task_losses(outputs: TaskOutputs, targets: Tensor, tasks: list[TaskSpec]) -> Tensor:
    """``[K]`` per-task mean losses of one minibatch."""
    if len(outputs.predictions) != len(tasks):
        raise ValueError(f"the model predicts {len(outputs.predictions)} tasks but the data has {len(tasks)}; build the "
                         "model with one output per task of the benchmark.")
    return torch.stack([spec.loss(pred, targets[:, k]) for k, (spec, pred) in enumerate(zip(tasks, outputs.predictions))])


@torch.no_grad()
def evaluate_split(model: MultiTaskModel, data: MultiTaskData, batch_size: int = 1024,
                   device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Per-task metric (accuracy in %, or MAE in the target's units) and mean loss on a split."""
    was_training = model.training
    model.eval()
    k = data.num_tasks
    metric = torch.zeros(k, dtype=torch.float64, device=device)
    loss = torch.zeros(k, dtype=torch.float64, device=device)
    n = len(data)
    for start in range(0, n, batch_size):
        x = data.inputs[start:start + batch_size].to(device, non_blocking=True)
        y = data.targets[start:start + batch_size].to(device, non_blocking=True)
        out = model(x)
        rows = x.shape[0]
        for t, spec in enumerate(data.tasks):
            metric[t] += spec.metric_sum(out.predictions[t], y[:, t])
            loss[t] += spec.loss(out.predictions[t], y[:, t]).double() * rows
    model.train(was_training)
    scale = [100.0 if spec.kind == "classification" else 1.0 for spec in data.tasks]
    return {"metric": [float(m) / n * s for m, s in zip(metric.tolist(), scale)],
            "loss": [float(v) / n for v in loss.tolist()]}


@dataclass
class MultiTaskResult:
    """What :func:`train_multitask` measured."""

    test_metric: list[float]
    val_metric: list[float]
    best_step: int
    steps: int
    seconds_per_step: float
    curve: list[dict[str, Any]] = field(default_factory=list)
    weights: list[list[float]] = field(default_factory=list)
    train_losses: list[list[float]] = field(default_factory=list)
    #: processes of a data-parallel run (1: one process)
    world_size: int = 1
    #: each rank's mean seconds in collectives per timed step (data-parallel runs only)
    comm_s_per_step: list[float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def train_multitask(
    model: MultiTaskModel,
    weighting: Weighting,
    benchmark: MultiTaskBenchmark,
    *,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    eval_every: int = 0,
    log_every: int = 10,
    seed: int = 0,
    device: torch.device | str = "cpu",
    gradient_mode: GradientMode = "auto",
    on_batch: Callable[[int, Tensor, Tensor, Tensor], None] | None = None,
    distributed: DistributedContext | None = None,
) -> MultiTaskResult:
    """Train ``model`` with ``weighting`` on ``benchmark.train`` for ``steps`` Adam steps.

    Args:
        model: the multi-task network (predicts every task of the benchmark).
        weighting: the loss-weighting method (its parameters, if any, are trained by the same Adam).
        benchmark: train/val/test splits.
        steps: optimiser steps.
        batch_size: examples per step.
        lr, weight_decay: Adam's.
        eval_every: score val and test every this many steps (0: only at the end).
        log_every: record the losses and weights every this many steps (reads them from the
            device only then).
        seed: seeds the model-independent randomness of training (minibatch order).
        device: where the model and the training split live.
        gradient_mode: how per-task gradients are computed by gradient methods.
        on_batch: called as ``on_batch(step, x, y, losses)`` before each step's backward, with the
            losses' graph alive (diagnostics: gradient conflict, lookahead affinity); its time is
            not counted in ``seconds_per_step``. One process only.
        distributed: the ranks of a data-parallel run (default: one process); ``batch_size``
            must split evenly over them (see the module docstring).
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1 (got steps={steps}, batch_size={batch_size}).")
    if weighting.num_tasks != benchmark.train.num_tasks:
        raise ValueError(f"the weighting method was built for {weighting.num_tasks} tasks but the benchmark has "
                         f"{benchmark.train.num_tasks}.")
    ctx = distributed if distributed is not None else DistributedContext()
    ranks = RankMean(ctx)
    if ctx.enabled and on_batch is not None:
        raise ValueError("on_batch hooks (training diagnostics) see one process's minibatch; run them without "
                         "torchrun (diagnostics_every 0 under data parallelism).")
    device = torch.device(device)
    model.to(device).train()
    weighting.to(device)
    tasks = benchmark.tasks
    inputs = benchmark.train.inputs.to(device)
    targets = benchmark.train.targets.to(device)
    n = inputs.shape[0]
    batch_size = min(batch_size, n)
    if batch_size % ctx.world_size:
        raise ValueError(f"batch_size {batch_size} does not split over {ctx.world_size} processes; use a multiple of "
                         f"{ctx.world_size} (e.g. {max(ctx.world_size, batch_size // ctx.world_size * ctx.world_size)}) "
                         "or another --nproc-per-node.")
    shard = batch_size // ctx.world_size
    if ctx.enabled:
        ctx.broadcast_module(model)  # equal replicas, whatever each rank's initialisation did
    groups = [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    if list(weighting.parameters()):  # a method's own weights (uncertainty, IMTL-L) get no weight decay
        groups.append({"params": list(weighting.parameters()), "weight_decay": 0.0})
    optimizer = torch.optim.Adam(groups, lr=lr)
    shared = list(model.shared_parameters())
    task_specific = list(model.task_parameters())
    generator = torch.Generator().manual_seed(seed)
    per_epoch = max(n // batch_size, 1)
    order = torch.randperm(n, generator=generator)
    curve: list[dict[str, Any]] = []
    weights_log: list[list[float]] = []
    losses_log: list[list[float]] = []
    best = (math.inf, 0, None, None)
    train_seconds = 0.0
    timed_steps = 0
    comm_seconds = 0.0
    for step in range(steps):
        slot = step % per_epoch
        if slot == 0 and step > 0:
            weighting.end_epoch()
            order = torch.randperm(n, generator=generator)
        idx = order[slot * batch_size:(slot + 1) * batch_size]
        if ctx.enabled:  # this rank's contiguous block of the minibatch
            idx = idx[ctx.rank * shard:(ctx.rank + 1) * shard]
        idx = idx.to(device)
        start = time.perf_counter()
        x, y = inputs[idx], targets[idx]
        optimizer.zero_grad(set_to_none=True)
        outputs = model(x)
        losses = task_losses(outputs, y, tasks)
        if on_batch is not None:
            paused = time.perf_counter()
            on_batch(step, x, y, losses)
            start += time.perf_counter() - paused
        record = weighted_backward(weighting, losses, shared, task_specific, features=outputs.features, step=step,
                                   gradient_mode=gradient_mode, ranks=ranks if ctx.enabled else None)
        ranks.average_buffers(model)
        optimizer.step()

        def recompute(x: Tensor = x, y: Tensor = y) -> Tensor:
            with torch.no_grad():
                return ranks.mean(task_losses(model(x), y, tasks))  # the whole minibatch's losses

        weighting.after_step(recompute)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        step_comm = ranks.take_seconds()
        if step >= min(5, steps // 10):  # the first steps pay for lazy initialisation
            train_seconds += time.perf_counter() - start
            timed_steps += 1
            comm_seconds += step_comm
        if log_every and step % log_every == 0:
            losses_log.append((record.losses if record.losses is not None else losses.detach()).tolist())
            weights_log.append(record.weights.tolist())
        last = step == steps - 1
        if last or (eval_every and (step + 1) % eval_every == 0):
            scores = None
            if ctx.is_main:  # rank 0 scores; the others receive its numbers (no split is scored twice)
                scores = (evaluate_split(model, benchmark.val, device=device),
                          evaluate_split(model, benchmark.test, device=device))
            val, test = ctx.broadcast_object(scores)
            score = sum(val["loss"])
            curve.append({"step": step + 1, "val_metric": val["metric"], "val_loss": val["loss"],
                          "test_metric": test["metric"]})
            if not math.isfinite(score):
                raise FloatingPointError(f"validation loss is not finite at step {step + 1}: {val['loss']}; lower lr.")
            if score < best[0]:
                best = (score, step + 1, val["metric"], test["metric"])
    _, best_step, best_val, best_test = best
    comm = ctx.gather_objects(comm_seconds / max(timed_steps, 1)) if ctx.enabled else None
    return MultiTaskResult(test_metric=best_test, val_metric=best_val, best_step=best_step, steps=steps,
                           seconds_per_step=train_seconds / max(timed_steps, 1), curve=curve,
                           weights=weights_log, train_losses=losses_log, world_size=ctx.world_size,
                           comm_s_per_step=comm)
