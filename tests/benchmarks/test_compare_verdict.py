"""The verdict of ``metabridge compare`` on small reports built by hand: every expected answer below
is worked out from the numbers in the test, not read back from the code."""

from __future__ import annotations

import math
from typing import Any

import pytest

from metabridge.benchmarks._compare_report import settled_state
from metabridge.benchmarks._compare_verdict import format_verdict, verdict, verdict_key

BUDGET = 100  # steps


def _curve(points: list[tuple[float, int, float]], ci: float = 0.01) -> list[dict[str, Any]]:
    """Validations ``(train_seconds, step, val_mean)``, each with half-width ``ci``."""
    return [{"train_seconds": s, "step": st, "val_mean": v, "val_ci95": ci} for s, st, v in points]


# validation every 10 steps (2 s a step), still climbing by 0.03 a validation: not converged by the flatness rule
RISING = _curve([(2.0 * st, st, 0.5 + 0.003 * st) for st in range(10, BUDGET + 1, 10)])
# flat at 0.8 from step 40 on: converged (no trend over the last third, no rise from the middle one)
FLAT = _curve([(2.0 * st, st, 0.5 if st < 40 else 0.8) for st in range(10, BUDGET + 1, 10)])


def _method(
    tests: dict[str, tuple[float, float]],
    curve: list[dict[str, Any]] | None = None,
    steps: int = BUDGET,
    schedule: str | None = "cosine",
    stopped_early: bool = False,
) -> dict[str, Any]:
    curve = RISING if curve is None else curve
    return {
        "test": {shot: {"mean": m, "ci95": h} for shot, (m, h) in tests.items()},
        "curve": curve,
        "steps": steps,
        "train_seconds": curve[-1]["train_seconds"],
        "stopped_early": stopped_early,
        "config": {} if schedule is None else {"lr_schedule": schedule},
    }


def _settings(by_steps: bool = True, shots: tuple[int, ...] = (1, 5, 10)) -> dict[str, Any]:
    budget = (
        {"budget_steps": BUDGET, "budget_seconds": None} if by_steps else {"budget_steps": None, "budget_seconds": 200}
    )
    return {"test_shots": list(shots), "seed": 3, "training": {"lr_schedule": "cosine"}, **budget}


def _report(methods: dict[str, dict[str, Any]], by_steps: bool = True) -> dict[str, Any]:
    return {"settings": _settings(by_steps), "methods": methods}


def _three() -> dict[str, dict[str, Any]]:
    """1-shot: MTL best (0.60 +- 0.02, floor 0.58); MAML 0.57 + 0.02 = 0.59 >= 0.58, tied; ProtoNet 0.51 < 0.58.
    5-shot: MAML best (0.80 +- 0.01, floor 0.79); ProtoNet 0.785 + 0.01 = 0.795, tied; MTL 0.75 + 0.02 = 0.77, not.
    10-shot: ProtoNet best (0.95 +- 0.005, floor 0.945); MTL 0.92 + 0.01 and MAML 0.91 + 0.02 fall short.
    MTL against MAML's interval: 0.60 > 0.57 + 0.02 above; 0.75 < 0.80 - 0.01 below; 0.92 in 0.91 +- 0.02 within
    (above MAML's mean, not above its interval)."""
    return {
        "mtl": _method({"1": (0.60, 0.02), "5": (0.75, 0.02), "10": (0.92, 0.01)}),
        "maml": _method({"1": (0.57, 0.02), "5": (0.80, 0.01), "10": (0.91, 0.02)}, curve=FLAT),
        "protonet": _method({"1": (0.50, 0.01), "5": (0.785, 0.01), "10": (0.95, 0.005)}),
    }


def test_the_best_method_per_shot_and_the_ties_by_ci_overlap() -> None:
    v = verdict(_report(_three()))
    assert v["best"] == {"1": "mtl", "5": "maml", "10": "protonet"}
    assert v["tied_with_best"] == {"1": ["maml"], "5": ["protonet"], "10": []}


def test_mtl_above_within_or_below_the_references_interval() -> None:
    v = verdict(_report(_three()))
    assert v["reference"] == "maml"
    assert v["mtl_vs_reference"] == {"1": "above", "5": "below", "10": "within"}
    # against ProtoNet instead: 0.60 > 0.51, 0.75 < 0.775, 0.92 < 0.945
    assert verdict(_report(_three()), reference="protonet")["mtl_vs_reference"] == {
        "1": "above",
        "5": "below",
        "10": "below",
    }


