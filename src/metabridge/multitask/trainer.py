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
--nproc-per-node W -m metabridge multitask ...``): every rank draws the same permutation (the
seed is not rank-dependent here: the ranks split one minibatch, they do not draw their
own), takes its contiguous block of B/W examples of each step's minibatch of B, and
:func:`~metabridge.multitask.weighting.base.weighted_backward` with the ranks makes every
rank's gradient the whole minibatch's (the per-method argument is in
:mod:`metabridge.multitask.weighting.base`): the run is the single-process run, up to
rounding, for every built-in method. Rank 0 scores the splits and the others receive its
scores; the result reports the world size and each rank's seconds in collectives per
step (``comm_s_per_step``).

Run directory (``run_dir=``): the shared training skeleton
(:class:`metabridge.training.TrainingLoop`) writes ``config.json`` (the training
settings), ``metrics.jsonl`` (a ``train`` record every ``log_every`` steps, an ``eval``
record at each evaluation) and atomic checkpoints (every ``checkpoint_every`` steps, at
the end, and on Ctrl-C / SIGTERM after the step in flight). A checkpoint holds the
model, the method's ``state_dict``, Adam, the minibatch generator and the epoch's
permutation, every global RNG, and the evaluations so far, so ``resume=True`` ends with
the uninterrupted run's parameters and result for a method whose state is in its
``state_dict``. Without ``run_dir`` nothing is written (and signals act as usual).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..checkpoint import CheckpointManager
from ..collectives import RankMean
from ..distributed import DistributedContext
from ..training import NonFiniteError, TrainingLoop, resume_command
from ._checkpointing import CONFIG_FILE as CONFIG_FILE  # re-exported: the run directory's settings file
from ._checkpointing import RESUMABLE as RESUMABLE  # re-exported: the settings a resumed run may change
from ._checkpointing import CheckpointedRun
from .gradients import GradientMode
from .models.base import MultiTaskModel, TaskOutputs
from .tasks import MultiTaskBenchmark, MultiTaskData, TaskSpec
from .weighting.base import Weighting, weighted_backward

__all__ = ["MultiTaskDivergedError", "MultiTaskResult", "evaluate_split", "task_losses", "train_multitask"]


class MultiTaskDivergedError(NonFiniteError, FloatingPointError):
    """The validation loss became NaN or infinite; the last good checkpoint is kept."""


def task_losses(outputs: TaskOutputs, targets: Tensor, tasks: list[TaskSpec]) -> Tensor:
    """``[K]`` per-task mean losses of one minibatch."""
    if len(outputs.predictions) != len(tasks):
        raise ValueError(
            f"the model predicts {len(outputs.predictions)} tasks but the data has {len(tasks)}; "
            "build the model with one output per task of the benchmark."
        )
    return torch.stack(
        [spec.loss(pred, targets[:, k]) for k, (spec, pred) in enumerate(zip(tasks, outputs.predictions))]
    )


