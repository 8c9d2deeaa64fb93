"""Episode-sampling throughput: 5-way 5-shot 15-query episodes per second from an
in-memory :class:`ClassDataset` (uint8), the way training draws them
(:class:`EpisodeSampler`: random keys + argsort pick classes and images, one gather
fetches the pixels, then the conversion to float in [0, 1]).

Two synthetic datasets of real sizes: Omniglot-like (1200 classes x 20 images of
28x28x1) and mini-ImageNet-like (64 classes x 600 images of 84x84x3). learn2learn's
``TaskDataset`` is not compared: learn2learn's source build fails on Python 3.11
(its generated C includes ``longintrepr.h``, removed from 3.11's public headers).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ..tasks.episodes import EpisodeSampler
from ._common import machine, synthetic_dataset

DATASETS = {"omniglot-like": (1200, 20, 28, 1), "miniimagenet-like": (64, 600, 84, 3)}


def episodes_per_second(sampler: EpisodeSampler, batch: int, seconds: float) -> float:
    """Median over 5 windows of ``~seconds/5`` each of episodes drawn per second."""
    g = torch.Generator().manual_seed(0)
    sampler.sample(batch, g)  # warm-up
    rates = []
    for _ in range(5):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 5:
            sampler.sample(batch, g)
            n += batch
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main(batch_sizes: str = "1,32", seconds: float = 5.0, out: str = "bench/results/sampling_cpu.json") -> dict[str, Any]:
    """Episodes per second (5-way 5-shot 15-query) from in-memory uint8 datasets.

    Args:
        batch_sizes: comma-separated numbers of episodes drawn per call.
        seconds: measuring time per dataset and batch size.
        out: JSON path for the results.
    """
    rows = []
    for name, (classes, per_class, size, channels) in DATASETS.items():
        data = synthetic_dataset(classes, per_class, size, channels)
        sampler = EpisodeSampler(data, 5, 5, 15)
        for b in [int(s) for s in batch_sizes.split(",")]:
            rate = episodes_per_second(sampler, b, seconds)
            rows.append({"dataset": name, "shape": [channels, size, size], "classes": classes,
                         "per_class": per_class, "episodes_per_call": b, "episodes_per_s": rate})
            print(f"{name:18s} {b:3d} episodes/call: {rate:9.0f} episodes/s", flush=True)
    info = machine("cpu")
    info["loadavg_end"] = os.getloadavg()
    result = {"episode": "5-way 5-shot 15-query", "rows": rows, "machine": info,
              "learn2learn": "not compared: source build fails on Python 3.11 (longintrepr.h)"}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result
