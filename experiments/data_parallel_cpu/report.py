"""Results page of torchrun data parallelism against one process on a CPU, rendered from ``results/*.json``."""

from __future__ import annotations

from pathlib import Path

import _pagekit as kit

NAME = "data_parallel_cpu"
RESULT = "mtl_glyphs_2_processes.json"


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    data = kit.load(folder, RESULT)
    p = data["protocol"]
    rows = []
    for label, r in data["runs"].items():
        comm = r.get("comm_s_per_step")
        rows.append(
            [
                label,
                f"{r['images_per_s']:.0f}",
                f"{r['steps_per_s']:.3f}",
                " / ".join(f"{1000 * c:.1f}" for c in comm) + " ms" if comm else "—",
            ]
        )
    return (
        "\n\n".join(
            [
                "# Data parallelism with torchrun on a CPU: two processes against one",
                "Question: on a small CPU, do two single-threaded torchrun ranks (gloo) train faster than one process "
                "with two threads, and what does the all-reduce cost per step?",
                f"Protocol: {p['algorithm'].upper()} on {p['dataset']}, 5-way 1-shot 10-query, meta-batch "
                f"{p['meta_batch']} = {p['images_per_step']} images per step; {p['steps']} steps, the first {p['skip']} "
                f"left out, the steady window timed from `metrics.jsonl`; backend {p['backend']}.",
                kit.command(f"metabridge bench ddp --steps {p['steps']} --skip {p['skip']} --out runs/experiments/ddp"),
                kit.table(["run", "images / s", "steps / s", "all-reduce per step (rank 0 / rank 1)"], rows),
                f"Two ranks against one two-threaded process: {data['speedup_vs_one_process']:.2f}x; per-rank efficiency "
                f"against a lone one-thread process: {data['per_rank_efficiency']:.2f}; the all-reduce carries "
                f"{data['allreduce_payload_bytes'] / 2**20:.2f} MiB (parameters and float buffers in float32).",
                kit.machine(data.get("machine")),
                "What it says: on a cluster with a fast interconnect the step time is about t_compute / W + t_comm, so "
                "MTL on this model scales until the per-rank compute approaches the all-reduce time. Exactness (the "
                "averaged float64 meta-gradient equals the single-process one) is checked by the distributed tests, not "
                "here.",
                kit.image(NAME, "plot.png", "images per second, one process against two ranks"),
            ]
        )
        + "\n"
    )
