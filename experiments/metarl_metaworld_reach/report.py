"""Results page of Meta-World ML1 reach, scaled down: MAML-TRPO against DRS-TRPO.

Rendered from ``results/ml1_reach.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _metarl_tables as rl
import _pagekit as kit

NAME = "metarl_metaworld_reach"


def _success_table(run: dict[str, Any]) -> str:
    rows = []
    for name, res in run["methods"].items():
        success = " / ".join(f"{100 * s:.0f}%" for s in res["success"])
        returns = " / ".join(f"{r:.0f}" for r in res["returns"])
        rows.append([name, success, returns])
    return kit.table(["method", "success before / after 1 update", "return before / after"], rows)


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    run = kit.load(folder, "ml1_reach.json")
    m = run["methods"]
    maml, drs = m["maml-trpo"], m["drs-trpo"]
    ahead = all(d > a for d, a in zip(drs["success"], maml["success"]))
    minutes = (maml["train_seconds"] + drs["train_seconds"]) / 60
    parts = [
        "# Meta-RL on Meta-World ML1 reach, scaled down",
        "Question: on a Meta-World task family, at a small equal budget, does MAML-TRPO or DRS-TRPO give the higher "
        "success rate before and after one fine-tuning update?",
        "Protocol: Gao & Sener's Meta-World settings (horizon 150, (100, 100) tanh) with fewer tasks and iterations "
        "(below); DRS gets twice MAML's iterations (equal samples); inner lr and max KL chosen for this short budget; "
        "one test update on held-out goals (Meta-World's test tasks); success = the episode succeeded at any step; "
        "returns are mean ± 95% CI over the test goals.",
        rl.config_line(run),
        kit.command("bash experiments/metarl_metaworld_reach/run.sh"),
        _success_table(run),
        rl.returns_table(run),
        kit.machine(run["machine"]),
        f"Training took {minutes:.0f} min for the two runs together (one thread each, sharing the cores with other "
        "runs): Meta-World's step is Python code.",
        "Meta-World's published MAML figures (ML10 test 31.6%, ML45 test 39.9%; Yu et al. 2019, Table 1, typed from "
        "the paper) are for other benchmarks and a far larger budget: not comparable with this run.",
        "What it shows: "
        + (
            "DRS-TRPO is ahead of MAML-TRPO both before and after one update: again the limited-budget side of Gao "
            "& Sener's trade-off."
            if ahead
            else "neither method is ahead both before and after the update."
        ),
        kit.image(NAME, "plot.png", "Meta-World reach returns"),
    ]
    return "\n\n".join(parts) + "\n"
