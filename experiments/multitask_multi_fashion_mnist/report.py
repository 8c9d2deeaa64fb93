"""Results page of the loss-weighting sweep on Multi-Fashion-MNIST, rendered from ``results/weighting_sweep.json``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import _pagekit as kit
import _weighting_sweep as sweep

NAME = "multitask_multi_fashion_mnist"
PLANNED = (0, 1, 2)  # the seeds run.sh runs by default
SEED_COMMAND = 'SEEDS="0 1 2" bash experiments/multitask_multi_fashion_mnist/run.sh'
TEST_EXAMPLES = 10_000  # size of the benchmark's test split (a property of the benchmark, not a measurement)


def _ci95(percent: float) -> float:
    """Half-width of the 95% normal interval of an accuracy (in points) on the test split."""
    p = percent / 100
    return 196 * math.sqrt(p * (1 - p) / TEST_EXAMPLES)


def _findings(report: dict[str, Any]) -> str:
    methods = report["methods"]
    equal = methods["equal"]["test_metric"]
    ci = max(_ci95(v) for v in equal)
    within = [
        name
        for name, res in sweep.ranked(report)
        if name not in ("equal", "equal_tuned") and all(abs(a - b) < ci for a, b in zip(res["test_metric"], equal))
    ]
    minmax = [a - b for a, b in zip(methods["minmax"]["test_metric"], equal)]
    tuned = methods["equal_tuned"]
    gain = [a - b for a, b in zip(tuned["test_metric"], report["stl"])]
    mean = methods["mean"]["test_metric"]
    lines = [
        f"- With {TEST_EXAMPLES} test examples each accuracy has a 95% interval of about ±{ci:.1f} points, so on "
        f"one seed these methods are within noise of equal weighting on both tasks: {', '.join(within)}.",
        f"- The min-max objective (one task per step) is clearly worse than equal weighting "
        f"({' / '.join(f'{d:+.1f}' for d in minmax)} points).",
        f"- The one change that matters at this budget is the learning rate: equal weighting with its rate chosen on "
        f"validation loss (`equal_tuned`) is {' / '.join(f'{d:+.1f}' for d in gain)} points against STL "
        f"(Delta_m {tuned['delta_m']:+.2f} %), the finding of Kurin et al. 2022 (a tuned equal weighting matches the "
        "specialised methods) in its strongest form. The JSON does not record which rate won; STL itself was not "
        "tuned, so its own best rate may close part of that gap.",
        f"- `mean` and `equal` differ only by a factor K on the gradient, which Adam nearly cancels "
        f"({' / '.join(f'{v:.2f}' for v in mean)} against {' / '.join(f'{v:.2f}' for v in equal)}).",
    ]
    return "\n".join(lines)


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    report = kit.load(folder, "weighting_sweep.json")
    parts = [
        "# Multi-task weighting methods on Multi-Fashion-MNIST",
        "Question: at a short training budget, does any loss- or gradient-weighting method beat plain equal "
        "weighting (and single-task training) on two tasks that share an encoder?",
        "Protocol: two Fashion-MNIST items on a 36x36 canvas (top-left and bottom-right, shifted up to 4 px; "
        "50k / 10k / 10k pairs); hard sharing: a LeNet-style encoder (41k shared parameters) and one linear head per "
        "task; Adam; the test accuracy at the evaluation with the lowest validation loss (sum of the standardised "
        "per-task losses). Delta_m % is the mean relative loss of accuracy against single-task baselines (STL: the "
        "same code with one task), as Maninis et al. 2019 and Nash-MTL define it: positive is worse than STL. Rank: "
        "mean over tasks of each method's rank (1 = best). `equal_tuned`: equal weighting with the learning rate "
        "chosen on validation loss among 3e-4, 1e-3 and 3e-3. Peak MiB: the run's resident high-water mark during "
        "training and evaluation minus its resident memory before (fresh process per run). The sweep ran beside the "
        "QM9 sweep, one torch thread each, so its seconds per step are not a cost measurement (see the "
        "`multitask_cost` experiment).",
        sweep.settings_line(report),
        kit.command("bash experiments/multitask_multi_fashion_mnist/run.sh"),
        "Test accuracy (%):",
        sweep.sweep_table(report),
        kit.machine(report["machine"]),
        sweep.seeds_section(folder, PLANNED, SEED_COMMAND),
        "What it shows:",
        _findings(report),
        kit.image(NAME, "plot.png", "Delta_m per method, Multi-Fashion-MNIST"),
        kit.image(NAME, "results/weight_trajectories.png", "task weights during training"),
        kit.image(NAME, "results/loss_trajectories.png", "task losses during training"),
        "The equal-weighting run of this sweep also recorded the gradient diagnostics (lookahead rate "
        f"{report['diagnostics']['lookahead_lr']}); the `multitask_diagnostics` experiment reads them at the run's "
        "own rate:",
        kit.image(NAME, "results/gradient_conflict.png", "gradient cosine between the tasks per layer"),
        kit.image(NAME, "results/affinity.png", "lookahead task affinity"),
    ]
    return "\n\n".join(parts) + "\n"
