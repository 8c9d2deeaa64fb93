"""Peak memory of second-order MAML against the number of inner steps k.

Unrolling k steps keeps every step's activations for the outer backward, so memory
should grow linearly in k (and no faster); ``checkpoint_inner=True`` keeps only each
step's input weights and recomputes the activations, so the growth per step drops to
the size of the weights plus one step's activations at a time. Each point is a
fresh subprocess (:func:`~metabridge.benchmarks._peer_impls.measure_peak_memory`), beside
TorchOpt and higher.

    metabridge bench memory_steps --inner-steps 1 5 10 20 --meta-batch 8

Writes memory_steps_cpu.json (or memory_steps_cuda.json) and config.json into ``--out``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from ..config import CommandConfig
from ..machine_info import machine
from ._peer_impls import PEERS, VARIANTS, measure_peak_memory

DEFAULT_LIBS = ("metabridge", "metabridge:ckpt", "metabridge:all", "metabridge:all-ckpt", "torchopt", "higher")


def memory_vs_steps(libs: list[str], steps: list[int], shots: int, meta_batch: int, device: str) -> dict[str, Any]:
    """``{lib: {k: peak MiB}}`` for second-order MAML, plus the MiB added per step (least squares)."""
    table: dict[str, Any] = {}
    for lib in libs:
        peaks = {}
        for k in steps:
            res = measure_peak_memory(lib, "maml", shots, meta_batch, k, device)
            peaks[k] = res.get("peak_mib", res.get("error"))
        ok = [(k, v) for k, v in peaks.items() if isinstance(v, float)]
        slope = None
        if len(ok) >= 2:
            mk = sum(k for k, _ in ok) / len(ok)
            mv = sum(v for _, v in ok) / len(ok)
            slope = sum((k - mk) * (v - mv) for k, v in ok) / sum((k - mk) ** 2 for k, _ in ok)
        table[lib] = {"peak_mib": peaks, "mib_per_step": slope}
    return table


class MemoryStepsConfig(CommandConfig):
    """Settings of ``metabridge bench memory_steps``: peak MiB of one second-order MAML
    meta-iteration for each number of inner steps."""

    out: Path = Field(
        Path("runs/bench/memory_steps"),
        description=("Folder of memory_steps_cpu.json (or memory_steps_cuda.json) and config.json."),
    )
    inner_steps: list[int] = Field(
        [1, 5, 10, 20], min_length=1, description=("Numbers of inner SGD steps k to measure.")
    )
    meta_batch: int = Field(8, ge=1, description="Tasks per meta-iteration.")
    shots: int = Field(1, ge=1, description="K of the 5-way K-shot tasks (15 queries per class).")
    libs: list[str] = Field(
        list(DEFAULT_LIBS),
        min_length=1,
        description=(
            "Libraries and metabridge variants (see metabridge bench peers --help): metabridge, "
            "metabridge:ckpt (checkpointed inner loop), metabridge:all (the whole meta-batch at once), "
            "metabridge:all-ckpt, torchopt, higher."
        ),
    )
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu, cuda or cuda:N.")

    @field_validator("inner_steps")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError(f"must be positive integers (got {values})")
        return values

    @field_validator("libs")
    @classmethod
    def _known(cls, libs: list[str]) -> list[str]:
        unknown = [lib for lib in libs if lib not in VARIANTS and lib not in PEERS]
        if unknown:
            raise ValueError(f"unknown library {unknown}; choose from {', '.join([*VARIANTS, *PEERS])}")
        return libs


CONFIG = MemoryStepsConfig


def run(config: MemoryStepsConfig) -> dict[str, Any]:
    """Peak MiB of one second-order MAML meta-iteration for each number of inner steps;
    writes ``memory_steps_{cpu,cuda}.json`` into ``config.out``."""
    config.write_resolved()
    info = machine(config.device)
    table = memory_vs_steps(list(config.libs), list(config.inner_steps), config.shots, config.meta_batch, config.device)
    info["loadavg_end"] = os.getloadavg()
    kind = "cuda" if config.device.startswith("cuda") else "cpu"
    out = Path(config.out) / f"memory_steps_{kind}.json"
    result = {"shots": config.shots, "meta_batch": config.meta_batch, "table": table, "machine": info}
    out.write_text(json.dumps(result, indent=1))
    for lib, row in table.items():
        slope = row["mib_per_step"]
        print(
            f"{lib:22s} "
            + "  ".join(
                f"k={k}: {v:.0f}" if isinstance(v, float) else f"k={k}: {v}" for k, v in row["peak_mib"].items()
            )
            + (f"   (+{slope:.1f} MiB/step)" if slope is not None else "")
        )
    print(f"wrote {out}")
    return result
