"""Results page of the cost per training step of each method with its paper's episode sizes, rendered from
``results/*.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _pagekit as kit

NAME = "training_cost"
PARTS = [
    ("conv4_28px", "Conv-4 at 28 px", "--backbones conv4@28"),
    (
        "resnet12_32px",
        "ResNet-12 (full width) at 32 px, one task timed and scaled to each paper's meta-batch",
        "--backbones resnet12@32 --max-tasks 1 --steps 1 --max-seconds-per-config 120",
    ),
    (
        "resnet12_84px",
        "ResNet-12 (full width) at 84 px, the mini-ImageNet regime: one task, its first step timed "
        "(no warm-up, so an upper bound), scaled to each paper's meta-batch",
        "--backbones resnet12@84 --max-tasks 1 --steps 1 --warmup 0 --max-seconds-per-config 240",
    ),
]


def _row(r: dict[str, Any]) -> list[str]:
    e = r["episode"]
    star = "*" if r.get("extrapolated") else ""
    peak = f"{r['peak_mib']:.0f}" + (f" ({r['tasks_run']} task)" if r.get("extrapolated") else "")
    return [
        r["backbone"],
        str(r["shots"]),
        r["label"],
        f"{e['meta_batch']} x ({e['way']} x ({e['shot']}+{e['query']}))",
        f"{r['s_per_step']:.3f}{star}",
        f"{r['x_mtl_step']:.2f}x",
        f"{r['s_per_task']:.3f}",
        f"{r['x_mtl_task']:.2f}x",
        peak,
    ]


def _table(data: dict[str, Any]) -> str:
    rows = [_row(r) for r in data["rows"] if r.get("status") == "ok"]
    failed = [r for r in data["rows"] if r.get("status") != "ok"]
    text = kit.table(
        [
            "backbone",
            "shot",
            "method",
            "tasks x (way x (shot+query))",
            "s/step",
            "x MTL",
            "s/task",
            "x MTL",
            "peak MiB",
        ],
        rows,
    )
    if any(r.get("extrapolated") for r in data["rows"]):
        text += "\n\n(`*`: timed on one task and scaled to the meta-batch.)"
    if failed:
        text += "\n\nNot measured: " + ", ".join(f"{r['label']} {r['shots']}-shot ({r['status']})" for r in failed)
    return text


def _settings(data: dict[str, Any]) -> str:
    s = data["settings"]
    return (
        f"{s['steps']} timed step(s) after {s['warmup']} warm-up, {s['statistic']}; each configuration in a "
        f"fresh process: {'yes' if s.get('isolated') else 'no'}; data: {s['data']}; a step is "
        f"{s['step']}."
    )


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    out = [
        "# Cost per training step: where a 10x can and cannot come from",
        "Question: the seed paper reports MTL up to 11x cheaper to train than MetaOptNet and MAML. What does one "
        "training step, and one task, cost each method with its own paper's episode sizes (MAML: Finn et al.'s 32 "
        "tasks at 28 px, 4 / 2 at 32 / 84 px; MetaOptNet: 8 episodes of 15 shots + 6 queries; ProtoNet: one "
        "episode; MTL: the official code's tasks of 5 + 5 per class)?",
        "Every part: `bash experiments/training_cost/run.sh` (resumable).",
    ]
    for name, title, args in PARTS:
        data = kit.load(folder, f"{name}.json")
        out += [
            f"## {title}",
            kit.command(f"metabridge bench cost {args} --out runs/experiments/cost_{name}"),
            _settings(data),
            _table(data),
            kit.machine(data.get("machine")),
        ]
    out += [
        "What it says: per task, MAML with one inner step costs about what an MTL task costs on Conv-4; the large "
        "ratios come from the number of inner steps and from the meta-batch each paper uses, and they grow with "
        'the image. A "10x cheaper" claim is therefore a statement about protocols (inner steps, tasks per step, '
        "steps to converge), not about the cost of one task; at 84 px and 5-shot one step's cost alone gets close "
        "to it. Training at that size is left to a GPU: `metabridge bench cost --device cuda`.",
        kit.image(NAME, "plot.png", "seconds per step at 84 px"),
    ]
    return "\n\n".join(out) + "\n"
