"""Results page of Gao & Sener's trade-off maps (DRS against MAML over budget and test updates).

Rendered from ``results/navigation.json`` and ``results/halfcheetah_velocity.json`` (``metabridge rl tradeoff``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _pagekit as kit

NAME = "metarl_tradeoff_map"


def map_table(data: dict[str, Any]) -> str:
    """Env steps (M) | sign(DRS - MAML) (1 - 2p) after k test updates."""
    value = data["map"]["value"]
    rows = [[f"{steps / 1e6:.2f}", *[f"{v:+.2f}" for v in value[i]]] for i, steps in enumerate(data["env_steps"])]
    return kit.table(["env steps (M)", *[f"{k} upd." for k in data["updates"]]], rows)


def means_table(data: dict[str, Any]) -> str:
    """Seed-mean return of MAML / DRS and the one-sided p per cell."""
    m = data["map"]
    rows = [
        [
            f"{steps / 1e6:.2f}",
            *[
                f"{m['maml_mean'][i][k]:.1f} / {m['drs_mean'][i][k]:.1f} (p {m['p'][i][k]:.2f})"
                for k in range(len(data["updates"]))
            ],
        ]
        for i, steps in enumerate(data["env_steps"])
    ]
    return kit.table(["env steps (M)", *[f"{k} upd.: MAML / DRS" for k in data["updates"]]], rows)


def _setting(data: dict[str, Any]) -> str:
    c = data["configs"][data["maml"]]
    return (
        f"Setting (from the JSON): preset `{data['preset']}`, {data['maml']} against {data['drs']}, seeds "
        f"{', '.join(map(str, data['seeds']))}; checkpoints at {', '.join(map(str, data['maml_iterations']))} MAML "
        f"/ {', '.join(map(str, data['drs_iterations']))} DRS iterations of {c['meta_batch']} tasks x "
        f"{c['rollouts']} rollouts; test: {c['eval_tasks']} held-out tasks x {c['eval_rollouts']} rollouts per "
        f"update, test steps {c['eval_lrs'] or 'the preset default'}; "
        f"{'the paper' if data['map']['paper_dof'] else 'textbook'} Welch degrees of freedom."
    )


def _navigation_findings(data: dict[str, Any]) -> str:
    v = data["map"]["value"]
    first, last = v[0], v[-1]
    smallest = "ahead whatever the number of test updates" if min(first) > 0 else "not ahead in every column"
    adapted = all(x < 0 for x in last[1:])
    return (
        f"What it shows: with the smallest budget DRS is {smallest} (its single-level problem is solved faster); "
        + (
            "with the largest budget MAML's model wins as soon as the policy is fine-tuned, while DRS stays ahead "
            "before adaptation"
            if adapted and last[0] > 0
            else "the largest budget gives a mixed picture"
        )
        + ": Gao & Sener's trade-off on this family. Caveat: DRS is fine-tuned here with MAML's step size, which "
        "becomes too large for it as its exploration noise shrinks (see `metarl_navigation`); Gao & Sener "
        "fine-tune each method with its own step (for DRS-TRPO, not at all), so their maps and this one are not "
        "the same test."
    )


def _halfcheetah_findings(data: dict[str, Any]) -> str:
    m = data["map"]
    p = [x for row in m["p"] for x in row]
    drs_ahead = all(d > a for dr, ar in zip(m["drs_mean"], m["maml_mean"]) for d, a in zip(dr, ar))
    return (
        "What it shows: DRS's seed-mean return is "
        + ("ahead in every cell" if drs_ahead else "not ahead everywhere")
        + f", but the one-sided p lies between {min(p):.2f} and {max(p):.2f} over {m['n_drs']} seeds"
        + (" (no cell significant)" if min(p) > 0.05 else "")
        + ", and neither method adapts yet (returns flat in k). The paper's budget: "
        "`metabridge rl tradeoff --preset halfcheetah-vel-gao` (not run)."
    )


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    nav = kit.load(folder, "navigation.json")
    cheetah = kit.load(folder, "halfcheetah_velocity.json")
    parts = [
        "# Gao & Sener's trade-off map: where DRS beats MAML, by budget and test updates",
        "Question: as the training budget grows and as more test-time updates are allowed, when is domain-randomized "
        "search (DRS) ahead of MAML, and when is MAML ahead (Gao & Sener, NeurIPS 2020)?",
        "Protocol: for each checkpoint (equal samples: DRS gets twice MAML's iterations) and number of test updates "
        "k, a one-sided Welch test between DRS and MAML over seeds (each seed's mean over the held-out tasks and its "
        "standard error combined as Gao & Sener's `summary.py` does); the map value is sign(DRS - MAML) (1 - 2p): "
        "+1 = DRS surely better, -1 = MAML surely better. We use the textbook Welch-Satterthwaite degrees of freedom; "
        "their code divides the denominator's terms by n once instead of twice, so its degrees of freedom are the "
        "textbook ones divided by n (larger p-values, paler maps); `paper_dof=True` reproduces theirs, tested "
        "against a copy of their formula.",
        kit.command("bash experiments/metarl_tradeoff_map/run.sh"),
        "## 2D navigation (both methods fine-tuned with MAML's steps)",
        _setting(nav),
        map_table(nav),
        means_table(nav),
        kit.machine(nav["machine"]),
        _navigation_findings(nav),
        kit.image(NAME, "plot.png", "trade-off map, 2D navigation"),
        "## HalfCheetah-Vel at Finn's step sizes, scaled down",
        _setting(cheetah),
        map_table(cheetah),
        means_table(cheetah),
        kit.machine(cheetah["machine"]),
        _halfcheetah_findings(cheetah),
        kit.image(NAME, "results/halfcheetah_velocity.png", "trade-off map, HalfCheetah-Vel"),
    ]
    return "\n\n".join(parts) + "\n"


def headline(folder: Path) -> list[dict[str, str]]:
    """README row: where DRS and MAML win on the 2D-navigation map."""
    nav = kit.load(folder, "navigation.json")
    v, steps = nav["map"]["value"], nav["env_steps"]
    return [
        {
            "method": "DRS-TRPO vs MAML-TRPO (trade-off map)",
            "paper": "Gao & Sener 2020",
            "headline": f"2D navigation, {len(nav['seeds'])} seeds: map value {min(v[0]):+.2f} or more at "
            f"{steps[0] / 1e6:.2f} M steps (DRS ahead), {max(v[-1][1:]):+.2f} or less after fine-tuning at "
            f"{steps[-1] / 1e6:.2f} M (MAML ahead)",
        }
    ]
