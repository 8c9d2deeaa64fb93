"""The training skeleton shared by the few-shot, multi-task and meta-RL trainers.

* :mod:`.loop`: :class:`TrainingLoop` drives a trainer's ``step`` with checkpoints, step and
  time budgets, the non-finite stop, the metrics log and the progress bar;
* :mod:`.checkpointing`: the run directory (resume / overwrite checks, rank-0 writes);
* :mod:`.interrupt`: Ctrl-C / SIGTERM end a run at a completed, checkpointed step;
* :mod:`.progress`: the progress bar;
* :mod:`.recipe` and :mod:`.validation`: the few-shot trainer's recipe (optimizer,
  learning-rate schedule, named recipes) and its validation with early stopping.

Each trainer keeps only its update and its evaluation: :class:`metabridge.train.Trainer`
(few-shot), :func:`metabridge.multitask.train_multitask` and
:class:`metabridge.rl.trainer.RLTrainer`. Checkpoint files and the metrics log
themselves are :mod:`metabridge.checkpoint` and :mod:`metabridge.metrics_log`.
"""

from .checkpointing import NoLog, clear_checkpoints, open_metrics_log, prepare_run
from .interrupt import InterruptGuard, TrainingInterrupted, cli_launcher, resume_command
from .loop import NonFiniteError, StepEnd, TrainingLoop
from .progress import progress_bar

__all__ = [
    "InterruptGuard",
    "NoLog",
    "NonFiniteError",
    "StepEnd",
    "TrainingInterrupted",
    "TrainingLoop",
    "clear_checkpoints",
    "cli_launcher",
    "open_metrics_log",
    "prepare_run",
    "progress_bar",
    "resume_command",
]
