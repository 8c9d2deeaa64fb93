"""Results page of the meta-RL sampler's cost against the raw environment step.

Rendered from ``results/halfcheetah_velocity.json`` and ``results/navigation_2d.json``
(``metabridge bench rl_sampler``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _pagekit as kit

NAME = "metarl_sampler_speed"
RUNS = ("halfcheetah_velocity.json", "navigation_2d.json")
TARGET = 0.25  # the sampler's goal: at most 25% over the raw environment-step time on HalfCheetah


def _row(r: dict[str, Any]) -> list[str]:
    return [
        f"`{r['env']}`",
        f"{r['tasks']} x {r['rollouts']} x {r['horizon']}",
        str(tuple(r["hidden"])),
        f"{r['raw_steps_per_s']:,.0f}",
        f"{r['sampler_steps_per_s']:,.0f}",
        f"{r['with_processing_steps_per_s']:,.0f}",
        f"{100 * r['overhead']:.1f}%",
        str(r["threads"]),
    ]


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    runs = [kit.load(folder, name) for name in RUNS]
    cheetah, nav = runs
    headers = [
        "environment",
        "tasks x rollouts x steps",
        "policy",
        "raw env.step steps/s",
        "sampler steps/s",
        "with baselines + GAE steps/s",
        "overhead",
        "threads",
    ]
    verdict = "within" if cheetah["overhead"] <= TARGET else "above"
    parts = [
        "# Meta-RL sampler speed against the raw environment step",
        "Question: how much does the task-batched sampler (one batched policy forward per step, each task with its own "
        "parameters as after MAML's inner step) and the processing (returns, the per-task linear baselines, GAE) add "
        "to the time of the environment's own `step`?",
        "Protocol: for a meta-batch of T tasks x R rollouts over the horizon H, one process after a warm-up, the best "
        "of 3 repetitions of: raw (`reset` + H `step` calls with pre-drawn random actions: the floor for any sampler), "
        "the sampler, and the processing. Overhead = (sampler + processing - raw) / raw. Each ran on one thread "
        "beside one other single-thread job.",
        kit.command("bash experiments/metarl_sampler_speed/run.sh"),
        kit.table(headers, [_row(r) for r in runs]),
        kit.machine(cheetah["machine"]),
        f"What it shows: on HalfCheetah-Vel the sampler and processing add {100 * cheetah['overhead']:.1f}% to the "
        f"raw step time, {verdict} the {100 * TARGET:.0f}% goal. On 2D navigation the environment is four tensor "
        f"operations ({nav['raw_steps_per_s']:,.0f} raw steps/s), so the policy forward is the cost. We found no "
        "wall-clock figure for the same work from the reference implementations (Finn et al.'s rllab code, "
        "pytorch-maml-rl, Gao & Sener's ProMP code), so there is no like-for-like time to beat.",
        kit.image(NAME, "plot.png", "HalfCheetah-Vel: steps/s of raw step, sampler and processing"),
        kit.image(NAME, "results/navigation_2d.png", "2D navigation: steps/s of raw step, sampler and processing"),
    ]
    return "\n\n".join(parts) + "\n"
