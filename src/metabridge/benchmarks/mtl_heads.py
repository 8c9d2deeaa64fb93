"""MTL's per-class heads over a meta-batch: one ``torch.bmm`` (what ``algorithms/mtl.py``
does) against a Python loop of per-task products, forward + backward, on the
features a Conv-4 gives (5-way, 5 shots + 15 queries per class, D = 64 or 1600).

    metabridge bench mtl_heads

Writes mtl_heads.json into ``--results-dir`` (bench/results by default).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..csv_options import parse_csv
from ._common import machine


def run(tasks: int = 32, per_task: int = 100, dim: int = 64, classes: int = 1200, repeats: int = 50) -> dict:
    """Median seconds of the batched and the looped head loss (forward + backward)."""
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(tasks, per_task, dim, generator=g, requires_grad=True)
    heads = torch.randn(classes, dim, generator=g, requires_grad=True)
    class_ids = torch.stack([torch.randperm(classes, generator=g)[:5] for _ in range(tasks)])
    y = torch.arange(5).repeat_interleave(per_task // 5).expand(tasks, -1)

    def batched() -> None:
        logits = torch.bmm(feats, heads[class_ids].transpose(1, 2))
        F.cross_entropy(logits.reshape(-1, 5), y.reshape(-1)).backward()

    def looped() -> None:
        loss = sum(F.cross_entropy(feats[t] @ heads[class_ids[t]].T, y[t]) for t in range(tasks)) / tasks
        loss.backward()

    out = {}
    for name, fn in (("bmm", batched), ("loop", looped)):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        out[name] = statistics.median(ts)
    return out


def main(dims: str = "64,1600", tasks: int = 32, per_task: int = 100, classes: int = 1200, repeats: int = 50,
         results_dir: str = "bench/results") -> dict[str, Any]:
    """MTL's head loss over a meta-batch: one torch.bmm against a loop of per-task products.

    Args:
        dims: comma-separated feature dimensions D (Conv-4 gives 64 on 28x28 inputs, 1600 on 84x84).
        tasks: tasks per meta-batch.
        per_task: examples per task (5-way: 5 shots + 15 queries per class = 100); a multiple of 5.
        classes: rows of the head (one per training class).
        repeats: timed forward + backward passes of each form (the median is reported).
        results_dir: where mtl_heads.json is written.
    """
    dim_list = parse_csv(dims, "--dims", positive=True, example="64,1600")
    if min(tasks, repeats) < 1 or per_task < 5 or per_task % 5:
        raise ValueError("--tasks and --repeats must be >= 1 and --per-task a positive multiple of 5 "
                         f"(got {tasks}, {repeats}, {per_task}).")
    if classes < 5:
        raise ValueError(f"--classes must be >= 5: every task draws 5 of them (got {classes}).")
    rows = []
    for d in dim_list:
        r = run(tasks=tasks, per_task=per_task, dim=d, classes=classes, repeats=repeats)
        rows.append({"dim": d, "bmm_s": r["bmm"], "loop_s": r["loop"], "loop_over_bmm": r["loop"] / r["bmm"]})
        print(f"D={d}: one bmm {r['bmm'] * 1e3:.2f} ms, loop over {tasks} tasks {r['loop'] * 1e3:.2f} ms "
              f"({r['loop'] / r['bmm']:.1f}x)", flush=True)
    info = machine("cpu")
    info["loadavg_end"] = os.getloadavg()
    result = {"what": "MTL head loss, forward + backward, 5-way", "tasks": tasks, "per_task": per_task,
              "classes": classes, "repeats": repeats, "statistic": "median", "rows": rows, "machine": info}
    out = Path(results_dir) / "mtl_heads.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result
