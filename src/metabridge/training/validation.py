"""Validation during few-shot training, what it steers, and the run's metrics records.

Validation-driven recipe: with ``lr_schedule="plateau"`` the scheduler is stepped with
each validation's score (not each training step); with ``early_stopping_patience=P``
the run ends after the P-th validation in a row that does not beat the best score
(accuracy up, MSE down, by :attr:`metric`): it writes its final checkpoint there, a
``{"kind": "early_stop", ...}`` record in ``metrics.jsonl``, and reports
``TrainResult.stopped_early``. Both states (torch's scheduler state; the count of
validations since the best, kept whether or not early stopping is on) are in every
checkpoint, so a resumed run does what the uninterrupted one would. Resuming a run
that stopped early trains no further (raise ``early_stopping_patience``, a resumable
setting, to continue it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoint import preserved_rng
from ..distributed import DistributedContext, interleaved
from ..evaluate import episode_scores
from ..stats import MeanCI, mean_ci95
from .recipe import Metric, higher_is_better

if TYPE_CHECKING:
    from ..config import ExperimentConfig
    from ..experiment import Experiment
    from .loop import TrainingLoop

__all__ = ["ValidationMixin", "Window"]


@dataclass
class Window:
    """The steps since the last train record: their losses and seconds in collectives."""

    start: float
    first: int
    losses: list[torch.Tensor] = field(default_factory=list)
    comm: list[float] = field(default_factory=list)


class ValidationMixin:
    """The validation half of :class:`metabridge.train.Trainer`: scores, the best one, the
    early-stopping count, the plateau schedule's step, and the metrics records."""

    config: ExperimentConfig
    experiment: Experiment | None
    distributed: DistributedContext
    device: torch.device
    generator: torch.Generator
    optimizer: torch.optim.Optimizer | None
    scheduler: Any | None
    metric: Metric | None
    best: dict[str, Any] | None
    step: int
    validations_since_best: int
    stopped_early: bool
    run_dir: Path
    _loop: TrainingLoop
    _history: list[dict[str, Any]]
    _last_loss: float
    _val: MeanCI | None
    _consensus_seconds: float
    _wall_offset: float
    _start_time: float
    _window: Window
    on_step: Any

    def _fail(self, step: int, what: str, value: float) -> None:
        raise NotImplementedError

    def _wall(self) -> float:
        raise NotImplementedError

    @property
    def _steps_on_validation(self) -> bool:
        return isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

    def validate(self) -> MeanCI:
        """Score on the fixed validation episodes without disturbing any training RNG.

        Raises :class:`NonFiniteLossError` when some episode scores NaN/inf (the
        adapted model diverged, e.g. from a too-large inner learning rate).
        """
        assert self.experiment is not None
        cfg = self.config
        ctx = self.distributed
        with preserved_rng(self.generator):
            episodes = self.experiment.val.fixed_episodes(cfg.val_episodes, cfg.val_seed, cfg.eval_batch_size)
            if ctx.enabled:  # each rank scores every W-th batch of episodes; all ranks get all scores
                share = interleaved(episodes, ctx)  # may be empty when there are fewer batches than ranks
                mine = (
                    episode_scores(self.experiment.algorithm, share, self.device).cpu()
                    if share
                    else torch.zeros(0, dtype=torch.float64)
                )
                scores = torch.cat([s.reshape(-1).to(torch.float64) for s in ctx.gather_objects(mine)])
            else:
                scores = episode_scores(self.experiment.algorithm, episodes, self.device)
        bad = scores[~torch.isfinite(scores)]
        if len(bad):
            self._fail(self.step, "validation score", float(bad[0]))
        return mean_ci95(scores)

    def _validate_step(self, step: int, seconds: float, last: bool) -> bool:
        """Validate, step the plateau schedule and the early-stopping count; True for a new best."""
        assert self.optimizer is not None
        val = self._val = self.validate()
        is_best = self._update_best(step, val)
        self.validations_since_best = 0 if is_best else self.validations_since_best + 1
        if self._steps_on_validation:
            self.scheduler.step(val.mean)  # type: ignore[union-attr]
        rec = {
            "kind": "val",
            "step": step,
            "val_mean": val.mean,
            "val_ci95": val.ci95,
            "val_n": val.n,
            "wall_time": self._wall(),
            "train_seconds": seconds,
            "lr": self.optimizer.param_groups[0]["lr"],
            "validations_since_best": self.validations_since_best,
        }
        self._loop.log.write(rec)
        self._history.append(rec)
        self._loop.bar.set_postfix(step=step, loss=f"{self._last_loss:.4g}", val=str(val))
        # the validation that uses up the patience ends the run, unless it ends here anyway
        patience = self.config.early_stopping_patience
        self.stopped_early = patience is not None and self.validations_since_best >= patience and not last
        return is_best

    def _early_stop_record(self, wall: float, patience: int | None) -> dict[str, Any]:
        assert self.optimizer is not None
        best = self.best or {}
        return {
            "kind": "early_stop",
            "step": self.step,
            "metric": self.metric,
            "patience": patience,
            "validations_without_improvement": self.validations_since_best,
            "best_step": best.get("step"),
            "best_mean": best.get("mean"),
            "lr": self.optimizer.param_groups[0]["lr"],
            "wall_time": wall,
            "train_seconds": self._consensus_seconds,
        }

    def _update_best(self, step: int, val: MeanCI) -> bool:
        assert self.metric is not None
        better = higher_is_better(self.metric)
        if self.best is None or (val.mean > self.best["mean"] if better else val.mean < self.best["mean"]):
            self.best = {"step": step, "mean": val.mean, "ci95": val.ci95, "n": val.n, "metric": self.metric}
            return True
        return False

    def _log_train(self, step: int, norm_t: torch.Tensor, seconds: float) -> None:
        assert self.optimizer is not None
        ctx, window, now = self.distributed, self._window, time.perf_counter()
        losses = torch.stack(window.losses).to(torch.float64).tolist()
        rec = {
            "kind": "train",
            "step": step,
            "loss": sum(losses) / len(losses),
            "grad_norm": float(norm_t),
            "lr": self.optimizer.param_groups[0]["lr"],
            "wall_time": self._wall_offset + now - self._start_time,
            "train_seconds": seconds,
            "it_s": (step - window.first) / max(now - window.start, 1e-9),
        }
        if ctx.enabled:
            per_rank = ctx.gather_objects(sum(window.comm) / max(len(window.comm), 1))
            rec.update(world_size=ctx.world_size, comm_s_per_step=per_rank)
        self._loop.log.write(rec)
        self._history.append(rec)
        self._loop.bar.set_postfix(step=step, loss=f"{rec['loss']:.4g}")
        self._window = Window(now, step)

    def _after_step(self, step: int) -> None:
        """After the step's checkpoint: the early-stop record, then the ``on_step`` hook."""
        if self.stopped_early:
            rec = self._early_stop_record(self._wall(), self.config.early_stopping_patience)
            self._loop.log.write(rec)
            self._history.append(rec)
        if self.on_step is not None:
            self.on_step(step, self._last_loss)
