"""The report of ``metabridge compare``: time to the accuracy target, convergence of each
validation curve, the plain-text table, the sentences under it and the plot.

Time-to-accuracy, as in Wang, Zhao & Li (ICML 2021, Sec. 5): the training time at which a
method's validation accuracy first reaches the target = (best final validation accuracy
among the GBML methods) - (its 95% CI half-width).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._compare_methods import GBML, LABELS, REFERENCES


def _train_shot(settings: dict[str, Any]) -> int:
    """K of the training episodes (reports written before the rename call it ``train_shot``)."""
    return int(settings.get("k_shot", settings.get("train_shot", 1)))


def _test_shots(settings: dict[str, Any]) -> list[int]:
    """K of the test episodes (``shots`` in reports written before the rename)."""
    return list(settings.get("test_shots", settings.get("shots", [])))


def time_to_target(curve: list[dict[str, Any]], target: float) -> float | None:
    """First training time at which validation accuracy reached ``target`` (None: never)."""
    for point in curve:
        if point["val_mean"] >= target:
            return float(point["train_seconds"])
    return None


#: The fraction of a method's training time, at its end, whose validations decide whether
#: it has converged (see :func:`convergence`).
CONVERGED_TAIL = 1 / 3


def budget_axis(settings: dict[str, Any]) -> str:
    """The curve field a comparison's budget is counted in: ``"step"`` for a step budget
    (``budget_steps``), else ``"train_seconds"``."""
    return "step" if settings.get("budget_steps") else "train_seconds"


def convergence(
    curve: list[dict[str, Any]], tail: float = CONVERGED_TAIL, axis: str = "train_seconds"
) -> dict[str, Any]:
    """Whether a validation curve has flattened: ``{"converged": True | False | None, ...}``.

    The rule: flat within its CI over the last third of the budget, in two
    parts, both against the final validation's 95% CI half-width ``ci``:

    * the least-squares line through the validations of the last third gains at most ``ci``
      across it (a falling trend counts as converged: more training would not help, and
      the best-validation weights are kept), and
    * the mean validation of the last third is at most ``ci`` above that of the middle
      third: with only a few noisy validations in the window, a curve still climbing
      steadily can look flat inside it (a few points scattered around a still-rising line).

    A trend and means, not the spread of the points, because single validations scatter by
    about their CI even on a flat curve. ``None`` (unknown) when fewer than three
    validations fall in the last third, or none in the middle one: validate more often.
    ``axis`` is the curve field the thirds are taken over: ``"train_seconds"`` (a time budget)
    or ``"step"`` (a step budget, :func:`budget_axis`)."""
    if not curve:
        return {"converged": None, "window_points": 0, "gain": None, "rise": None, "ci95": None}
    end = curve[-1][axis]
    eps = 1e-9 * max(end, 1.0)
    window = [p for p in curve if p[axis] >= (1 - tail) * end - eps]
    middle = [p for p in curve if (1 - 2 * tail) * end - eps <= p[axis] < (1 - tail) * end - eps]
    ci = curve[-1]["val_ci95"]
    if len(window) < 3 or not middle:
        return {"converged": None, "window_points": len(window), "gain": None, "rise": None, "ci95": ci}
    ts = [float(p[axis]) for p in window]
    vs = [p["val_mean"] for p in window]
    mt, mv = sum(ts) / len(ts), sum(vs) / len(vs)
    var = sum((t - mt) ** 2 for t in ts)
    slope = sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / var if var > 0 else 0.0
    gain = slope * (ts[-1] - ts[0])
    rise = mv - sum(p["val_mean"] for p in middle) / len(middle)
    return {
        "converged": bool(gain <= ci and rise <= ci),
        "window_points": len(window),
        "gain": gain,
        "rise": rise,
        "ci95": ci,
    }


def settled_state(result: dict[str, Any], settings: dict[str, Any]) -> str:
    """``"converged"`` (the project's flatness rule), ``"annealed"`` (a cosine or step schedule run to
    the last step of a step budget) or ``"open"`` (neither: its accuracy is the budget's)."""
    if convergence(result["curve"], axis=budget_axis(settings))["converged"]:
        return "converged"
    schedule = (result.get("config") or {}).get("lr_schedule") or (settings.get("training") or {}).get("lr_schedule")
    budget = settings.get("budget_steps")
    if schedule in ("cosine", "step") and budget and result.get("steps") == budget and not result.get("stopped_early"):
        return "annealed"
    return "open"


def _converged_label(flag: bool | None) -> str:
    return {True: "yes", False: "no", None: "unknown"}[flag]


def summarize(
    results: dict[str, dict[str, Any]], axis: str = "train_seconds", settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The time-to-accuracy target, each method's time to reach it, whether each method's
    validation curve had flattened by the end of its budget (counted in ``axis``,
    :func:`budget_axis`) and, given the comparison's ``settings``, whether each settled
    (:func:`settled_state`)."""
    gbml = {m: r for m, r in results.items() if m in GBML and r["curve"]}
    summary: dict[str, Any] = {
        "target": None,
        "best_gbml": None,
        "time_to_target": {},
        "speedup_vs_best_gbml": None,
        "converged": {m: convergence(r["curve"], axis=axis)["converged"] for m, r in results.items()},
    }
    if settings is not None:
        summary["settled"] = {m: settled_state(r, settings) for m, r in results.items()}
    if not gbml:
        return summary
    best = max(gbml, key=lambda m: gbml[m]["curve"][-1]["val_mean"])
    final = gbml[best]["curve"][-1]
    target = final["val_mean"] - final["val_ci95"]
    summary.update(target=target, best_gbml=best)
    for m, r in results.items():
        summary["time_to_target"][m] = time_to_target(r["curve"], target)
    t_mtl, t_gbml = summary["time_to_target"].get("mtl"), summary["time_to_target"].get(best)
    if t_mtl and t_gbml:
        summary["speedup_vs_best_gbml"] = t_gbml / t_mtl
    return summary


def speedup_sentence(summary: dict[str, Any]) -> str:
    """One honest sentence on MTL's time-to-target against the best GBML method: no ratio
    (and no winner) unless both had converged, since an unconverged method's time or
    target says only where the budget stopped it."""
    best = LABELS.get(summary["best_gbml"], summary["best_gbml"])
    speedup = summary["speedup_vs_best_gbml"]
    if "mtl" not in summary["time_to_target"]:
        return "MTL was not run."
    settled = summary.get("settled") or {
        m: "converged" if c else "open" for m, c in summary.get("converged", {}).items()
    }
    unconverged = [LABELS.get(m, m) for m in ("mtl", summary["best_gbml"]) if settled.get(m, "open") == "open"]
    if unconverged:
        return (
            f"not converged: {', '.join(unconverged)} still changing over the last third of the budget, not annealed "
            "(or too few validations to tell), so no time-to-target verdict; train longer "
            "(--budget-seconds or --budget-steps)."
        )
    if summary["time_to_target"]["mtl"] is None:
        return f"MTL never reached the target within its budget ({best} did)."
    if speedup is None:
        return f"no time-to-target ratio: {best} reached the target at its first validation."
    if speedup >= 1:
        return f"MTL reached it {speedup:.1f}x sooner than {best} (in training seconds)."
    return f"MTL reached it later: it took {1 / speedup:.1f}x as long as {best} (in training seconds)."


def format_table(report: dict[str, Any]) -> str:
    """Plain-text results table."""
    shots = _test_shots(report["settings"])
    cols = [f"{s}-shot acc %" for s in shots] + ["train s", "steps", "s/iter", "peak MB", "to target s", "converged"]
    head = f"{'method':20s} " + " ".join(f"{c:>15s}" if "acc" in c else f"{c:>11s}" for c in cols)
    lines = [head, "-" * len(head)]
    ttt = report["summary"]["time_to_target"]
    axis = budget_axis(report["settings"])
    conv = report["summary"].get("converged") or {
        m: convergence(r["curve"], axis=axis)["converged"] for m, r in report["methods"].items()
    }
    settled = report["summary"].get("settled", {})
    for m, r in report["methods"].items():
        label = "annealed" if settled.get(m) == "annealed" else _converged_label(conv.get(m))
        accs = " ".join(
            f"{100 * r['test'][str(s)]['mean']:>7.2f} ± {100 * r['test'][str(s)]['ci95']:<5.2f}" for s in shots
        )
        t = ttt.get(m)
        lines.append(
            f"{LABELS.get(m, m):20s} {accs} {r['train_seconds']:>11.0f} {r['steps']:>11d} "
            f"{r['seconds_per_iteration']:>11.3f} {r['peak_memory_mb'] or float('nan'):>11.0f} "
            f"{f'{t:.0f}' if t is not None else 'never':>11s} {label:>11s}"
        )
    s = report["summary"]
    if s["target"] is not None:
        lines.append(
            f"\ntarget = best GBML ({LABELS.get(s['best_gbml'], s['best_gbml'])}) final validation "
            f"accuracy - CI = {100 * s['target']:.2f}% ({_train_shot(report['settings'])}-shot validation)"
        )
        lines.append(speedup_sentence(s))
    lines.extend(accuracy_sentences(report))
    lines.extend(f"published: {REFERENCES[m]}." for m in report["methods"] if m in REFERENCES)
    return "\n".join(lines)


def accuracy_sentences(report: dict[str, Any]) -> list[str]:
    """Per test shot: the most accurate method, and whether MTL is within its CI, and a
    warning that an unconverged method's accuracy is the one at the budget."""
    methods, out = report["methods"], []
    conv = report["summary"].get("converged", {})
    for shot in _test_shots(report["settings"]):
        key = str(shot)
        scored = {m: r["test"][key] for m, r in methods.items() if key in r["test"]}
        if not scored:
            continue
        best = max(scored, key=lambda m: scored[m]["mean"])
        b = scored[best]
        line = f"{shot}-shot test: best {LABELS.get(best, best)} {100 * b['mean']:.2f} ± {100 * b['ci95']:.2f}%"
        if "mtl" in scored and best != "mtl":
            t = scored["mtl"]
            gap = 100 * (b["mean"] - t["mean"])
            overlap = t["mean"] + t["ci95"] >= b["mean"] - b["ci95"]
            line += (
                f"; MTL {100 * t['mean']:.2f} ± {100 * t['ci95']:.2f}% ({gap:.2f} points lower, "
                f"{'CIs overlap' if overlap else 'CIs disjoint'})"
            )
        out.append(line + ".")
    settled = report["summary"].get("settled", {})
    stopped = [LABELS.get(m, m) for m in methods if conv.get(m) is not True and settled.get(m) != "annealed"]
    if stopped:
        out.append(f"not converged nor annealed (accuracy at the budget, not final): {', '.join(stopped)}.")
    return out


def plot(report: dict[str, Any], path: Path) -> None:
    """Validation accuracy against training wall-clock (a step budget: against steps) for
    every method, and each method's test accuracy (same shot as training) at the end of its
    training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    axis = budget_axis(report["settings"])
    for m, r in report["methods"].items():
        xs = [p[axis] for p in r["curve"]]
        ys = [100 * p["val_mean"] for p in r["curve"]]
        (line,) = ax.plot(xs, ys, marker="o", ms=3, label=LABELS.get(m, m))
        test = r["test"].get(str(_train_shot(report["settings"])))
        if test is not None:  # the test accuracy of the best-validation weights, at the end of training
            x = r["steps"] if axis == "step" else r["train_seconds"]
            ax.errorbar(
                [x],
                [100 * test["mean"]],
                yerr=[100 * test["ci95"]],
                marker="*",
                ms=10,
                color=line.get_color(),
                capsize=3,
            )
    if report["summary"]["target"] is not None:
        ax.axhline(100 * report["summary"]["target"], color="k", ls="--", lw=1, label="target (best GBML - CI)")
    st = report["settings"]
    ax.set_xlabel("training steps" if axis == "step" else "training wall-clock (s, validation excluded)")
    ax.plot([], [], "k*", ms=8, ls="", label="test accuracy ± CI (best-val. weights)")
    ax.set_ylabel(f"accuracy %, {st['n_way']}-way {_train_shot(st)}-shot (lines: validation)")
    ax.set_title(f"{st['dataset']} / {st['model']} on {report['machine']['device']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path) -> None:
    """Write ``compare.json`` and ``compare.png`` into the folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(report, indent=2))
    plot(report, out / "compare.png")
