"""The verdict of ``metabridge compare``: the few categorical answers a comparison gives, in a
form that can be checked for agreement across seeds (the digits differ between seeds; the
verdict should not).

The claim under test is Wang, Zhao & Li (ICML 2021, Sec. 5): MTL is competitive with
gradient-based meta-learning on few-shot benchmarks and reaches its accuracy sooner. The
verdict answers, from one ``compare.json``:

* the most accurate method at each test shot, and which others are statistically tied
  with it (their 95% episode intervals overlap);
* where MTL's test accuracy lies against MAML's 95% interval: ``above``, ``within`` or
  ``below`` (MAML's mean +- its half-width);
* MTL's time to MAML's accuracy as a ratio: the training seconds (and steps) MAML needed
  until its validation first reached target = (its final validation accuracy) - (that
  validation's CI half-width), divided by MTL's to the same target; decided in the budget's
  unit (steps under a step budget, seconds under ``--budget-seconds``) at the resolution
  the validations give: ``sooner`` when MTL got there more than one validation interval
  before MAML, ``later`` when more than one interval after, ``same`` within one interval
  (the two times are each known only to the interval between validations), ``never`` when
  MTL did not reach the target;
* whether every method ended settled: converged by the project's rule
  (:func:`~metabridge.benchmarks._compare_report.convergence`) or annealed to the end of
  its step budget by a cosine or step schedule.
"""

from __future__ import annotations

from typing import Any

from ._compare_methods import LABELS
from ._compare_report import _test_shots, budget_axis, settled_state

__all__ = ["format_verdict", "settled_state", "verdict", "verdict_key"]


def _reach(curve: list[dict[str, Any]], target: float) -> dict[str, float] | None:
    for point in curve:
        if point["val_mean"] >= target:
            return {"seconds": float(point["train_seconds"]), "steps": float(point["step"])}
    return None


def _validation_interval(methods: dict[str, Any], settings: dict[str, Any], by_steps: bool) -> float:
    """The spacing of the validations, in the budget's unit: ``eval_every_steps`` (or the runs' ``eval_every``)
    under a step budget, ``eval_every_seconds`` under a wall-clock one (0 when unknown)."""
    if by_steps:
        every = settings.get("eval_every_steps") or max(
            ((r.get("config") or {}).get("eval_every") or 0 for r in methods.values()), default=0
        )
    else:
        every = settings.get("eval_every_seconds") or 0
    return float(every)


def _position(value: float, mean: float, half: float) -> str:
    if value > mean + half:
        return "above"
    return "below" if value < mean - half else "within"


def verdict(report: dict[str, Any], reference: str = "maml") -> dict[str, Any]:
    """The categorical answers of one comparison (see the module docstring), with the figures
    behind them. ``reference`` is the gradient-based method MTL is measured against."""
    methods, settings = report["methods"], report["settings"]
    out: dict[str, Any] = {"reference": reference, "best": {}, "tied_with_best": {}, "mtl_vs_reference": {}}
    for shot in map(str, _test_shots(settings)):
        scored = {m: r["test"][shot] for m, r in methods.items() if shot in r.get("test", {})}
        if not scored:
            continue
        best = max(scored, key=lambda m: scored[m]["mean"])
        floor = scored[best]["mean"] - scored[best]["ci95"]
        out["best"][shot] = best
        out["tied_with_best"][shot] = sorted(
            m for m, t in scored.items() if m != best and t["mean"] + t["ci95"] >= floor
        )
        if "mtl" in scored and reference in scored:
            ref = scored[reference]
            out["mtl_vs_reference"][shot] = _position(scored["mtl"]["mean"], ref["mean"], ref["ci95"])
    out["settled"] = {m: settled_state(r, settings) for m, r in methods.items()}
    out.update(time_ratio=None, step_ratio=None, mtl_to_reference=None, target=None)
    out["decided_by"] = "steps" if budget_axis(settings) == "step" else "seconds"
    if "mtl" in methods and reference in methods and methods[reference]["curve"]:
        final = methods[reference]["curve"][-1]
        target = final["val_mean"] - final["val_ci95"]
        ref_reach, mtl_reach = _reach(methods[reference]["curve"], target), _reach(methods["mtl"]["curve"], target)
        out["target"] = target
        if mtl_reach is None or ref_reach is None:
            out["mtl_to_reference"] = "never"
        else:
            out["time_ratio"] = ref_reach["seconds"] / mtl_reach["seconds"]
            out["step_ratio"] = ref_reach["steps"] / mtl_reach["steps"]
            by_steps = out["decided_by"] == "steps"
            lead = ref_reach["steps"] - mtl_reach["steps"] if by_steps else ref_reach["seconds"] - mtl_reach["seconds"]
            interval = _validation_interval(methods, settings, by_steps)
            out["validation_interval"] = interval
            out["mtl_to_reference"] = "sooner" if lead > interval else "later" if lead < -interval else "same"
    return out


def verdict_key(v: dict[str, Any]) -> tuple[Any, ...]:
    """The part of a verdict that must agree across seeds: best method per shot, MTL against the
    reference's interval per shot, sooner/later, and whether every method settled."""
    return (
        tuple(sorted(v["best"].items())),
        tuple(sorted(v["mtl_vs_reference"].items())),
        v["mtl_to_reference"],
        all(state != "open" for state in v["settled"].values()),
    )


def _label(method: str) -> str:
    return LABELS.get(method, method).split(" (")[0]


def format_verdict(report: dict[str, Any], v: dict[str, Any] | None = None) -> str:
    """The verdict as the lines ``metabridge compare`` prints last."""
    v = v or verdict(report)
    ref, methods = _label(v["reference"]), report["methods"]
    lines = [f"verdict (seed {report['settings'].get('seed', 0)}):"]
    for shot, best in v["best"].items():
        tied = v["tied_with_best"][shot]
        line = f"  {shot}-shot: most accurate {_label(best)} ({100 * methods[best]['test'][shot]['mean']:.2f}%)"
        line += f", tied within the CIs: {', '.join(map(_label, tied))}" if tied else ", ahead of every other CI"
        if shot in v["mtl_vs_reference"]:
            line += f"; MTL is {v['mtl_vs_reference'][shot]} {ref}'s 95% CI"
        lines.append(line + ".")
    if v["mtl_to_reference"] == "never":
        lines.append(f"  time: MTL never reached {ref}'s final validation accuracy minus its CI.")
    elif v["mtl_to_reference"] is not None:
        unit = v.get("decided_by", "steps")
        interval = v.get("validation_interval")
        within = f" within one validation interval ({interval:g} {unit})" if interval else ""
        when = {"same": f"as soon as {ref}{within}"}.get(v["mtl_to_reference"], v["mtl_to_reference"])
        lines.append(
            f"  time: MTL reached {ref}'s final validation accuracy minus its CI ({100 * v['target']:.2f}%) "
            f"{when} (in training {unit}): {ref} took {v['time_ratio']:.2f}x MTL's "
            f"training seconds and {v['step_ratio']:.2f}x its steps."
        )
    states = ", ".join(f"{_label(m)} {s}" for m, s in v["settled"].items())
    settled = all(s != "open" for s in v["settled"].values())
    lines.append(
        f"  settled: {states}"
        + ("." if settled else " (an open method's accuracy is the budget's, not its final one).")
    )
    return "\n".join(lines)
