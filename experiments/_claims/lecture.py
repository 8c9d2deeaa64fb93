"""The basics of the CS330 lecture on multi-task and meta-learning, where the project tests them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _pagekit as kit

from .common import NOT_REPRODUCED, NOT_TESTABLE, PARTLY, REPRODUCED, Claim, Row, seed_runs, seeds_text

SOURCE = "CS330 lecture 2, multi-task and meta-learning basics"
TRANSLATED = "(translated from the seed text's Korean)"
SWEEPS = (("multitask_qm9", "QM9, 11 regression targets"), ("multitask_multi_fashion_mnist", "Multi-Fashion-MNIST"))


def _delta_m(runs: dict[int, Any], method: str) -> tuple[str, bool]:
    """Delta_m % of ``method`` against single-task training, over seeds, and whether it is worse than STL (above
    0; with several seeds the 95% interval must lie above 0)."""
    from metabridge.stats import mean_t_interval95

    if len(runs) == 1:
        data = next(iter(runs.values()))
        res, n = data["methods"][method], len(data.get("seeds", [0]))
        ci = res.get("delta_m_ci95") if n > 1 else None
        worse = res["delta_m"] - (ci or 0.0) > 0
        text = kit.pm(res["delta_m"], ci) + (f" ({n} seeds)" if n > 1 else " (1 seed, no interval)")
        return text, worse
    values = [d["methods"][method]["delta_m"] for d in runs.values()]
    r = mean_t_interval95(values)
    return kit.over_seeds(values), r.mean - r.ci95 > 0


def _transfer_row(root: Path, experiment: str, title: str) -> Row:
    runs = seed_runs(root / experiment, "weighting_sweep")
    equal, equal_worse = _delta_m(runs, "equal")
    tuned, tuned_worse = _delta_m(runs, "equal_tuned")
    verdict = REPRODUCED if tuned_worse else PARTLY if equal_worse else NOT_REPRODUCED
    return Row(
        title=f"{title}: one shared encoder against one network per task",
        experiment=experiment,
        paper="No number; the seed text names the symptom (independent networks doing better) and its causes.",
        command=f"`bash experiments/{experiment}/run.sh`",
        seeds=seeds_text(runs),
        ours=[
            f"Delta_m % of equal weighting against single-task training (positive: worse than one network per task): "
            f"{equal}",
            f"the same with its learning rate tuned on validation loss (`equal_tuned`): {tuned}",
        ],
        difference="hard sharing (one encoder, one head per task) against single-task networks of the same "
        "architecture at one short budget; the single-task runs were not tuned.",
        rule="reproduced if the tuned equal weighting is worse than single-task training (Delta_m above 0; with "
        "several seeds its 95% t-interval above 0); partly if only the untuned one is; else not reproduced.",
        verdict=verdict,
        why=f"tuned: {'worse' if tuned_worse else 'not worse'} than single-task; untuned: "
        f"{'worse' if equal_worse else 'not worse'}",
    )


def _conflict_row(root: Path) -> Row:
    report = kit.load(root / "multitask_diagnostics", "equal_weighting_diagnostics.json")
    conflict = report["diagnostics"]["gradient_conflict"]
    steps = sorted(conflict["steps"].items(), key=lambda item: int(item[0]))
    whole = [(s, layers["*"]["cosine"][0][1]) for s, layers in steps]
    layer = [(s, n, v["cosine"][0][1]) for s, layers in steps for n, v in layers.items() if n != "*"]
    whole_neg = [s for s, c in whole if c < 0]
    layer_neg = sorted({n for _, n, c in layer if c < 0})
    verdict = REPRODUCED if whole_neg else PARTLY if layer_neg else NOT_REPRODUCED
    lowest = min(layer, key=lambda t: t[2])
    return Row(
        title="Cross-task interference: the cosine between the two tasks' gradients in the shared encoder",
        experiment="multitask_diagnostics",
        paper='No number: "optimization challenges: cross-task interference" is named as a cause.',
        command="`bash experiments/multitask_diagnostics/run.sh`",
        seeds=f"seed {', '.join(map(str, report.get('seeds', [0])))} (1 seed)",
        ours=[
            f"whole encoder: negative at {len(whole_neg)} of {len(whole)} diagnostic steps "
            f"(lowest {min(c for _, c in whole):+.2f})",
            f"layers with a negative cosine at some step: {', '.join(f'`{n}`' for n in layer_neg) or 'none'}; "
            f"lowest {lowest[2]:+.2f} (`{lowest[1]}`, step {lowest[0]})",
        ],
        difference="a measurement of conflict during one equal-weighting run (Multi-Fashion-MNIST); it does not "
        "show that the conflict causes the negative transfer.",
        rule="reproduced if the whole encoder's gradients conflict (cosine below 0) at some diagnostic step; partly "
        "if only a single layer's do; not reproduced if none.",
        verdict=verdict,
        why=f"whole encoder conflicting at steps {', '.join(whole_neg) or 'none'}",
    )


def _conditioning(root: Path) -> Claim:
    lines = []
    for experiment, title in SWEEPS:
        runs = seed_runs(root / experiment, "weighting_sweep")
        data = next(iter(runs.values()))
        best = min((n for n in data["methods"] if n != "equal_tuned"), key=lambda n: data["methods"][n]["delta_m"])
        lines.append(
            f"{title}: Delta_m % equal weighting {_delta_m(runs, 'equal')[0]}, best weighting `{best}` "
            f"{_delta_m(runs, best)[0]}"
        )
    row = Row(
        title="Hard sharing with one head per task; sixteen task weightings of the summed objective",
        experiment="multitask_qm9",
        paper="A formulation, no outcome: f_θ(y | x, z_i), objective min_θ Σ_i L_i(θ, D_i).",
        command="`bash experiments/multitask_qm9/run.sh`, `bash experiments/multitask_multi_fashion_mnist/run.sh`",
        seeds="see the rows of claim L-2",
        ours=lines,
        difference="no experiment compares ways of conditioning on z_i (concatenation, multiplicative gating, "
        "task-specific layers): every model here conditions only through its per-task head.",
        rule="not testable here: the seed text states a formulation and a design choice, not a measurable outcome.",
        verdict=NOT_TESTABLE,
        why="no conditioning comparison is run; the weighting figures are context",
    )
    return Claim(
        "L-1",
        SOURCE,
        "Task conditioning decides what is shared; the objective is a (weighted) sum of task losses",
        "choosing the condition z_i is the same as deciding when and how to share parameters; multiplicative "
        f"conditioning is a good idea, but which works depends on the task {TRANSLATED}. Objective: "
        "min_θ Σ_i L_i(θ, D_i)",
        "Multi-task learning: Models & Training",
        [row],
    )


def _negative_transfer(root: Path) -> Claim:
    rows = [_transfer_row(root, e, t) for e, t in SWEEPS] + [_conflict_row(root)]
    return Claim(
        "L-2",
        SOURCE,
        "Negative transfer: independent networks sometimes beat a shared one; cross-task interference is a cause",
        f"sometimes independent networks do better than sharing weights across tasks. Why? Optimization challenges "
        f"(cross-task interference, tasks learning at different rates); limited representational capacity {TRANSLATED}",
        "Challenges, #1: Negative Transfer",
        rows,
        combine="any",
    )


def claims(root: Path) -> list[Claim]:
    """The lecture's claims that the project tests (L-1 is listed as not testable)."""
    from .lecture_meta import meta_claims

    return [_conditioning(root), _negative_transfer(root), *meta_claims(root)]
