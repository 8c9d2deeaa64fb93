"""The table and the plot of ``metabridge bench mtl_cost``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]], k: int, with_libmtl: bool) -> str:
    """Markdown table of one K."""
    head = ["method", "reads", "ms/step", "x equal"]
    if with_libmtl:
        head += ["LibMTL", "LibMTL ms/step", "x EW", "speed-up"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["num_tasks"] != k:
            continue
        ours = r["metabridge"]
        cells = [
            r["method"],
            r["needs"].lower().replace("_grads", " grads"),
            _fmt(ours.get("ms_per_step")) if ours["status"] == "ok" else ours["status"][:60],
            _fmt(r.get("ratio_to_equal"), ".2f"),
        ]
        if with_libmtl:
            lib = r.get("libmtl")
            if lib is None:
                cells += ["(none)", "-", "-", "-"]
            else:
                cells += [
                    r["libmtl_method"],
                    _fmt(lib.get("ms_per_step")) if lib["status"] == "ok" else lib["status"][:60],
                    _fmt(r.get("libmtl_ratio_to_ew"), ".2f"),
                    _fmt(r.get("speedup_over_libmtl"), ".2f") + ("x" if r.get("speedup_over_libmtl") else ""),
                ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], ks: list[int], path: Path, title: str) -> None:
    """ms/step per method, metabridge beside LibMTL, one panel per K (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(ks), figsize=(6 * len(ks), 0.32 * len(methods) + 1.8), squeeze=False)
    for ax, k in zip(axes[0], ks):
        by = {r["method"]: r for r in rows if r["num_tasks"] == k}
        ys = range(len(methods))
        ours = [by[m]["metabridge"].get("ms_per_step", 0) if m in by else 0 for m in methods]
        theirs = [(by[m].get("libmtl") or {}).get("ms_per_step", 0) if m in by else 0 for m in methods]
        ax.barh([y - 0.2 for y in ys], ours, 0.4, label="metabridge")
        ax.barh([y + 0.2 for y in ys], theirs, 0.4, label="LibMTL")
        floor = min([v for v in ours + theirs if v > 0], default=1.0)
        for y, m in zip(ys, methods):
            lib = by[m].get("libmtl") if m in by else None
            if lib is not None and lib["status"] != "ok":
                ax.text(floor, y + 0.2, " LibMTL: " + lib["status"][:50], va="center", fontsize=6)
        ax.set_yticks(list(ys), methods, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("ms per training step (median)")
        ax.set_title(f"K = {k} tasks", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
