"""Results page of MAML's peak memory against the number of inner steps, rendered from ``results/*.json``."""

from __future__ import annotations

from pathlib import Path

import _pagekit as kit

RESULT = "maml_1shot_meta_batch4.json"
NOTES = {
    "metabridge:t1": "metabridge, one task at a time (`task_threads=1`)",
    "metabridge:all": "metabridge, all tasks in one grouped chunk",
    "metabridge:all-ckpt": "the same with per-step checkpointing of the inner loop",
}


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    data = kit.load(folder, RESULT)
    table = data["table"]
    steps = list(next(iter(table.values()))["peak_mib"])
    rows = [
        [
            f"`{lib}`",
            NOTES.get(lib, "peer library"),
            *[f"{r['peak_mib'][k]:.0f}" for k in steps],
            f"{r['mib_per_step']:.1f}",
        ]
        for lib, r in table.items()
    ]
    return (
        "\n\n".join(
            [
                "# Peak memory of second-order MAML against the number of inner steps",
                "Question: how fast does the memory of a second-order MAML meta-iteration grow with the inner steps, in "
                "metabridge's execution modes and in the peer libraries, and what does checkpointing each inner step buy?",
                f"Protocol: 5-way {data['shots']}-shot, meta-batch {data['meta_batch']}, Conv-4, peak memory of one "
                "meta-iteration in a fresh process; growth per step from a line through the points.",
                kit.command("metabridge bench memory_steps --out runs/experiments/memory_steps"),
                kit.table(
                    ["configuration", "what", *[f"peak MiB, {k} step(s)" for k in steps], "MiB per inner step"], rows
                ),
                kit.machine(data.get("machine")),
                "What it says: per-step checkpointing brings the growth per inner step of the grouped mode down to the "
                "peers' level, at the price of recomputation.",
            ]
        )
        + "\n"
    )