@torch.no_grad()
def evaluate_split(
    model: MultiTaskModel, data: MultiTaskData, batch_size: int = 1024, device: torch.device | str = "cpu"
) -> dict[str, list[float]]:
    """Per-task metric (accuracy in %, or MAE in the target's units) and mean loss on a split."""
    was_training = model.training
    model.eval()
    k = data.num_tasks
    metric = torch.zeros(k, dtype=torch.float64, device=device)
    loss = torch.zeros(k, dtype=torch.float64, device=device)
    n = len(data)
    for start in range(0, n, batch_size):
        x = data.inputs[start : start + batch_size].to(device, non_blocking=True)
        y = data.targets[start : start + batch_size].to(device, non_blocking=True)
        out = model(x)
        rows = x.shape[0]
        for t, spec in enumerate(data.tasks):
            metric[t] += spec.metric_sum(out.predictions[t], y[:, t])
            loss[t] += spec.loss(out.predictions[t], y[:, t]).double() * rows
    model.train(was_training)
    scale = [100.0 if spec.kind == "classification" else 1.0 for spec in data.tasks]
    return {
        "metric": [float(m) / n * s for m, s in zip(metric.tolist(), scale)],
        "loss": [float(v) / n for v in loss.tolist()],
    }


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
    run_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int = 0,
    progress: bool = False,
    interrupts: bool = True,
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
        run_dir: where ``config.json``, ``metrics.jsonl`` and the checkpoints go (``None``: nowhere).
        resume: continue the run in ``run_dir`` from its newest checkpoint (only ``steps`` may change).
        overwrite: start afresh in a ``run_dir`` that holds a run's checkpoints.
        checkpoint_every: checkpoint every this many steps (0: at the end and on an interrupt only).
        progress: show a progress bar.
        interrupts: with ``run_dir``, on SIGINT/SIGTERM finish the step in flight, checkpoint it and
            raise :class:`~metabridge.training.TrainingInterrupted`, whose message says how to resume.
    """
    ctx = _check_arguments(weighting, benchmark, steps, batch_size, resume, overwrite, run_dir, distributed, on_batch)
    run = _MultiTaskRun(
        model,
        weighting,
        benchmark,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        eval_every=eval_every,
        log_every=log_every,
        seed=seed,
        device=torch.device(device),
        gradient_mode=gradient_mode,
        on_batch=on_batch,
        ctx=ctx,
    )
    run.loop = _open_loop(
        run,
        run_dir,
        resume=resume,
        overwrite=overwrite,
        checkpoint_every=checkpoint_every,
        progress=progress,
        interrupts=interrupts,
    )
    run.loop.run(run.step)
    return run.result()


def _check_arguments(
    weighting: Weighting,
    benchmark: MultiTaskBenchmark,
    steps: int,
    batch_size: int,
    resume: bool,
    overwrite: bool,
    run_dir: str | Path | None,
    distributed: DistributedContext | None,
    on_batch: Callable[[int, Tensor, Tensor, Tensor], None] | None,
) -> DistributedContext:
    """Check :func:`train_multitask`'s arguments; returns the run's processes (one by default)."""
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1 (got steps={steps}, batch_size={batch_size}).")
    if weighting.num_tasks != benchmark.train.num_tasks:
        raise ValueError(
            f"the weighting method was built for {weighting.num_tasks} tasks but the benchmark has "
            f"{benchmark.train.num_tasks}."
        )
    if resume and overwrite:
        raise ValueError("resume and overwrite contradict each other; pass only one.")
    if resume and run_dir is None:
        raise ValueError("resume=True needs the run_dir of the run to continue.")
    ctx = distributed if distributed is not None else DistributedContext()
    if ctx.enabled and on_batch is not None:
        raise ValueError(
            "on_batch hooks (training diagnostics) see one process's minibatch; run them without "
            "torchrun (diagnostics_every 0 under data parallelism)."
        )
    return ctx


def _open_loop(
    run: _MultiTaskRun,
    run_dir: str | Path | None,
    *,
    resume: bool,
    overwrite: bool,
    checkpoint_every: int,
    progress: bool,
    interrupts: bool,
) -> TrainingLoop:
    """Prepare ``run_dir`` (restoring its checkpoint when resuming) and build the run's training loop."""
    ctx = run.ctx
    start, saved = 0, None
    if run_dir is not None:
        start, saved = run.open_dir(Path(run_dir), resume, overwrite)
    hint = resume_command(ctx.world_size) or f"train_multitask(..., run_dir={str(run_dir)!r}, resume=True)"
    return TrainingLoop(
        start=start,
        steps=run.steps,
        save=run.save if run_dir is not None else None,
        resume=hint,
        run_dir=Path(run_dir) if run_dir is not None else None,
        log_from=start if resume else None,
        checkpoint_every=checkpoint_every if run_dir else 0,
        saved=saved,
        distributed=ctx,
        progress=progress,
        desc=type(run.weighting).__name__,
        interrupts=interrupts and run_dir is not None,
    )