def _timed(mtl_points: list[tuple[float, int, float]]) -> dict[str, dict[str, Any]]:
    """MAML ends at 0.72 +- 0.03: target 0.69, which it first reaches at (60 s, step 30)."""
    maml = _curve([(20.0, 10, 0.5), (40.0, 20, 0.6), (60.0, 30, 0.7), (80.0, 40, 0.72)], ci=0.03)
    return {
        "mtl": _method({"1": (0.6, 0.02)}, curve=_curve(mtl_points)),
        "maml": _method({"1": (0.6, 0.02)}, curve=maml),
    }


def test_sooner_later_never_with_both_ratios() -> None:
    # MTL first reaches 0.69 at (10 s, step 20): MAML took 60 / 10 = 6x the seconds and 30 / 20 = 1.5x the steps
    sooner = verdict(_report(_timed([(5.0, 10, 0.6), (10.0, 20, 0.695), (15.0, 30, 0.7)])))
    assert math.isclose(sooner["target"], 0.69)
    assert math.isclose(sooner["time_ratio"], 6.0) and math.isclose(sooner["step_ratio"], 1.5)
    assert (sooner["mtl_to_reference"], sooner["decided_by"]) == ("sooner", "steps")
    # MTL first reaches it at (12 s, step 40): 60 / 12 = 5x the seconds but 30 / 40 = 0.75x the steps
    points = [(3.0, 10, 0.5), (6.0, 20, 0.6), (9.0, 30, 0.68), (12.0, 40, 0.70)]
    later = verdict(_report(_timed(points)))
    assert math.isclose(later["time_ratio"], 5.0) and math.isclose(later["step_ratio"], 0.75)
    assert later["mtl_to_reference"] == "later"  # a step budget decides by steps
    by_clock = verdict(_report(_timed(points), by_steps=False))
    assert (by_clock["mtl_to_reference"], by_clock["decided_by"]) == ("sooner", "seconds")  # a clock budget by seconds
    # MTL tops out at 0.685 < 0.69
    never = verdict(_report(_timed([(5.0, 10, 0.6), (10.0, 20, 0.685)])))
    assert never["mtl_to_reference"] == "never" and never["time_ratio"] is None and never["step_ratio"] is None
    # the same step as MAML: neither sooner nor later
    same = verdict(_report(_timed([(20.0, 30, 0.70)])))
    assert same["mtl_to_reference"] == "same" and math.isclose(same["time_ratio"], 3.0)


def test_settled_is_converged_annealed_or_open() -> None:
    steps = _settings()
    assert settled_state(_method({}, curve=FLAT, schedule="constant"), steps) == "converged"
    assert settled_state(_method({}), steps) == "annealed"  # cosine to the budget's last step
    assert settled_state(_method({}, schedule=None), steps) == "annealed"  # the schedule of the settings
    assert settled_state(_method({}, schedule="constant"), steps) == "open"  # still climbing, lr never lowered
    assert settled_state(_method({}, schedule="plateau"), steps) == "open"
    assert settled_state(_method({}, steps=BUDGET - 10), steps) == "open"  # stopped short of the budget
    assert settled_state(_method({}, stopped_early=True), steps) == "open"
    clock = _settings(by_steps=False)  # a wall-clock budget's end is unknown to a schedule: never annealed
    assert settled_state(_method({}), clock) == "open"
    flat_by_clock = _curve([(20.0 * i, 7 * i, 0.5 if i < 4 else 0.8) for i in range(1, 11)])
    assert settled_state(_method({}, curve=flat_by_clock, schedule="constant"), clock) == "converged"


