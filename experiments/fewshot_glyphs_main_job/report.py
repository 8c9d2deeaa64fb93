"""Results page of the main job (`metabridge compare` with its defaults), rendered from ``results/*.json``."""

from __future__ import annotations

from pathlib import Path

import _pagekit as kit

NAME = "fewshot_glyphs_main_job"
RESULT = "mtl_maml_protonet_200s.json"


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    data = kit.load(folder, RESULT)
    s = data["settings"]
    ranked = {shot: max(data["methods"], key=lambda m: data["methods"][m]["test"][shot]["mean"]) for shot in ("1", "5")}
    open_curves = [kit.LABELS[m] for m in data["methods"] if not data["summary"]["converged"].get(m)]
    return (
        "\n\n".join(
            [
                "# Few-shot glyphs, the main job: MTL, MAML and ProtoNet at an equal training budget",
                "Question: at the same training wall-clock, which of MTL (Wang et al.), MAML and ProtoNet is the most "
                "accurate on held-out alphabets, how fast does each reach the best gradient-based method's validation "
                "accuracy, and has each one's validation curve flattened?",
                f"Protocol: {s['n_way']}-way {s['k_shot']}-shot training episodes with {s['q_query']} queries, meta-batch "
                f"{s['meta_batch_size']}, {s['model']}; {s['budget_seconds']:.0f} s of training per method (validation "
                f"excluded), validation every {s['eval_every_seconds']:.0f} s on {s['val_episodes']} fixed episodes, "
                f"best-validation weights tested on the same {s['test_episodes']} fixed episodes per shot "
                f"({' and '.join(map(str, s['test_shots']))}-shot, {' and '.join(map(str, s['test_queries']))} queries). "
                "MAML: one inner step of 0.4 in training, three at test; MTL: RAdam 1e-3; ProtoNet: Adam 1e-3. "
                "Time to target: training time until validation first reaches the best gradient-based method's final "
                "validation accuracy minus its CI. Converged: over the last third of the budget the validation trend gains at "
                "most the final CI, and the last third's mean is at most a CI above the middle third's.",
                kit.command("bash experiments/fewshot_glyphs_main_job/run.sh"),
                kit.compare_table(
                    data,
                    ["method", "acc1", "acc5", "train_s", "steps", "s_step", "rss", "target", "val_at", "converged"],
                ),
                kit.compare_machine(data),
                f"What it says: most accurate at 1-shot: {kit.LABELS[ranked['1']]}; at 5-shot: {kit.LABELS[ranked['5']]}. "
                + (
                    f"Not converged at the budget: {', '.join(open_curves)}; their gap to the others is the budget's, not "
                    "the methods', and the command names no time-to-target winner. "
                    if open_curves
                    else ""
                )
                + "The longer and converged runs are on the `fewshot_glyphs_mtl_vs_maml` page.",
                kit.image(NAME, "plot.png", "validation accuracy against training seconds, test accuracy as stars"),
            ]
        )
        + "\n"
    )


def headline(folder: Path) -> list[dict[str, str]]:
    """README row: the main job's 1-shot test accuracy of each method."""
    data = kit.load(folder, RESULT)
    figures = ", ".join(
        f"{kit.LABELS[m].split(' (')[0]} {kit.pct(r['test']['1']['mean'], 1)}%" for m, r in data["methods"].items()
    )
    return [
        {
            "order": 0,
            "method": "MTL, MAML, ProtoNet (main job)",
            "paper": "Wang et al. 2021; Finn et al. 2017; Snell et al. 2017",
            "headline": f"glyphs 5-way 1-shot, {data['settings']['budget_seconds']:.0f} s each: {figures}",
        }
    ]
