"""``metabridge train``: :class:`~metabridge.config.ExperimentConfig` as options, plus the
options that steer the command itself (:class:`TrainCommand`)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ..config import ExperimentConfig, option_name
from ._parse import UsageError, parse


class TrainCommand(ExperimentConfig):
    """Train an algorithm on a task family; checkpoints, metrics.jsonl and config.json go to --out.

    Validation scores are the run's metric: accuracy (in percent when printed) or MSE."""

    resume: bool = Field(
        False,
        description=(
            "Continue the run in --out from its newest checkpoint with its saved config; repeating the original "
            "options is fine, changing one other than --steps, --device, intervals and episode counts is an error."
        ),
    )
    overwrite: bool = Field(False, description="Start afresh in --out even if it holds checkpoints (deleted).")
    progress: bool = Field(True, description="Show a progress bar.")
    tune_cpu: bool = Field(
        True,
        description=(
            "On CPU, tune this process's glibc allocator to keep freed memory (faster Conv-4 steps); a library "
            "call never does this, the command opts in for its own process."
        ),
    )

    @model_validator(mode="after")
    def _resume_or_overwrite(self) -> TrainCommand:
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --out and --overwrite deletes it; give only one.")
        return self

    def experiment(self) -> ExperimentConfig:
        """The run's settings without the command's own options."""
        return ExperimentConfig.model_validate(self.model_dump(include=set(ExperimentConfig.model_fields)))


def _absolute_if_path(task: str) -> str:
    """An own-image dataset path is stored absolute, so ``eval`` and ``--resume`` work from any
    directory; a dataset name stays as it is."""
    from ..config import REGRESSION_FAMILIES
    from ..data.image_folder import is_image_dataset_path
    from ..data.registry import available_datasets

    if task in REGRESSION_FAMILIES or task.lower() in available_datasets():  # a name wins over a folder
        return task
    return str(Path(task).expanduser().resolve()) if is_image_dataset_path(task) else task


def resume_changes(saved: ExperimentConfig, given: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    """The settings of ``given`` that differ from the saved run's, labelled by option
    (mappings per key: ``--hp inner_lr``)."""
    changed: dict[str, tuple[Any, Any]] = {}
    for name in ExperimentConfig.model_fields:
        old, new = getattr(saved, name), getattr(given, name)
        if name == "out_dir" or old == new:
            continue
        if isinstance(old, dict):
            for key in sorted(set(old) | set(new)):
                if old.get(key) != new.get(key):
                    changed[f"{option_name(name)} {key}"] = (old.get(key), new.get(key))
        else:
            changed[name] = (old, new)
    return changed


def _resumed(argv: Sequence[str], out: str) -> TrainCommand:
    """The run's saved config with the resumable options given now (directly or in ``--config``);
    any other change is refused, so the original command plus ``--resume`` continues the run."""
    from ..experiment import CONFIG_FILE, RESUMABLE_OVERRIDES, resume_config

    saved = resume_config(out)
    base = TrainCommand.model_validate({**saved.model_dump(), "resume": True})
    given = parse(TrainCommand, argv, "metabridge train", default=base)
    changed = resume_changes(saved, given.experiment())
    fixed = {k: v for k, v in changed.items() if k.split()[0] not in RESUMABLE_OVERRIDES}
    if fixed:
        detail = ", ".join(
            f"{k if k.startswith('--') else option_name(k)} {a!r} -> {b!r}" for k, (a, b) in fixed.items()
        )
        raise UsageError(
            f"--resume keeps the run's config; these differ from {Path(out) / CONFIG_FILE}: {detail} "
            "(repeat the run's own values, or start a new run in another --out)."
        )
    return given


def train_command(argv: Sequence[str]) -> int:
    """``metabridge train``: parse, then train."""
    command = parse(TrainCommand, argv, "metabridge train")
    if command.resume:
        return run_train(_resumed(argv, command.out_dir))
    command.task = _absolute_if_path(command.task)
    try:  # the algorithm's hyperparameters, parsed to their types (NaN and infinity refused)
        command.hparams = command.experiment().validate().hparams
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return run_train(command)


def run_train(command: TrainCommand) -> int:
    """Train the run ``command`` describes and print where its checkpoints are."""
    from ..device import resolve_device
    from ..distributed import init_from_environment
    from ..train import Trainer

    config = command.experiment()
    context = init_from_environment(resolve_device(config.device))  # one process outside torchrun
    trainer = Trainer(
        config, resume=command.resume, overwrite=command.overwrite, progress=command.progress, distributed=context
    )
    with (
        _cpu_tuning(command.tune_cpu and trainer.device.type == "cpu"),
        one_line_warnings(),
        _cudnn_autotune(trainer.device.type == "cuda" and not config.deterministic),
    ):
        result = trainer.run()
    if not context.is_main:
        return 0
    msg = f"trained {config.algorithm} on {config.task} to step {result.step}"
    if result.last_loss == result.last_loss:  # NaN when resuming trained no further step
        msg += f"; final loss {result.last_loss:.4g}"
    if result.val is not None:
        msg += f"; validation {trainer.metric} {_reported(result.val, trainer.metric)}"
    print(msg)
    if result.stopped_early:
        best = result.best or {}
        print(
            f"stopped early at step {result.step} of {config.steps}: validation {trainer.metric} did not improve "
            f"for {trainer.validations_since_best} validations (--early-stopping-patience "
            f"{config.early_stopping_patience}); best {_reported(best.get('mean', float('nan')), trainer.metric)} "
            f"at step {best.get('step')} (best.pt)"
        )
    print(f"checkpoints in {result.run_dir}; evaluate with: metabridge eval {result.run_dir}")
    return 0


def _reported(value: Any, metric: str | None) -> str:
    """A validation score as printed: accuracy in percent, MSE as it is."""
    from ..evaluate import as_reported
    from ..stats import MeanCI

    unit = "%" if metric == "accuracy" else ""
    if isinstance(value, MeanCI):
        shown = as_reported(value, metric)
        return f"{shown.mean:.4g}{unit} ± {shown.ci95:.2g}{unit}"
    if isinstance(value, (int, float)):
        return f"{value * 100:.4g}{unit}" if unit else f"{value:.4g}"
    return str(value)


@contextlib.contextmanager
def _cudnn_autotune(enabled: bool) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark = True`` while the block runs; restored after it."""
    import torch

    before = torch.backends.cudnn.benchmark
    if enabled:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show warnings as ``metabridge: MESSAGE`` on stderr while the block runs (restored after)."""
    import sys

    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *args, **kwargs: print(f"metabridge: {message}", file=sys.stderr)
        yield


@contextlib.contextmanager
def _cpu_tuning(enabled: bool) -> Iterator[None]:
    """The command's opt-in to process-wide CPU allocator tuning (restored on exit)."""
    if not enabled:
        yield
        return
    from ..device import cpu_allocator_tuning

    with cpu_allocator_tuning():
        yield
