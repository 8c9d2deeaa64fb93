"""Results page of HalfCheetah-Vel at equal samples, scaled: MAML-TRPO against DRS-TRPO and DRS-PPO.

Rendered from ``results/finn_steps.json`` (Finn et al.'s step sizes) and ``results/gao_steps.json`` (Gao & Sener's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _metarl_tables as rl
import _pagekit as kit

NAME = "metarl_halfcheetah_velocity"
RUNS = {"finn_steps.json": "Finn et al.'s step sizes", "gao_steps.json": "Gao & Sener's step sizes"}
BASE = ("maml-trpo", "drs-trpo", "drs-ppo", "random init")


def _steps_line(run: dict[str, Any]) -> str:
    c = run["config"]
    return f"MAML inner lr {c['inner_lr']}, MAML max KL {c['algorithm_kwargs']['max_kl']}"


def _spread(run: dict[str, Any]) -> float:
    """Largest change of any method's return over the test updates, relative to its 95% CI at 0 updates."""
    return max((max(r["returns"]) - min(r["returns"])) / r["returns_ci95"][0] for r in run["methods"].values())


def _findings(runs: dict[str, dict[str, Any]]) -> str:
    ranks = [sorted(BASE, key=lambda n: -run["methods"][n]["returns"][0]) for run in runs.values()]
    orders = [f"{label}: " + " > ".join(r) for label, r in zip(RUNS.values(), ranks)]
    agree = "in the same order with both step-size choices" if ranks[0] == ranks[1] else "in these orders"
    finn, gao = runs.values()
    same = finn["methods"]["drs-trpo"]["returns"][0] == gao["methods"]["drs-trpo"]["returns"][0]
    drs0 = kit.pm(finn["methods"]["drs-trpo"]["returns"][0], finn["methods"]["drs-trpo"]["returns_ci95"][0])
    steps = finn["methods"]["maml-trpo"]["env_steps"]
    lines = [
        f"- In {steps / 1e6:.1f} M environment steps per method no method has learned to adapt: across the test "
        f"updates every row moves by at most {max(_spread(r) for r in runs.values()):.2f} of its own 95% interval, "
        "with the preset's step and with the tuned one.",
        f"- What differs is the initial policy, {agree} (return before adaptation): "
        + "; ".join(orders)
        + ". That is the regime where Gao & Sener report DRS ahead (a limited "
        "budget); it is not a test of their full-budget claim (`metabridge rl tradeoff --preset halfcheetah-vel-gao`).",
        f"- DRS-TRPO's return before adaptation is {'bit-identical' if same else 'different'} in the two runs "
        f"({drs0}): same seed and same DRS settings in both, only the test step differs; runs are deterministic given "
        "the seed.",
    ]
    return "\n".join(lines)


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    runs = {name: kit.load(folder, name) for name in RUNS}
    parts = [
        "# Meta-RL on HalfCheetah-Vel at equal samples, scaled down",
        "Question: on Gao & Sener's HalfCheetahRandVel, at a small equal budget of environment steps, which of "
        "MAML-TRPO, DRS-TRPO and DRS-PPO gives the better policy before and after fine-tuning?",
        "Protocol: goal velocity U(0, 3), reward -|v - v_goal| - 0.05‖a‖², over gymnasium's HalfCheetah-v5; scaled "
        "down to the settings below (the paper's budget: `metabridge rl tradeoff --preset halfcheetah-vel-gao`); "
        "DRS gets twice MAML's iterations (equal samples). Test: "
        "held-out goals, returns after k policy-gradient updates, mean ± 95% CI over the goals, which differ a lot "
        "in reachable return: compare rows against each other (the goals are the same for every row). The "
        "`(tuned step)` rows pick each method's test step on separate validation goals. Training seconds were "
        "measured with two or three runs sharing the cores.",
        kit.command("bash experiments/metarl_halfcheetah_velocity/run.sh"),
    ]
    for name, label in RUNS.items():
        run = runs[name]
        parts += [
            f"## {label} ({_steps_line(run)})",
            rl.config_line(run),
            rl.returns_table(run),
            kit.machine(run["machine"]),
        ]
    parts += [
        "## What it shows",
        _findings(runs),
        kit.image(NAME, "plot.png", "HalfCheetah-Vel returns, Finn's step sizes"),
        kit.image(NAME, "results/gao_steps.png", "HalfCheetah-Vel returns, Gao & Sener's step sizes"),
    ]
    return "\n\n".join(parts) + "\n"
