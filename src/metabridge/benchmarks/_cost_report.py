"""The table and the plot of ``metabridge bench cost``, and each row's ratios to MTL."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def add_ratios(rows: list[dict[str, Any]], reference: str = "mtl") -> None:
    """``x_mtl_step`` / ``x_mtl_task``: each row's s/step and s/task over MTL's on the same
    backbone and shot (``None`` where either was not measured)."""
    ref = {(r["backbone"], r["shots"]): r for r in rows if r["method"] == reference and r.get("status") == "ok"}
    for r in rows:
        base = ref.get((r["backbone"], r["shots"]))
        ok = base is not None and r.get("status") == "ok"
        r["x_mtl_step"] = r["s_per_step"] / base["s_per_step"] if ok and base else None
        r["x_mtl_task"] = r["s_per_task"] / base["s_per_task"] if ok and base else None


def _fmt(v: Any, spec: str, suffix: str = "") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:{spec}}{suffix}"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: episode, s/step and s/task with their ratio to MTL, peak MiB.

    An s/step scaled up from fewer tasks (``--max-tasks``) carries a ``*``, and its peak
    memory the number of tasks it was measured with."""
    head = [
        "backbone",
        "shot",
        "method",
        "tasks x (way x (shot+query))",
        "s/step",
        "x MTL",
        "s/task",
        "x MTL",
        "peak MiB",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ep = r["episode"]
        ok = r.get("status") == "ok"
        star = "*" if r.get("extrapolated") else ""
        peak = _fmt(r.get("peak_mib"), ".0f")
        if r.get("extrapolated") and peak != "-":
            peak += f" ({r['tasks_run']} task{'s' if r['tasks_run'] > 1 else ''})"
        cells = [
            r["backbone"],
            str(r["shots"]),
            r["label"],
            f"{ep['meta_batch']} x ({ep['way']} x ({ep['shot']}+{ep['query']}))",
            _fmt(r.get("s_per_step"), ".3f", star) if ok else r.get("status", "-"),
            _fmt(r.get("x_mtl_step"), ".2f", "x"),
            _fmt(r.get("s_per_task"), ".3f") if ok else "-",
            _fmt(r.get("x_mtl_task"), ".2f", "x"),
            peak,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(r.get("extrapolated") for r in rows):
        lines.append("\n\\* s/task measured with fewer tasks (--max-tasks) times the meta-batch.")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, episodes: str = "paper") -> None:
    """s/step by method per backbone (log scale), one panel per shot; skipped ones marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = sorted({r["shots"] for r in rows})
    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    labels = {r["method"]: r["label"] for r in rows}
    fig, axes = plt.subplots(
        1,
        len(shots),
        figsize=(max(4.0, 1.1 * len(backbones) * len(methods) / 2) * len(shots), 4.2),
        squeeze=False,
        sharey=True,
    )
    width = 0.8 / len(methods)
    cell = {(r["backbone"], r["shots"], r["method"]): r for r in rows}
    for ax, k in zip(axes[0], shots):
        labelled: set[str] = set()
        for j, m in enumerate(methods):
            for i, bb in enumerate(backbones):
                r = cell.get((bb, k, m))
                x = i + (j - (len(methods) - 1) / 2) * width
                if r is not None and r.get("status") == "ok":
                    ax.bar(x, r["s_per_step"], width, color=f"C{j}", label=None if m in labelled else labels[m])
                    labelled.add(m)
                elif r is not None:
                    ax.text(
                        x,
                        0.02,
                        "skipped" if str(r.get("status")).startswith("skipped") else "error",
                        rotation=90,
                        ha="center",
                        va="bottom",
                        fontsize=6,
                        transform=ax.get_xaxis_transform(),
                    )
        ax.set_xticks(range(len(backbones)), backbones, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("seconds per training step (median)")
        sizes = {
            "paper": "each method's paper episode sizes",
            "paper-way": "paper episode sizes and ways",
            "common": "15 queries, 4 tasks for all",
        }[episodes]
        ax.set_title(f"5-way {k}-shot, {sizes}", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
