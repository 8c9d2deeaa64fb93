"""Results page of the negative-transfer diagnostics (gradient conflict, TAG affinity, task grouping).

Rendered from ``results/equal_weighting_diagnostics.json`` (the equal-weighting run on Multi-Fashion-MNIST).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _pagekit as kit

NAME = "multitask_diagnostics"
WHOLE = "*"  # the JSON's key for the whole shared encoder


def _conflict_table(conflict: dict[str, Any]) -> str:
    layers = [*conflict["layers"], WHOLE]
    rows = []
    for step, per_layer in sorted(conflict["steps"].items(), key=lambda item: int(item[0])):
        rows.append([step, *[f"{per_layer[layer]['cosine'][0][1]:+.2f}" for layer in layers]])
    headers = ["step", *[f"`{layer}`" for layer in conflict["layers"]], "whole encoder"]
    return kit.table(headers, rows)


def _affinity_table(affinity: dict[str, Any]) -> str:
    tasks = affinity["tasks"]
    rows = [
        [f"step on {a}", *[f"{affinity['mean'][i][j]:.5f}" for j in range(len(tasks))]] for i, a in enumerate(tasks)
    ]
    return kit.table(["Z(i -> j)", *[f"measured on {t}" for t in tasks]], rows)


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    report = kit.load(folder, "equal_weighting_diagnostics.json")
    diag = report["diagnostics"]
    conflict, affinity, grouping = diag["gradient_conflict"], diag["affinity"], diag["grouping"]
    run = report["methods"]["equal"]
    tasks = report["tasks"]
    groups = " + ".join("{" + ", ".join(g) + "}" for g in grouping["named"])
    parts = [
        "# Negative-transfer diagnostics on Multi-Fashion-MNIST",
        "Question: do the two Multi-Fashion-MNIST tasks conflict in the shared encoder, where, and when; and would "
        "a task-grouping search keep them together?",
        "Protocol: the equal-weighting run of the Multi-Fashion-MNIST sweep (same settings and seed), with "
        f"diagnostics every 100 steps, recorded outside the timed step and without changing training (its test "
        f"accuracy, {' / '.join(f'{v:.2f}' for v in run['test_metric'])} %, is the sweep's equal-weighting row). "
        "Gradient conflict: the cosine between the two tasks' gradients per shared layer and over the whole "
        "encoder (negative = conflicting; Yu et al. 2020). TAG's lookahead affinity (Fifty et al. 2021): "
        "Z(i -> j) = 1 - L_j after an SGD step on task i alone / L_j before, at the lookahead rate "
        f"{diag['lookahead_lr']}, averaged over {affinity['steps']} evaluations; the grouping search scores every "
        "partition of the tasks by the affinities inside its groups (a singleton scores 0).",
        kit.command("bash experiments/multitask_diagnostics/run.sh"),
        "Cosine between the gradients of " + " and ".join(tasks) + " per shared layer:",
        _conflict_table(conflict),
        "Lookahead affinity (rows: the task stepped on; columns: the task measured):",
        _affinity_table(affinity),
        f"Grouping ({grouping['method']} search): {groups}, score {grouping['score']:.4f}.",
        kit.machine(report["machine"]),
        "What it shows: the two position-specific classifiers conflict in the convolutions early in training and "
        "agree later, while the fully connected layer stays near orthogonal; each task's step helps the other, but "
        "by far less than it helps itself, and the grouping search keeps the two tasks together.",
        kit.image(NAME, "plot.png", "gradient cosine per layer during training"),
        kit.image(NAME, "results/affinity.png", "lookahead affinity"),
        kit.image(NAME, "results/loss_trajectories.png", "task losses during training"),
        kit.image(NAME, "results/weight_trajectories.png", "task weights during training"),
    ]
    return "\n\n".join(parts) + "\n"
