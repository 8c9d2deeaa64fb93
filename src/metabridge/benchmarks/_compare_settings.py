"""Settings helpers of ``metabridge compare`` (:class:`metabridge.benchmarks.compare.CompareConfig`):
the defaults of the short and the ``--full`` run, the budget (steps by default, wall-clock with
``--budget-seconds``) and the schedule it implies, and the check that a method name is known."""

from __future__ import annotations

import difflib
from typing import Any

from ..config import load_plugins
from ._compare_methods import METHOD_SETTINGS

#: What ``--full`` sets unless given: 1000 training steps per method, validation every 50 steps
#: on 300 episodes, 1000 test episodes; without it the defaults are the short main job's (300
#: steps, validation every 20 on 100 episodes, 600 test episodes: at most 20 minutes for MTL,
#: MAML and ProtoNet on a 2-core CPU). The seconds settings apply only with ``--budget-seconds``.
FULL_DEFAULTS = {
    "budget_steps": 1000,
    "eval_every_steps": 50,
    "eval_every_seconds": 60.0,
    "val_episodes": 300,
    "test_episodes": 1000,
}
SHORT_DEFAULTS = {
    "budget_steps": 300,
    "eval_every_steps": 20,
    "eval_every_seconds": 25.0,
    "val_episodes": 100,
    "test_episodes": 600,
}

#: The settings of one kind of budget only: a step budget ignores the seconds ones and the other way round.
STEP_SETTINGS = ("budget_steps", "eval_every_steps")
SECONDS_SETTINGS = ("budget_seconds", "eval_every_seconds")


def default_setting(name: str, full: bool, by_steps: bool) -> Any:
    """The default of setting ``name``: the long run's with ``full``, else the short main job's;
    ``None`` for a setting of the other kind of budget (or one without a default)."""
    if name in (SECONDS_SETTINGS if by_steps else STEP_SETTINGS):
        return None
    return (FULL_DEFAULTS if full else SHORT_DEFAULTS).get(name)


def check_budget(
    budget_steps: int | None,
    eval_every_steps: int | None,
    budget_seconds: float | None,
    eval_every_seconds: float | None,
) -> None:
    """``ValueError`` naming the fix when the budget options mix a step budget with a wall-clock one."""
    if budget_seconds is not None and budget_steps is not None:
        raise ValueError("give either --budget-steps or --budget-seconds, not both.")
    if budget_seconds is None and eval_every_seconds is not None:
        raise ValueError("--eval-every-seconds needs --budget-seconds (a step budget validates by --eval-every-steps).")
    if budget_seconds is not None and eval_every_steps is not None:
        raise ValueError("--eval-every-steps needs a step budget (--budget-seconds validates by --eval-every-seconds).")


def training_switches(
    lr_schedule: str | None, early_stopping_patience: int | str | None, augment: str | None, by_steps: bool
) -> dict[str, Any]:
    """The training-recipe config fields the switches set over the recipe's. Under a step budget the
    schedule defaults to ``step`` (the official recipe's x0.1 cut, after 80% of the budget) and early
    stopping to never, so that every method ends annealed within its budget; under a wall-clock budget (whose end no schedule can know) the recipe's stay."""
    out: dict[str, Any] = {}
    if lr_schedule is not None or by_steps:
        out["lr_schedule"] = lr_schedule or "step"
    if early_stopping_patience is not None or by_steps:
        patience = early_stopping_patience or "never"
        out["early_stopping_patience"] = None if patience == "never" else patience
    if augment is not None:
        out["augment"] = None if augment == "none" else augment
    return out


def budget_fields(
    steps: int | None, eval_every_steps: int | None, seconds: float | None, eval_every_seconds: float | None
) -> dict[str, Any]:
    """The :class:`~metabridge.config.ExperimentConfig` fields of a method's budget: ``steps`` with
    validation every ``eval_every_steps`` and no clock, or (``seconds`` given) a wall-clock budget
    validated every ``eval_every_seconds`` of training."""
    if seconds is None:
        return {"steps": steps, "max_train_seconds": None, "eval_every_seconds": None, "eval_every": eval_every_steps}
    return {"steps": 10**9, "max_train_seconds": seconds, "eval_every": 0, "eval_every_seconds": eval_every_seconds}


def check_method(method: str, plugins: list[str]) -> None:
    """``ValueError`` naming the closest known name unless ``method`` is in
    :data:`METHOD_SETTINGS` or an algorithm registered (by one of the ``plugins`` modules)."""
    if method in METHOD_SETTINGS:
        return
    from ..algorithms.registry import ALGORITHMS

    load_plugins(plugins)
    if method not in ALGORITHMS:
        known = sorted(set(METHOD_SETTINGS) | set(ALGORITHMS))
        close = difflib.get_close_matches(method, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown method {method!r}{hint}; choose from {', '.join(known)} or an algorithm "
            "registered with register_algorithm in a --plugin module."
        )
