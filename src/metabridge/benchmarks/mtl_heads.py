"""MTL's per-class heads over a meta-batch: one ``torch.bmm`` (what ``algorithms/mtl.py``
does) against a Python loop of per-task products, forward + backward, on the
features a Conv-4 gives (5-way, 5 shots + 15 queries per class, D = 64 or 1600).

    metabridge bench mtl_heads

Writes mtl_heads.json and config.json into ``--out``.
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
from pydantic import Field, field_validator

from ..config import CommandConfig
from ..machine_info import machine


def time_heads(
    tasks: int = 32, per_task: int = 100, dim: int = 64, classes: int = 1200, repeats: int = 50
) -> dict[str, float]:
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
        loss.backward()  # type: ignore[union-attr]  # a sum of tensors

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


class MtlHeadsConfig(CommandConfig):
    """Settings of ``metabridge bench mtl_heads``: MTL's head loss over a meta-batch, one
    ``torch.bmm`` against a loop of per-task products."""

    out: Path = Field(Path("runs/bench/mtl_heads"), description="Folder of mtl_heads.json and config.json.")
    dims: list[int] = Field(
        [64, 1600], min_length=1, description=("Feature dimensions D (Conv-4 gives 64 on 28x28 inputs, 1600 on 84x84).")
    )
    tasks: int = Field(32, ge=1, description="Tasks per meta-batch.")
    per_task: int = Field(
        100,
        ge=5,
        multiple_of=5,
        description=("Examples per task (5-way: 5 shots + 15 queries per class = 100); a multiple of 5."),
    )
    classes: int = Field(1200, ge=5, description="Rows of the head (one per training class; every task draws 5).")
    repeats: int = Field(50, ge=1, description="Timed forward + backward passes of each form (the median is reported).")

    @field_validator("dims")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError(f"must be positive integers (got {values})")
        return values


CONFIG = MtlHeadsConfig


def run(config: MtlHeadsConfig) -> dict[str, Any]:
    """MTL's head loss over a meta-batch: one torch.bmm against a loop of per-task products;
    writes ``mtl_heads.json`` into ``config.out``."""
    config.write_resolved()
    rows = []
    for d in config.dims:
        r = time_heads(
            tasks=config.tasks, per_task=config.per_task, dim=d, classes=config.classes, repeats=config.repeats
        )
        rows.append({"dim": d, "bmm_s": r["bmm"], "loop_s": r["loop"], "loop_over_bmm": r["loop"] / r["bmm"]})
        print(
            f"D={d}: one bmm {r['bmm'] * 1e3:.2f} ms, loop over {config.tasks} tasks {r['loop'] * 1e3:.2f} ms "
            f"({r['loop'] / r['bmm']:.1f}x)",
            flush=True,
        )
    info = machine("cpu")
    info["loadavg_end"] = os.getloadavg()
    result = {
        "what": "MTL head loss, forward + backward, 5-way",
        "tasks": config.tasks,
        "per_task": config.per_task,
        "classes": config.classes,
        "repeats": config.repeats,
        "statistic": "median",
        "rows": rows,
        "machine": info,
    }
    out = Path(config.out) / "mtl_heads.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result
