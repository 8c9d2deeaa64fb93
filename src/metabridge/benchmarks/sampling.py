"""Episode-sampling throughput: 5-way 5-shot 15-query episodes per second from an
in-memory :class:`ClassDataset` (uint8), the way training draws them
(:class:`EpisodeSampler`: random keys + argsort pick classes and images, one gather
fetches the pixels, then the conversion to float in [0, 1]).

Two synthetic datasets of real sizes: Omniglot-like (1200 classes x 20 images of
28x28x1) and mini-ImageNet-like (64 classes x 600 images of 84x84x3).

learn2learn's ``TaskDataset`` is measured beside it over the same uint8 tensors when
learn2learn imports (from this interpreter, or from the peer venv of
``scripts/install_peers.sh`` with ``--peer-site``): ``l2l.data.MetaDataset`` over a
``TensorDataset``, task transforms ``NWays(5)``, ``KShots(5 + 15)``, ``LoadData``,
``RemapLabels`` as its documentation composes them; one episode is ``taskset.sample()``
followed by the same conversion to float in [0, 1] and the split of every class's 20
images into 5 support and 15 query images. learn2learn draws one task per call, so
``b`` episodes per call are ``b`` calls. Without learn2learn its rows are skipped with a
printed line. Writes sampling_cpu.json and config.json into ``--out``.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor

from ..config import CommandConfig
from ..data.class_dataset import ClassDataset
from ..machine_info import machine
from ..tasks.episodes import EpisodeSampler
from ._common import synthetic_dataset
from ._peer_impls import available, use_peer_site

DATASETS = {"omniglot-like": (1200, 20, 28, 1), "miniimagenet-like": (64, 600, 84, 3)}
WAYS, SHOTS, QUERIES = 5, 5, 15

Draw = Callable[[int], object]


def episodes_per_second(draw: Draw, batch: int, seconds: float) -> float:
    """Median over 5 windows of ``~seconds/5`` each of episodes drawn per second;
    ``draw(batch)`` draws ``batch`` episodes."""
    draw(batch)  # warm-up
    rates = []
    for _ in range(5):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 5:
            draw(batch)
            n += batch
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def metabridge_draw(data: ClassDataset) -> Draw:
    """``EpisodeSampler.sample(b)``: ``b`` episodes as one :class:`TaskBatch`."""
    sampler = EpisodeSampler(data, WAYS, SHOTS, QUERIES)
    g = torch.Generator().manual_seed(0)
    return lambda b: sampler.sample(b, g)


def learn2learn_draw(data: ClassDataset) -> Draw:
    """learn2learn's ``TaskDataset`` over the same images: ``b`` calls of ``sample()``, each
    converted to float in [0, 1] and split into support and query."""
    import learn2learn as l2l
    from learn2learn.data.transforms import KShots, LoadData, NWays, RemapLabels

    random.seed(0)  # learn2learn samples with Python's random module
    dataset = l2l.data.MetaDataset(torch.utils.data.TensorDataset(data.images, data.labels))
    taskset = l2l.data.TaskDataset(
        dataset,
        task_transforms=[
            NWays(dataset, n=WAYS),
            KShots(dataset, k=SHOTS + QUERIES),
            LoadData(dataset),
            RemapLabels(dataset),
        ],
    )
    support = (torch.arange(WAYS * (SHOTS + QUERIES)) % (SHOTS + QUERIES)) < SHOTS  # per class: 5 then 15

    def episode() -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x, y = taskset.sample()
        x = x.float().div_(255)
        return x[support], y[support], x[~support], y[~support]

    def draw(b: int) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        return [episode() for _ in range(b)]

    return draw


class SamplingConfig(CommandConfig):
    """Settings of ``metabridge bench sampling``: episodes per second (5-way 5-shot 15-query)
    from in-memory uint8 datasets."""

    out: Path = Field(Path("runs/bench/sampling"), description="Folder of sampling_cpu.json and config.json.")
    batch_sizes: list[int] = Field([1, 32], min_length=1, description=("Numbers of episodes drawn per call."))
    seconds: float = Field(
        5.0, gt=0, allow_inf_nan=False, description=("Measuring time per dataset, batch size and library.")
    )
    libs: list[Literal["auto", "metabridge", "learn2learn"]] = Field(
        ["auto"],
        min_length=1,
        description=(
            "auto (metabridge, and learn2learn when it imports; else it is skipped with a printed line) or a "
            "subset of metabridge, learn2learn (learn2learn named here and not importable is an "
            "error)."
        ),
    )
    peer_site: str = Field(
        "auto",
        min_length=1,
        description=(
            "site-packages of a venv to import learn2learn from, appended to sys.path after this interpreter's "
            "own: auto (that of the environment scripts/install_peers.sh builds, when it exists), none (only this "
            "interpreter's packages) or a directory."
        ),
    )

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError(f"must be positive integers (got {values})")
        return values

    @field_validator("libs")
    @classmethod
    def _auto_alone(cls, libs: list[str]) -> list[str]:
        if "auto" in libs and len(libs) > 1:
            raise ValueError("auto stands alone; or name metabridge and learn2learn")
        return libs


CONFIG = SamplingConfig


def _libraries(libs: list[str]) -> tuple[list[str], list[str]]:
    """The libraries measured and a line per library skipped."""
    why = available("learn2learn")
    if libs == ["auto"]:
        lib_list = ["metabridge"] + (["learn2learn"] if why is None else [])
    else:
        lib_list = list(dict.fromkeys(libs))
        if "learn2learn" in lib_list and why:
            raise ValueError(f"--libs: {why}")
    skipped = [why] if why and "learn2learn" not in lib_list else []
    return lib_list, skipped


def run(config: SamplingConfig) -> dict[str, Any]:
    """Episodes per second (5-way 5-shot 15-query) from in-memory uint8 datasets; writes
    ``sampling_cpu.json`` into ``config.out``."""
    site = use_peer_site(config.peer_site)
    lib_list, skipped = _libraries(list(config.libs))
    config.write_resolved()
    for line in skipped:
        print(f"skipped: {line}", flush=True)
    builders = {"metabridge": metabridge_draw, "learn2learn": learn2learn_draw}
    rows = []
    for name, (classes, per_class, size, channels) in DATASETS.items():
        data = synthetic_dataset(classes, per_class, size, channels)
        for lib in lib_list:
            draw = builders[lib](data)
            for b in config.batch_sizes:
                rate = episodes_per_second(draw, b, config.seconds)
                rows.append(
                    {
                        "dataset": name,
                        "shape": [channels, size, size],
                        "classes": classes,
                        "per_class": per_class,
                        "library": lib,
                        "episodes_per_call": b,
                        "episodes_per_s": rate,
                    }
                )
                print(f"{name:18s} {lib:11s} {b:3d} episodes/call: {rate:9.0f} episodes/s", flush=True)
    info = machine("cpu")
    info["loadavg_end"] = os.getloadavg()
    result = {
        "episode": f"{WAYS}-way {SHOTS}-shot {QUERIES}-query",
        "libs": lib_list,
        "rows": rows,
        "machine": info,
        "skipped": skipped,
        "peer_site": str(site) if site else None,
    }
    if "learn2learn" in lib_list:
        import learn2learn

        result["learn2learn"] = learn2learn.__version__
    out = Path(config.out) / "sampling_cpu.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result
