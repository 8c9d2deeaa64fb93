"""Results page of the episode sampler's throughput, rendered from ``results/*.json``."""

from __future__ import annotations

from pathlib import Path

import _pagekit as kit

RESULT = "uint8_in_memory.json"


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    data = kit.load(folder, RESULT)
    rows = [
        [
            r["dataset"],
            "x".join(map(str, r["shape"])),
            str(r["classes"]),
            str(r["per_class"]),
            str(r["episodes_per_call"]),
            f"{r['episodes_per_s']:.0f}",
        ]
        for r in data["rows"]
    ]
    return (
        "\n\n".join(
            [
                "# Episode sampling throughput from in-memory uint8 tensors",
                "Question: can the episode sampler keep a training step fed, at Omniglot and mini-ImageNet sizes?",
                f"Protocol: {data['episode']} episodes drawn from synthetic uint8 datasets held in memory, one or a batch "
                "of episodes per call, converted to float tensors.",
                kit.command("metabridge bench sampling --out runs/experiments/sampling"),
                kit.table(
                    ["dataset", "image", "classes", "images per class", "episodes per call", "episodes / s"], rows
                ),
                kit.machine(data.get("machine")),
                f"learn2learn's sampler: {data.get('learn2learn', 'not recorded')}.",
                "What it says: thousands of small episodes per second and hundreds of large ones, far more than a "
                "training step consumes.",
            ]
        )
        + "\n"
    )
