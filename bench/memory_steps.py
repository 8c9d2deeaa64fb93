"""Second-order MAML peak memory against inner steps, with and without checkpointing
of the inner loop, beside TorchOpt and higher (fresh subprocess per point).

    python bench/memory_steps.py --steps 1,5,10,20 --meta-batch 8
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from metabridge.benchmarks._memory_steps import memory_vs_steps
from metabridge.benchmarks.peers import machine


def main(steps: str = "1,5,10,20", meta_batch: int = 8, shots: int = 1,
         libs: str = "metabridge,metabridge:ckpt,metabridge:all,metabridge:all-ckpt,torchopt,higher",
         device: str = "cpu", out: str = "bench/results/memory_steps_cpu.json") -> None:
    """Peak MiB of one second-order MAML meta-iteration for each number of inner steps."""
    info = machine(device)
    table = memory_vs_steps(libs.split(","), [int(s) for s in steps.split(",")], shots, meta_batch, device)
    info["loadavg_end"] = os.getloadavg()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"shots": shots, "meta_batch": meta_batch, "table": table, "machine": info},
                                    indent=1))
    for lib, row in table.items():
        slope = row["mib_per_step"]
        print(f"{lib:22s} " + "  ".join(f"k={k}: {v:.0f}" if isinstance(v, float) else f"k={k}: {v}"
                                         for k, v in row["peak_mib"].items())
              + (f"   (+{slope:.1f} MiB/step)" if slope is not None else ""))
    print(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
