"""plot.png of the main job: every seed's validation accuracy against training steps, one colour per method,
and each seed's 1-shot test accuracy as a star at the end of its budget (``python plot.py`` from this folder)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from report import _short, seed_runs  # noqa: E402

HERE = Path(__file__).resolve().parent
COLOURS = {"mtl": "tab:blue", "maml": "tab:red", "protonet": "tab:green"}


def main() -> None:
    runs = seed_runs(HERE)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for seed, data in runs.items():
        for m, r in data["methods"].items():
            steps = [p["step"] for p in r["curve"]]
            vals = [100 * p["val_mean"] for p in r["curve"]]
            colour = COLOURS.get(m, "tab:gray")
            ax.plot(steps, vals, color=colour, alpha=0.7, lw=1.2, label=_short(m) if seed == min(runs) else None)
            ax.plot(steps[-1], 100 * r["test"]["1"]["mean"], marker="*", color=colour, ms=11, ls="none")
    ax.set_xlabel("training step")
    ax.set_ylabel("5-way 1-shot validation accuracy (%)  [stars: test]")
    ax.set_title(f"main job, seeds {', '.join(map(str, runs))}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "plot.png", dpi=110)


if __name__ == "__main__":
    main()
