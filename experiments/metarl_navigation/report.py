"""Results page of 2D navigation under Finn et al.'s protocol: MAML-TRPO against DRS-TRPO at equal samples.

Rendered from ``results/finn_protocol.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _metarl_tables as rl
import _pagekit as kit

NAME = "metarl_navigation"


def _reference_table(run: dict[str, Any]) -> str:
    refs = run["references"]
    ks = range(len(next(iter(refs.values()))))
    return kit.table(
        ["Finn et al. (stored results)", *[f"{k} upd." for k in ks]],
        [[name, *[f"{v:.2f}" for v in values]] for name, values in refs.items()],
    )


def _findings(run: dict[str, Any]) -> str:
    m = run["methods"]
    maml, drs, drs_tuned = m["maml-trpo"], m["drs-trpo"], m["drs-trpo (tuned step)"]
    finn = run["references"]["maml"]
    off = [abs(a - b) / abs(b) * 100 for a, b in zip(maml["returns"], finn)]
    lines = [
        f"- MAML after one update is {off[1]:.1f}% from Finn's stored result ({maml['returns'][1]:.2f} vs "
        f"{finn[1]:.2f}); after 2 and 3 updates it is at {maml['returns'][2]:.2f} / {maml['returns'][3]:.2f} against "
        f"{finn[2]:.2f} / {finn[3]:.2f} (CI ± {maml['returns_ci95'][2]:.2f}). Candidate causes, not separated here: "
        "the Fisher-vector products on a subsample of the rollouts, and Finn's stored numbers coming from a model "
        "whose training length is not recorded (its script says 100 iterations of 40 tasks, its test loads one "
        "trained with 20).",
        f"- DRS at equal samples is as good before adaptation ({drs['returns'][0]:.2f} vs {maml['returns'][0]:.2f}) "
        f"but cannot be fine-tuned with MAML's step: the point runs off ({drs['returns'][1]:.2f} after one update). "
        "Its learned exploration noise is smaller than MAML's (the values were not stored in the JSON), and the "
        "policy gradient of the action mean grows as 1/σ, so the same step moves it much further.",
        f"- With the step chosen per method on separate validation goals (the `(tuned step)` rows: DRS picks "
        f"{drs_tuned['lrs'][0]:g}, MAML keeps {m['maml-trpo (tuned step)']['lrs'][0]:g}) DRS reaches "
        + " / ".join(f"{v:.2f}" for v in drs_tuned["returns"][1:])
        + ": MAML's model wins on this task family at this budget; the trade-off map "
        "(`metarl_tradeoff_map`) shows where DRS is ahead.",
    ]
    return "\n".join(lines)


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    run = kit.load(folder, "finn_protocol.json")
    m = run["methods"]
    parts = [
        "# Meta-RL on 2D navigation: MAML-TRPO against domain-randomized search (Finn et al.'s protocol)",
        "Question (Gao & Sener, NeurIPS 2020, on RL): does MAML's better model (an initialisation trained for one "
        "policy-gradient step) beat domain-randomized search's easier optimisation (DRS: one policy trained on all "
        "tasks, then the same fine-tuning)?",
        "Protocol: Finn et al.'s point robot, goal U[-0.5, 0.5]², normalised actions (x0.1, clipped), horizon 100; "
        "TRPO outer updates; test: held-out goals, returns after k policy-gradient updates of Finn's "
        "`test_maml_point.py` steps (mean ± 95% CI over test goals, the same goals and noise for every row). Equal "
        "samples: a MAML iteration samples every task twice (before and after its inner step), DRS once, so DRS gets "
        "twice the iterations. The `(tuned step)` rows pick each method's test step on separate validation goals. "
        "Finn's numbers are read from the results stored in cbfinn/maml_rl (`icml/*.pkl`; the paper only plots them).",
        rl.config_line(run),
        kit.command("bash experiments/metarl_navigation/run.sh"),
        rl.returns_table(run),
        _reference_table(run),
        kit.machine(run["machine"]),
        f"Training: {m['maml-trpo']['train_seconds']:.0f} s for MAML ({m['maml-trpo']['iterations']} iterations), "
        f"{m['drs-trpo']['train_seconds']:.0f} s for DRS ({m['drs-trpo']['iterations']} iterations), one thread each.",
        "What it shows:",
        _findings(run),
        kit.image(NAME, "plot.png", "2D navigation returns after k test updates"),
    ]
    return "\n\n".join(parts) + "\n"


def headline(folder: Path) -> list[dict[str, str]]:
    """README row: MAML-TRPO on 2D navigation against Finn et al.'s stored result."""
    run = kit.load(folder, "finn_protocol.json")
    maml = run["methods"]["maml-trpo"]
    return [
        {
            "method": "MAML-TRPO (meta-RL)",
            "paper": "Finn et al. 2017",
            "headline": f"2D navigation, return after 1 update {kit.pm(maml['returns'][1], maml['returns_ci95'][1])} "
            f"(Finn's stored result {run['references']['maml'][1]:.2f})",
        }
    ]
