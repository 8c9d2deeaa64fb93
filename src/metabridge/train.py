"""The few-shot trainer: meta-batches in, optimizer steps out, with exact resume.

One step draws ``meta_batch_size`` tasks from a generator seeded by
``config.seed``, computes ``algorithm.meta_loss(batch)``, back-propagates, optionally
clips the global gradient norm, and takes one optimizer step. The shared skeleton
(:class:`metabridge.training.TrainingLoop`) drives the steps: progress bar, metrics in
``metrics.jsonl`` (and TensorBoard when it is installed), atomic checkpoints every
``checkpoint_every`` steps, the step and time budgets, and Ctrl-C / SIGTERM, which end
the run after the step in flight with a checkpoint of it and name the resume command.
The trainer adds validation on fixed episodes every ``eval_every`` steps (with every
RNG saved and restored, so validation never changes the training trajectory).

Training recipe (any algorithm, :mod:`metabridge.training.recipe`): a constant, cosine
or plateau learning-rate schedule, early stopping on the validation score, and
augmentation of the training episodes (``config.augment``, applied by the training task
source); the plateau schedule and early stopping follow Wang et al.'s official MTL code.

Exact resume: a run stopped after a checkpoint and resumed from it ends with
bit-identical parameters to an uninterrupted run with the same seed (on CPU; on GPU
set ``deterministic=True``), the plateau schedule's and early stopping's state
included; with validation by step (``eval_every``), the stopping step is the same
too (validation by training time, ``eval_every_seconds``, depends on the machine's
speed, so a run that validates by time is only as repeatable as its clock). A NaN or
infinite loss or gradient stops training with :class:`NonFiniteLossError`, which
names the step; no checkpoint is written after the failure, so the last good one
stays on disk.

Host synchronisation (``sync_every``): on an accelerator the loss and gradient norm are
read every few steps, yet a NaN is still reported with the step it first appeared in,
and no checkpoint is ever written from parameters a non-finite step touched.

Data parallelism (``torchrun --nproc-per-node W``; :mod:`metabridge.distributed`): each
rank draws ``meta_batch_size / W`` tasks from its own stream, one all-reduce per step
averages the gradients (the whole meta-batch's meta-gradient on every rank), the loss
and the training time, so every rank steps, validates, stops and fails at the same
step; validation episodes are split over the ranks and their scores gathered; rank 0
writes metrics and checkpoints, which store every rank's task-generator state and the
world size a resume must repeat.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._train_checkpoints import CheckpointMixin
from .checkpoint import CheckpointManager
from .config import ExperimentConfig
from .device import resolve_device
from .distributed import DistributedContext, GradientAverager, rank_seed, shard_size
from .experiment import (
    CONFIG_FILE,
    RESUMABLE_OVERRIDES,
    VALIDATION_FIELDS,
    Experiment,
    build_experiment,
    check_resume_compatible,
    resume_config,
)
from .metrics_log import read_metrics  # re-exported for callers of train
from .stats import MeanCI
from .training import NonFiniteError, StepEnd, TrainingLoop, resume_command
from .training.recipe import (
    Metric,
    build_optimizer,
    build_scheduler,
    higher_is_better,
    seed_everything,
    set_deterministic,
    task_metric,
)
from .training.validation import ValidationMixin, Window

__all__ = [
    "CONFIG_FILE",
    "Metric",
    "NonFiniteLossError",
    "RESUMABLE_OVERRIDES",
    "TrainResult",
    "Trainer",
    "VALIDATION_FIELDS",
    "build_optimizer",
    "build_scheduler",
    "check_resume_compatible",
    "higher_is_better",
    "read_metrics",
    "resume_config",
    "seed_everything",
    "set_deterministic",
    "task_metric",
    "train",
]


class NonFiniteLossError(NonFiniteError):
    """Training produced a NaN/inf loss or gradient; ``step`` names where, the message the fix."""

    def __init__(
        self,
        step: int,
        what: str,
        value: float,
        checkpoint: Path | None,
        checkpoint_step: int | None,
        config: ExperimentConfig,
    ) -> None:
        self.step, self.what, self.value = step, what, value
        self.checkpoint, self.checkpoint_step = checkpoint, checkpoint_step
        inner = [k for k in config.hparams if k.endswith("lr")]
        fixes = f"lower the learning rate (now --lr {config.lr:g}; try {config.lr / 10:g})"
        if inner:
            fixes += f" or the inner-loop rate ({', '.join(f'--hp {k}=...' for k in inner)})"
        if config.grad_clip is None:
            fixes += ", or clip gradients (--grad-clip 1.0)"
        kept = (
            f"the last good checkpoint {checkpoint} (step {checkpoint_step}) is kept"
            if checkpoint is not None
            else "no checkpoint had been written yet"
        )
        super().__init__(
            f"the training {what} became {value} at step {step}; training stopped and {kept}. To fix it, {fixes}.", step
        )


@dataclass
class TrainResult:
    """What a finished run reports."""

    step: int
    run_dir: Path
    last_loss: float
    val: MeanCI | None
    best: dict[str, Any] | None
    checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    #: True when early stopping ended the run before its --steps / --max-train-seconds budget
    stopped_early: bool = False


# ----------------------------------------------------------------------- trainer
class Trainer(ValidationMixin, CheckpointMixin):
    """Runs (or resumes) the training described by an :class:`ExperimentConfig`.

    Args:
        config: the run.
        resume: continue from the newest checkpoint in ``config.out_dir``.
        overwrite: start afresh even though ``config.out_dir`` already has checkpoints
            (they are deleted); without it that is an error, so no run is lost by accident.
        progress: show a tqdm progress bar.
        tensorboard: also log to TensorBoard when it is installed.
        builder: ``config -> Experiment`` (default :func:`build_experiment`); tests and
            custom setups pass their own.
        on_step: called as ``on_step(step, loss)`` after each optimizer step (after any
            checkpoint of that step); reads the loss every step, so it syncs with the device.
        distributed: the ranks of a data-parallel run (default: one process); see
            :mod:`metabridge.distributed` and :func:`metabridge.distributed.init_from_environment`.
        sync_every: read the loss and check it (and the gradient norm) for NaN every this
            many steps (always also at logs, validations, checkpoints and the last step).
            Default: 1 on the CPU (free there), ``log_every`` on an accelerator, where each
            read waits for the device.
        interrupts: on SIGINT/SIGTERM, finish the step in flight, checkpoint it and raise
            :class:`~metabridge.training.TrainingInterrupted` (a ``KeyboardInterrupt`` whose
            message names the resume command); ``False`` leaves the signals alone.

    Validation-driven recipe (plateau schedule, early stopping) and the training-progress
    hook: see :class:`~metabridge.training.validation.ValidationMixin` and :meth:`training_progress`;
    run directory and checkpoints: :class:`~metabridge._train_checkpoints.CheckpointMixin`.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        tensorboard: bool = True,
        builder: Callable[[ExperimentConfig], Experiment] = build_experiment,
        on_step: Callable[[int, float], None] | None = None,
        distributed: DistributedContext | None = None,
        sync_every: int | None = None,
        interrupts: bool = True,
    ) -> None:
        if resume and overwrite:
            raise ValueError("--resume and --overwrite contradict each other; pass only one.")
        self.config = config.validate()
        self.resume, self.overwrite = resume, overwrite
        self.progress, self.tensorboard, self.interrupts = progress, tensorboard, interrupts
        self.builder, self.on_step = builder, on_step
        self.run_dir = Path(config.out_dir)
        self.checkpoints = CheckpointManager(self.run_dir)
        self.device = resolve_device(config.device)
        self.distributed = distributed if distributed is not None else DistributedContext()
        self.shard = shard_size(config.meta_batch_size, self.distributed.world_size)
        if sync_every is not None and sync_every < 1:
            raise ValueError(f"sync_every must be >= 1 (got {sync_every}).")
        self.sync_every = (
            sync_every if sync_every is not None else (1 if self.device.type == "cpu" else config.log_every)
        )
        self._averager: GradientAverager | None = None
        #: (step, loss, grad_norm) of steps whose values were not read yet (deferred checks)
        self._pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        #: training seconds all ranks agree on (the mean over ranks; the local count in one process)
        self._consensus_seconds = 0.0
        self.experiment: Experiment | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any | None = None
        self.generator = torch.Generator()
        self.step = 0
        self.best: dict[str, Any] | None = None
        self.metric: Metric | None = None
        #: validations since the best one (the early-stopping counter)
        self.validations_since_best = 0
        self.stopped_early = False
        self._last_ckpt: tuple[Path, int] | None = None
        self._progress_hooks: list[Callable[[float], Any]] = []
        self._saved_steps: int | None = None

    # -------------------------------------------------------------- set-up
    def setup(self) -> None:
        """Build everything; restore the checkpoint when resuming."""
        cfg = self.config
        set_deterministic(cfg.deterministic)
        ckpt = self._prepare_dir()
        seed_everything(rank_seed(cfg.seed, self.distributed.rank))  # rank 0 (and one process): cfg.seed
        self.generator.manual_seed(rank_seed(cfg.seed, self.distributed.rank))
        self.experiment = self.builder(cfg)
        self.metric = task_metric(self.experiment.val)
        algo = self.experiment.algorithm.to(self.device)
        if cfg.amp != "off" and not getattr(algo, "supports_autocast", False):
            raise ValueError(
                f"--amp {cfg.amp} autocasts the embedding of first-order methods (mtl, protonet, metaoptnet); "
                f"{cfg.algorithm} does not declare supports_autocast (second-order inner loops and "
                "solvers need full precision); drop --amp."
            )
        if self.distributed.enabled:
            self.distributed.broadcast_module(algo)  # identical replicas, whatever each rank's init did
            self._averager = GradientAverager(algo, self.distributed)
        self.optimizer = build_optimizer(cfg, algo.parameters())
        self.scheduler = build_scheduler(cfg, self.optimizer, self.metric)
        hooks = (getattr(m, "set_training_progress", None) for m in algo.modules())
        self._progress_hooks = [hook for hook in hooks if callable(hook)]
        self.step = 0
        self.validations_since_best = 0
        self.stopped_early = False
        if ckpt is not None:
            self._restore_checkpoint(ckpt, algo)
        else:
            self._wall_offset = 0.0
            self._train_seconds = 0.0
            self._consensus_seconds = 0.0
        self._pending = []

    # ---------------------------------------------------------------- steps
    def training_progress(self, step: int) -> float:
        """The fraction of the budget used when step ``step`` (1-based) runs: ``step / steps``, or
        the larger of that and ``train_seconds / max_train_seconds``, clipped to ``[0, 1]``.

        Training-progress hook: before each training step, every submodule of the algorithm
        (``algorithm.modules()``, the algorithm included) that defines a method
        ``set_training_progress(fraction: float)`` is called with the fraction of the run's
        budget used so far: ``step / steps`` for the step about to run (1-based, so the last
        step sees 1.0), or, when ``max_train_seconds`` is set, the larger of that and
        ``train_seconds / max_train_seconds`` (training seconds before this step), clipped to
        ``[0, 1]``. It is what a schedule inside a model (e.g. the DropBlock keep-rate ramp of
        the official ResNet-12) follows. The fraction is a function of the step (or of the
        training time) only, so a resumed step-budget run sees the same fractions as an
        uninterrupted one; a hook is not called during validation or evaluation.
        """
        cfg = self.config
        fraction = step / cfg.steps
        if cfg.max_train_seconds is not None:
            fraction = max(fraction, self._consensus_seconds / cfg.max_train_seconds)
        return min(max(fraction, 0.0), 1.0)

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One outer step (after calling the training-progress hooks); returns ``(loss,
        grad_norm)`` as detached 0-d tensors (the loss averaged over the ranks when
        distributed) or raises :class:`NonFiniteLossError`. With ``sync_every == 1`` the
        checks happen here, before the parameters change; otherwise the values are queued
        and checked at the next sync point (:meth:`flush`)."""
        assert self.experiment is not None and self.optimizer is not None
        cfg, algo = self.config, self.experiment.algorithm
        t_start = time.perf_counter()
        if self._progress_hooks:
            fraction = self.training_progress(step)
            for hook in self._progress_hooks:
                hook(fraction)
        batch = self.experiment.train.sample(self.shard, self.generator).to(self.device)
        algo.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
            loss = algo.meta_loss(batch)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"{cfg.algorithm}.meta_loss must return a scalar tensor (got {shape}).")
        eager = self.sync_every == 1
        if eager and self._averager is None:
            value = float(loss.detach())
            if not math.isfinite(value):
                self._fail(step, "loss", value)
        loss.backward()
        loss = loss.detach().float()
        if self._averager is not None:
            # one collective: gradients, loss, buffers and this rank's training seconds so far
            local_seconds = self._train_seconds + (time.perf_counter() - t_start)
            loss, seconds = self._averager.average([loss, local_seconds])
            self._consensus_seconds = float(seconds)
            if eager:
                value = float(loss)
                if not math.isfinite(value):
                    self._fail(step, "loss", value)
        params = [p for p in algo.parameters() if p.grad is not None]
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(params, max_norm).detach().float()
            if params
            else torch.zeros((), device=loss.device)
        )
        if eager:
            norm_value = float(grad_norm)
            if not math.isfinite(norm_value):
                self._fail(step, "gradient norm", norm_value)
        else:
            self._pending.append((step, loss, grad_norm))
        self.optimizer.step()
        if self.scheduler is not None and not self._steps_on_validation:
            self.scheduler.step()
        return loss, grad_norm

    def flush(self) -> None:
        """Read the queued steps' losses and gradient norms (one host sync) and raise
        :class:`NonFiniteLossError` naming the first step where one was not finite."""
        if not self._pending:
            return
        values = torch.stack(
            [torch.stack([loss.to(torch.float64), norm.to(torch.float64)]) for _, loss, norm in self._pending]
        ).tolist()
        steps = [s for s, _, _ in self._pending]
        self._pending = []
        for s, (loss, norm) in zip(steps, values):
            if not math.isfinite(loss):
                self._fail(s, "loss", loss)
            if not math.isfinite(norm):
                self._fail(s, "gradient norm", norm)

    def _fail(self, step: int, what: str, value: float) -> None:
        ckpt, ckpt_step = self._last_ckpt if self._last_ckpt is not None else (None, None)
        raise NonFiniteLossError(step, what, value, ckpt, ckpt_step, self.config)

    # ------------------------------------------------------------------ loop
    def resume_hint(self) -> str:
        """What continues this run after an interrupt: the CLI command, or the Python call."""
        command = resume_command(self.distributed.world_size, fixed=["train", "--resume", "--out", str(self.run_dir)])
        return command or f"Trainer(resume_config({str(self.run_dir)!r}), resume=True).run()"

    def run(self) -> TrainResult:
        """Train to ``config.steps`` (or until ``config.max_train_seconds`` of training steps);
        returns the final state of the run. ``train_seconds`` in the metrics counts only
        the time spent in training steps, not validation or checkpoints. On SIGINT/SIGTERM
        the run ends after the step in flight with a checkpoint of it (see ``interrupts``)."""
        self.setup()
        cfg = self.config
        patience = cfg.early_stopping_patience
        # resumed after the validation that used up the patience: the run is over
        over = patience is not None and self.validations_since_best >= patience and self.step < cfg.steps
        loop = TrainingLoop(
            start=self.step,
            steps=self.step if over else cfg.steps,
            save=self._save_step,
            resume=self.resume_hint(),
            run_dir=self.run_dir,
            log_from=self.step if self.resume else None,
            checkpoint_every=cfg.checkpoint_every or 0,
            saved=self._last_ckpt,
            max_seconds=cfg.max_train_seconds,
            seconds=lambda: self._consensus_seconds,
            distributed=self.distributed,
            progress=self.progress,
            desc=cfg.algorithm,
            bar_seconds=True,
            tensorboard=self.tensorboard,
            interrupts=self.interrupts,
            interrupt_every=self.sync_every,
        )
        self._loop, self._history = loop, []
        self._start_time = time.perf_counter()
        self._window = Window(self._start_time, self.step)
        self._last_loss, self._val = float("nan"), None
        self._next_timed_eval = (
            (self._consensus_seconds // cfg.eval_every_seconds + 1) * cfg.eval_every_seconds
            if cfg.eval_every_seconds
            else math.inf
        )
        if over:
            self.stopped_early = True
            if not any(
                r.get("kind") == "early_stop" and r.get("step") == self.step for r in read_metrics(self.run_dir)
            ):
                loop.log.write(self._early_stop_record(self._wall_offset, patience))
        loop.run(self._run_step, after=self._after_step)
        if self._last_ckpt is None:  # resumed at the final step: nothing new to write
            self._last_ckpt = (self.checkpoints.last, self.step)
        return TrainResult(
            self.step,
            self.run_dir,
            self._last_loss,
            self._val,
            self.best,
            self._last_ckpt[0],
            self._history,
            stopped_early=self.stopped_early,
        )

    def _wall(self) -> float:
        return self._wall_offset + time.perf_counter() - self._start_time

    def _save_step(self, step: int, best: bool) -> Path:
        return self.save_checkpoint(step, best, self._wall())

    def _run_step(self, step: int) -> StepEnd:
        """One step of the loop: the update, then its log record and validation when due."""
        cfg, loop, window = self.config, self._loop, self._window
        t_step = time.perf_counter()
        loss_t, norm_t = self.train_step(step)
        dt = time.perf_counter() - t_step
        self._train_seconds += dt
        if not self.distributed.enabled:
            self._consensus_seconds = self._train_seconds
        if self._averager is not None:
            window.comm.append(self._averager.comm_seconds)
        seconds = self._consensus_seconds  # the same on every rank: stop and validate together
        last = loop.is_last(step)
        self.step = step
        window.losses.append(loss_t)
        loop.advance_bar(dt)
        timed_eval = seconds >= self._next_timed_eval
        if timed_eval and cfg.eval_every_seconds:
            self._next_timed_eval = (seconds // cfg.eval_every_seconds + 1) * cfg.eval_every_seconds
        validating = bool(
            (cfg.eval_every and step % cfg.eval_every == 0)
            or timed_eval
            or (last and (cfg.eval_every or cfg.eval_every_seconds))
        )
        logging = step % cfg.log_every == 0 or last
        checkpointing = bool(cfg.checkpoint_every and step % cfg.checkpoint_every == 0)
        if logging or validating or checkpointing or last or step % self.sync_every == 0 or self.on_step is not None:
            self.flush()  # raises NonFiniteLossError naming the first bad step
            self._last_loss = float(loss_t)
        if logging:
            self._log_train(step, norm_t, seconds)
        is_best = self._validate_step(step, seconds, last) if validating else False
        return StepEnd(checkpoint=last, best=is_best, stop=self.stopped_early)


def train(config: ExperimentConfig, **kwargs: Any) -> TrainResult:
    """Run :class:`Trainer` (``kwargs`` as in its constructor) and return its result."""
    return Trainer(config, **kwargs).run()