def test_the_verdict_key_keeps_the_answers_and_drops_the_digits() -> None:
    base = verdict(_report(_three()))
    nudged = _three()
    nudged["mtl"]["test"]["1"]["mean"] = 0.62  # another seed's digits, the same answers
    nudged["protonet"]["test"]["10"]["mean"] = 0.96
    assert verdict(_report(nudged)) != base and verdict_key(verdict(_report(nudged))) == verdict_key(base)
    assert verdict_key(base) == (
        (("1", "mtl"), ("10", "protonet"), ("5", "maml")),
        (("1", "above"), ("10", "within"), ("5", "below")),
        # target: MAML's flat curve ends at 0.8 - 0.01 = 0.79, first reached at step 40 (80 s); MTL's rising one
        # (0.5 + 0.003 * step) first reaches it at step 100 (200 s): 40 / 100 = 0.4 of MTL's steps, later
        "later",
        True,  # MTL and ProtoNet annealed, MAML converged
    )
    flipped = _three()
    flipped["mtl"]["test"]["10"]["mean"] = 0.85  # below 0.91 - 0.02 now
    assert verdict_key(verdict(_report(flipped))) != verdict_key(base)
    unsettled = _three()
    unsettled["protonet"]["config"]["lr_schedule"] = "constant"  # open: not every method settled
    assert verdict_key(verdict(_report(unsettled)))[3] is False and verdict_key(base)[3] is True


@pytest.mark.parametrize("by_steps", [True, False])
def test_format_verdict_says_each_answer(by_steps: bool) -> None:
    report = _report(_three(), by_steps=by_steps)
    text = format_verdict(report)
    lines = text.splitlines()
    assert lines[0] == "verdict (seed 3):"
    assert lines[1] == "  1-shot: most accurate MTL (60.00%), tied within the CIs: MAML; MTL is above MAML's 95% CI."
    assert (
        lines[2] == "  5-shot: most accurate MAML (80.00%), tied within the CIs: ProtoNet; MTL is below MAML's 95% CI."
    )
    assert (
        lines[3] == "  10-shot: most accurate ProtoNet (95.00%), ahead of every other CI; MTL is within MAML's 95% CI."
    )
    if by_steps:
        assert lines[-1] == "  settled: MTL annealed, MAML converged, ProtoNet annealed."
    else:
        assert lines[-1].startswith("  settled: MTL open, MAML converged, ProtoNet open (an open method's accuracy")


def test_format_verdict_gives_the_ratios() -> None:
    text = format_verdict(_report(_timed([(5.0, 10, 0.6), (10.0, 20, 0.695), (15.0, 30, 0.7)])))
    assert (
        "  time: MTL reached MAML's final validation accuracy minus its CI (69.00%) sooner (in training steps): "
        "MAML took 6.00x MTL's training seconds and 1.50x its steps." in text.splitlines()
    )
    same = format_verdict(_report(_timed([(20.0, 30, 0.70)])))  # step 30 as MAML's, at 20 s against its 60 s
    assert "(69.00%) as soon as MAML (in training steps): MAML took 3.00x MTL's training seconds and 1.00x its" in same
    never = format_verdict(_report(_timed([(5.0, 10, 0.6)])))
    assert "  time: MTL never reached MAML's final validation accuracy minus its CI." in never.splitlines()


def test_sooner_or_later_needs_more_than_one_validation_interval() -> None:
    # MTL reaches the target (0.69) at step 20, MAML at step 30: 10 steps apart
    report = _report(_timed([(5.0, 10, 0.6), (10.0, 20, 0.695), (15.0, 30, 0.7)]))
    report["settings"]["eval_every_steps"] = 10  # each time is known to 10 steps: a 10-step lead is no lead
    v = verdict(report)
    assert (v["mtl_to_reference"], v["validation_interval"]) == ("same", 10.0)
    assert "as soon as MAML within one validation interval (10 steps)" in format_verdict(report, v)
    report["settings"]["eval_every_steps"] = 5  # validations every 5 steps: 10 steps is two intervals
    assert verdict(report)["mtl_to_reference"] == "sooner"
    late = _report(_timed([(5.0, 10, 0.6), (10.0, 20, 0.6), (15.0, 50, 0.7)]))  # MTL at step 50, 20 after MAML
    late["settings"]["eval_every_steps"] = 10
    assert verdict(late)["mtl_to_reference"] == "later"
    clock = _report(_timed([(5.0, 10, 0.6), (10.0, 20, 0.695), (15.0, 30, 0.7)]), by_steps=False)
    clock["settings"]["eval_every_seconds"] = 60.0  # MAML's 60 s against MTL's 10 s: 50 s, within one minute
    assert verdict(clock)["mtl_to_reference"] == "same"