class _MultiTaskRun(CheckpointedRun):
    """The state of one :func:`train_multitask` run: its update and evaluation (the checkpoint
    handling is :class:`~metabridge.multitask._checkpointing.CheckpointedRun`'s)."""

    def __init__(
        self,
        model: MultiTaskModel,
        weighting: Weighting,
        benchmark: MultiTaskBenchmark,
        *,
        steps: int,
        batch_size: int,
        lr: float,
        weight_decay: float,
        eval_every: int,
        log_every: int,
        seed: int,
        device: torch.device,
        gradient_mode: GradientMode,
        on_batch: Callable[[int, Tensor, Tensor, Tensor], None] | None,
        ctx: DistributedContext,
    ) -> None:
        self.model, self.weighting, self.benchmark, self.ctx = model, weighting, benchmark, ctx
        self.steps, self.eval_every, self.log_every = steps, eval_every, log_every
        self.device, self.gradient_mode, self.on_batch = device, gradient_mode, on_batch
        self.ranks = RankMean(ctx)
        model.to(device).train()
        weighting.to(device)
        self.tasks = benchmark.tasks
        self.inputs = benchmark.train.inputs.to(device)
        self.targets = benchmark.train.targets.to(device)
        self.n = self.inputs.shape[0]
        self.batch_size = min(batch_size, self.n)
        if self.batch_size % ctx.world_size:
            raise ValueError(
                f"batch_size {self.batch_size} does not split over {ctx.world_size} processes; use a "
                f"multiple of {ctx.world_size} (e.g. "
                f"{max(ctx.world_size, self.batch_size // ctx.world_size * ctx.world_size)}) "
                "or another --nproc-per-node."
            )
        self.shard = self.batch_size // ctx.world_size
        if ctx.enabled:
            ctx.broadcast_module(model)  # equal replicas, whatever each rank's initialisation did
        groups = [{"params": list(model.parameters()), "weight_decay": weight_decay}]
        if list(weighting.parameters()):  # a method's own weights (uncertainty, IMTL-L) get no weight decay
            groups.append({"params": list(weighting.parameters()), "weight_decay": 0.0})
        self.optimizer = torch.optim.Adam(groups, lr=lr)
        self.shared = list(model.shared_parameters())
        self.task_specific = list(model.task_parameters())
        self.generator = torch.Generator().manual_seed(seed)
        self.per_epoch = max(self.n // self.batch_size, 1)
        self.order = torch.randperm(self.n, generator=self.generator)
        self.curve: list[dict[str, Any]] = []
        self.weights_log: list[list[float]] = []
        self.losses_log: list[list[float]] = []
        self.best: tuple[float, int, list[float] | None, list[float] | None] = (math.inf, 0, None, None)
        self.train_seconds, self.timed_steps, self.comm_seconds = 0.0, 0, 0.0
        self.settings = {
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "eval_every": eval_every,
            "log_every": log_every,
            "seed": seed,
            "gradient_mode": gradient_mode,
            "model": type(model).__name__,
            "weighting": type(weighting).__name__,
            "tasks": [t.name for t in self.tasks],
            "steps": steps,
            "world_size": ctx.world_size,
        }
        self.checkpoints: CheckpointManager | None = None
        self.loop: TrainingLoop | None = None

    # ------------------------------------------------------------------ the update
    def step(self, i: int) -> None:
        """Loop step ``i`` (1-based) is the run's step ``i - 1`` (0-based, as hooks and methods see it)."""
        step, ctx, tasks = i - 1, self.ctx, self.tasks
        slot = step % self.per_epoch
        if slot == 0 and step > 0:
            self.weighting.end_epoch()
            self.order = torch.randperm(self.n, generator=self.generator)
        idx = self.order[slot * self.batch_size : (slot + 1) * self.batch_size]
        if ctx.enabled:  # this rank's contiguous block of the minibatch
            idx = idx[ctx.rank * self.shard : (ctx.rank + 1) * self.shard]
        idx = idx.to(self.device)
        start = time.perf_counter()
        x, y = self.inputs[idx], self.targets[idx]
        self.optimizer.zero_grad(set_to_none=True)
        outputs = self.model(x)
        losses = task_losses(outputs, y, tasks)
        if self.on_batch is not None:
            paused = time.perf_counter()
            self.on_batch(step, x, y, losses)
            start += time.perf_counter() - paused
        try:
            record = weighted_backward(
                self.weighting,
                losses,
                self.shared,
                self.task_specific,
                features=outputs.features,
                step=step,
                gradient_mode=self.gradient_mode,
                ranks=self.ranks if ctx.enabled else None,
            )
        except FloatingPointError as exc:  # a non-finite loss: name the step and the checkpoint kept
            raise MultiTaskDivergedError(f"step {i}: {str(exc).rstrip('.')}{self._kept()}.", i) from None
        self.ranks.average_buffers(self.model)
        self.optimizer.step()

        def recompute(x: Tensor = x, y: Tensor = y) -> Tensor:
            with torch.no_grad():
                return self.ranks.mean(task_losses(self.model(x), y, tasks))  # the whole minibatch's losses

        self.weighting.after_step(recompute)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        step_comm = self.ranks.take_seconds()
        if step >= min(5, self.steps // 10):  # the first steps pay for lazy initialisation
            self.train_seconds += time.perf_counter() - start
            self.timed_steps += 1
            self.comm_seconds += step_comm
        if self.log_every and step % self.log_every == 0:
            self._log(i, record.losses if record.losses is not None else losses.detach(), record.weights)
        assert self.loop is not None
        self.loop.advance_bar()
        if i == self.steps or (self.eval_every and i % self.eval_every == 0):
            self.evaluate(i)

    def _log(self, i: int, losses: Tensor, weights: Tensor) -> None:
        self.losses_log.append(losses.tolist())
        self.weights_log.append(weights.tolist())
        assert self.loop is not None
        self.loop.log.write(
            {"kind": "train", "step": i, "losses": self.losses_log[-1], "weights": self.weights_log[-1]}
        )

    def _kept(self) -> str:
        saved = self.loop.saved if self.loop is not None else None
        return f"; the checkpoint of step {saved[1]} is kept" if saved is not None else ""

    def evaluate(self, i: int) -> None:
        """Score val and test after step ``i``; rank 0 scores, the others receive its numbers."""
        scores = None
        if self.ctx.is_main:
            scores = (
                evaluate_split(self.model, self.benchmark.val, device=self.device),
                evaluate_split(self.model, self.benchmark.test, device=self.device),
            )
        val, test = self.ctx.broadcast_object(scores)
        score = sum(val["loss"])
        self.curve.append(
            {"step": i, "val_metric": val["metric"], "val_loss": val["loss"], "test_metric": test["metric"]}
        )
        assert self.loop is not None
        self.loop.log.write({"kind": "eval", **self.curve[-1]})
        if not math.isfinite(score):
            raise MultiTaskDivergedError(
                f"validation loss is not finite at step {i}: {val['loss']}{self._kept()}; lower lr.", i
            )
        if score < self.best[0]:
            self.best = (score, i, val["metric"], test["metric"])

    def result(self) -> MultiTaskResult:
        _, best_step, best_val, best_test = self.best
        ctx = self.ctx
        comm = ctx.gather_objects(self.comm_seconds / max(self.timed_steps, 1)) if ctx.enabled else None
        return MultiTaskResult(
            test_metric=best_test,  # type: ignore[arg-type]
            val_metric=best_val,  # type: ignore[arg-type]
            best_step=best_step,  # type: ignore[arg-type]
            steps=self.steps,
            seconds_per_step=self.train_seconds / max(self.timed_steps, 1),
            curve=self.curve,
            weights=self.weights_log,
            train_losses=self.losses_log,
            world_size=ctx.world_size,
            comm_s_per_step=comm,
        )
