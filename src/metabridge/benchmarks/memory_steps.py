"""Peak memory of second-order MAML against the number of inner steps k.

Unrolling k steps keeps every step's activations for the outer backward, so memory
should grow linearly in k (and no faster); ``checkpoint_inner=True`` keeps only each
step's input weights and recomputes the activations, so the growth per step drops to
the size of the weights plus one step's activations at a time. Each point is a
fresh subprocess (``_peak_memory.measure``), beside TorchOpt and higher.

    metabridge bench memory_steps --inner-steps 1,5,10,20 --meta-batch 8
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..csv_options import parse_csv
from . import _peak_memory
from ._common import machine

DEFAULT_LIBS = "metabridge,metabridge:ckpt,metabridge:all,metabridge:all-ckpt,torchopt,higher"


def memory_vs_steps(libs: list[str], steps: list[int], shots: int, meta_batch: int, device: str) -> dict[str, Any]:
    """``{lib: {k: peak MiB}}`` for second-order MAML, plus the MiB added per step (least squares)."""
    table: dict[str, Any] = {}
    for lib in libs:
        peaks = {}
        for k in steps:
            res = _peak_memory.measure(lib, "maml", shots, meta_batch, k, device)
            peaks[k] = res.get("peak_mib", res.get("error"))
        ok = [(k, v) for k, v in peaks.items() if isinstance(v, float)]
        slope = None
        if len(ok) >= 2:
            mk = sum(k for k, _ in ok) / len(ok)
            mv = sum(v for _, v in ok) / len(ok)
            slope = sum((k - mk) * (v - mv) for k, v in ok) / sum((k - mk) ** 2 for k, _ in ok)
        table[lib] = {"peak_mib": peaks, "mib_per_step": slope}
    return table


def main(inner_steps: str = "1,5,10,20", meta_batch: int = 8, shots: int = 1, libs: str = DEFAULT_LIBS,
         device: str = "cpu", results_dir: str = "bench/results") -> dict[str, Any]:
    """Peak MiB of one second-order MAML meta-iteration for each number of inner steps.

    Args:
        inner_steps: comma-separated numbers of inner SGD steps k to measure.
        meta_batch: tasks per meta-iteration.
        shots: K of the 5-way K-shot tasks (15 queries per class).
        libs: comma-separated libraries and metabridge variants (see metabridge bench peers --help):
            metabridge, metabridge:ckpt (checkpointed inner loop), metabridge:all (the whole
            meta-batch at once), metabridge:all-ckpt, torchopt, higher.
        device: cpu or cuda.
        results_dir: where memory_steps_cpu.json (or memory_steps_cuda.json) is written.
    """
    steps = parse_csv(inner_steps, "--inner-steps", positive=True)
    if meta_batch < 1 or shots < 1:
        raise ValueError(f"--meta-batch and --shots must be >= 1 (got {meta_batch}, {shots}).")
    lib_list = [s.strip() for s in libs.split(",") if s.strip()]
    if not lib_list:
        raise ValueError(f"--libs is empty; e.g. --libs {DEFAULT_LIBS}.")
    info = machine(device)
    table = memory_vs_steps(lib_list, steps, shots, meta_batch, device)
    info["loadavg_end"] = os.getloadavg()
    kind = "cuda" if device.startswith("cuda") else "cpu"
    out = Path(results_dir) / f"memory_steps_{kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"shots": shots, "meta_batch": meta_batch, "table": table, "machine": info}
    out.write_text(json.dumps(result, indent=1))
    for lib, row in table.items():
        slope = row["mib_per_step"]
        print(f"{lib:22s} " + "  ".join(f"k={k}: {v:.0f}" if isinstance(v, float) else f"k={k}: {v}"
                                         for k, v in row["peak_mib"].items())
              + (f"   (+{slope:.1f} MiB/step)" if slope is not None else ""))
    print(f"wrote {out}")
    return result
