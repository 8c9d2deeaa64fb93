"""What one training step of each method costs: seconds per step, seconds per task and
peak memory of MTL, ProtoNet, MetaOptNet-SVM, MAML (1 and 5 inner steps) and first-order
MAML, with Conv-4 at 28 px and ResNet-12 at 32 and 84 px, 5-way 1- and 5-shot.

A step is what the trainer does per meta-batch: ``zero_grad``, ``meta_loss(batch)`` of the
real algorithm (built by :func:`~metabridge.algorithms.registry.build_algorithm`),
``backward``, ``optimizer.step()``. Each method runs with its own paper's episode sizes
(``--episodes paper``, table below), because that is what a cost claim compares: Wang et
al. (2021) compare total GPU-hours of MTL against MetaOptNet's own recipe, so a per-step
ratio here is one factor of such a claim (the number of steps to converge is the other,
and is not measured here). Meta-batches differ between recipes, so every row also gives
seconds per task (s/step over the meta-batch) and per image.

Episode sizes by method and regime (the regime is the image side: 28 px = Omniglot's
shape, 32 px = CIFAR-FS's, 84 px = mini-ImageNet's), always 5-way, K = the test shot:

========== ============================ ===================================================
method     meta-batch, shot, queries    source
========== ============================ ===================================================
MAML,      28 px: 32 tasks, K, K/class  Finn et al. 2017 Sec. 5.2; cbfinn/maml main.py usage
FOMAML     32/84 px: 4 tasks (1-shot),  (Omniglot: 1 step, alpha 0.4; query = K per class from
           2 (5-shot), K, 15/class      ``DataGenerator(update_batch_size*2)``; MiniImagenet:
                                        5 steps, alpha 0.01, 15 queries; the paper says 4 and
                                        2 tasks, main.py's usage line uses 4 for 5-shot too).
                                        CIFAR-FS is not in the paper: mini-ImageNet sizes.
                                        FOMAML is reported on MiniImagenet (5 steps).
ProtoNet   1 episode, K, 28 px: 5/class Snell et al. 2017 Sec. 3; jakesnell/prototypical-
           32/84 px: 15/class           networks run_train.py. Their training episodes have
                                        more classes (Omniglot 60-way, mini-ImageNet 30-way
                                        1-shot / 20-way 5-shot): recorded, and used with
                                        ``--episodes paper-way``; ``paper`` keeps 5-way.
MetaOptNet 8 episodes, 15-shot, 6/class kjunelee/MetaOptNet train.py defaults and README
                                        (mini-ImageNet ``--train-shot 15``; one embedding is
                                        trained for every test shot, so the 1- and 5-shot rows
                                        run the same step). Not verified for CIFAR-FS; the
                                        paper has no Omniglot: mini-ImageNet values used.
MTL        6 tasks, 5 + 5 images/class  AI-secure/multi-task-learning train.py
           (84 px 5-shot: 2 tasks;      (``--meta_batch_size 6``), lightning_episodic_module.py
           32 px 1-shot: 2 tasks,       (train_shots = train_queries = 5: MTL merges them) and
           5 + 15 images/class)         the README commands. No Omniglot in the paper: defaults.
========== ============================ ===================================================

``--episodes common`` gives every method K shots, 15 queries per class and 4 tasks. Outer
optimizers are the papers' (their cost is small beside the step): Adam 1e-3 for MAML,
FOMAML and ProtoNet, SGD 0.1 (Nesterov momentum 0.9, weight decay 5e-4) for MetaOptNet,
RAdam 1e-3 for MTL. MetaOptNet's label smoothing and MTL's one-task-per-forward gradient
accumulation (the official code's ``accumulate_grad_batches``; metabridge's MTL embeds the
meta-batch in one forward) are not reproduced: they change the loss, not the work.

Data: a synthetic uint8 :class:`ClassDataset` of the right shape (64 classes x 30 images,
mini-ImageNet's training class count), a fresh meta-batch each step, sampled outside the
timed region. Each configuration runs in a fresh subprocess (``--isolate``): the first step
is the warm-up and gives the peak memory (CPU: ``VmHWM - VmRSS`` before it, after
``clear_refs``, as :mod:`metabridge.peak_memory`; CUDA: ``max_memory_allocated`` minus the memory
allocated before), then ``--warmup - 1`` more untimed steps, then ``--steps`` timed ones
(median reported). The first step includes the optimizer state it creates. A configuration
whose first step takes longer than ``--max-seconds-per-config`` is stopped and recorded as
skipped, one that fails (e.g. out of memory) as an error; the others go on.

On a small CPU, ResNet-12 at 84 px is the hard part: a second-order MAML task with 5 inner
steps holds several GiB, and the MAML family maps the tasks of a ResNet-12 meta-batch with
``vmap`` (all at once), so the memory of a step grows with the meta-batch (the measured
figures are on the results page).
``--max-tasks N`` runs N tasks per step and scales s/task up to the meta-batch (marked
``*``); ``--quick`` leaves 84 px out.

    metabridge bench cost --device cuda                    # everything, on a GPU
    metabridge bench cost --quick                          # Conv-4 28 px and ResNet-12 32 px
    metabridge bench cost --backbones resnet12@84 --max-tasks 1 --steps 1   # 84 px on a CPU

Writes cost_cpu.json (or cost_cuda.json), a PNG of s/step, a Markdown table (.md) and the
resolved config.json into ``--out``.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import CommandConfig, KeyValues
from ..machine_info import machine
from ._cost_episodes import (
    DEFAULT_BACKBONES,
    DEFAULT_METHODS,
    IMAGES_PER_CLASS,
    N_WAY,
    TRAIN_CLASSES,
    Backbone,
    Method,
    configurations,
    parse_backbone,
    parse_method,
)
from ._cost_measure import measure, measure_isolated
from ._cost_report import add_ratios, plot, table

__all__ = ["CONFIG", "CostConfig", "run"]


class CostConfig(CommandConfig):
    """Settings of ``metabridge bench cost``: seconds per training step, per task and peak
    memory of each method, backbone and shot."""

    out: Path = Field(
        Path("runs/bench/cost"),
        description=("Folder of cost_cpu.json (or cost_cuda.json), its .png and .md, and config.json."),
    )
    methods: list[str] = Field(
        list(DEFAULT_METHODS),
        min_length=1,
        description=(
            "Methods: mtl, protonet, metaoptnet (SVM head), maml-K and fomaml-K (K inner SGD "
            "steps; second- and first-order MAML)."
        ),
    )
    backbones: list[str] = Field(
        list(DEFAULT_BACKBONES),
        min_length=1,
        description=(
            "Backbones NAME@SIZE[xCHANNELS] (a registered backbone at SIZE px; channels default "
            "to 1 at 28 px or less and 3 above). The size sets the regime whose paper episode sizes are used: "
            "28 px Omniglot, 32 px CIFAR-FS, larger mini-ImageNet."
        ),
    )
    shots: list[int] = Field([1, 5], min_length=1, description="K of the 5-way K-shot benchmarks.")
    episodes: Literal["paper", "paper-way", "common"] = Field(
        "paper",
        description=(
            "paper (each method's paper meta-batch, shots and queries, 5-way; see the module docstring), "
            "paper-way (the same with ProtoNet's larger training way) or common (every method K shots, 15 "
            "queries per class, 4 tasks)."
        ),
    )
    steps: int = Field(3, ge=1, description="Timed training steps per configuration (the median is reported).")
    warmup: int = Field(
        1,
        ge=0,
        description=(
            "Untimed steps first (the first step, timed separately, also gives the peak memory); 0 times the "
            "first step too."
        ),
    )
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu, cuda or cuda:N.")
    quick: bool = Field(False, description="Leave out every backbone above 32 px.")
    max_seconds_per_config: float | None = Field(
        600.0,
        gt=0,
        description=(
            "Stop a configuration whose first step takes longer than this and record it as skipped; None for no limit."
        ),
    )
    max_tasks: int | None = Field(
        None,
        gt=0,
        description=(
            "Run at most this many tasks per step and report s/step as s/task times the paper's meta-batch "
            "(marked extrapolated; the peak memory is that of the smaller step) [default: the whole meta-batch]."
        ),
    )
    isolate: bool = Field(
        True,
        description=(
            "Run each configuration in a fresh subprocess (exact peak memory, no cached memory from the previous "
            "one); --no-isolate runs them in this process (memory approximate)."
        ),
    )
    allocator: bool = Field(
        True,
        description=(
            "On CPU, tune glibc's allocator in each child as the trainer does (metabridge.device."
            "tune_cpu_allocator); --no-allocator keeps glibc's defaults."
        ),
    )
    conv4_hidden: int = Field(
        64, ge=1, description="Conv-4 filters per block (64: Finn et al.'s Omniglot, Snell et al.)."
    )
    resnet12_widths: list[int] = Field(
        [64, 160, 320, 640], min_length=4, max_length=4, description=("Widths of ResNet-12's four blocks.")
    )
    hparams: Annotated[dict[str, dict[str, Any]], KeyValues] = Field(
        default_factory=dict,
        description=(
            "Extra hyperparameters per method key or algorithm name, NAME=JSON, e.g. --hparams mtl='{\"C\": 3.0}' "
            "(merged into build_algorithm's keywords)."
        ),
    )
    seed: int = Field(0, description="Seed of the synthetic data, the models and the episodes.")

    @field_validator("methods")
    @classmethod
    def _methods(cls, items: list[str]) -> list[str]:
        for item in items:
            parse_method(item)
        if len(set(items)) != len(items):
            raise ValueError(f"names a method twice ({', '.join(items)})")
        return items

    @field_validator("backbones")
    @classmethod
    def _backbones(cls, items: list[str]) -> list[str]:
        parsed = [parse_backbone(item) for item in items]
        if len({b.key for b in parsed}) != len(parsed):
            raise ValueError(f"names a backbone twice ({', '.join(items)})")
        return items

    @field_validator("shots", "resnet12_widths")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError(f"must be positive integers (got {values})")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> CostConfig:
        if not self.backbone_list():
            raise ValueError(
                f"--quick leaves out every backbone above 32 px, and {' '.join(self.backbones)} has "
                "no other; drop --quick or add e.g. conv4@28."
            )
        names = {m.key for m in self.method_list()} | {m.algorithm for m in self.method_list()}
        unknown = sorted(set(self.hparams) - names)
        if unknown:
            raise ValueError(f"--hparams names {', '.join(unknown)}, not among --methods ({', '.join(sorted(names))}).")
        need = max(r["episode"]["shot"] + r["episode"]["query"] for r in self.rows())
        if need > IMAGES_PER_CLASS:
            raise ValueError(
                f"an episode needs {need} images per class, the synthetic data has {IMAGES_PER_CLASS}; lower --shots."
            )
        return self

    def method_list(self) -> list[Method]:
        return [parse_method(item) for item in self.methods]

    def backbone_list(self) -> list[Backbone]:
        """The backbones measured (with ``quick``, those of 32 px or less)."""
        out = [parse_backbone(item) for item in self.backbones]
        return [b for b in out if b.image_size <= 32] if self.quick else out

    def rows(self) -> list[dict[str, Any]]:
        """One row per backbone x shot x method, with its episode sizes."""
        return configurations(self.method_list(), self.backbone_list(), list(self.shots), self.episodes)


CONFIG = CostConfig


def _check_device(device: str) -> str:
    """``cuda`` or ``cpu``; ``ValueError`` when CUDA is asked for and none is visible."""
    if re.fullmatch(r"cuda(:\d+)?", device):
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is visible here; use --device cpu.")
        return "cuda"
    return "cpu"


def _measure_rows(config: CostConfig, rows: list[dict[str, Any]]) -> None:
    """Measure every row in place (a failing configuration is recorded, the others go on)."""
    for r in rows:
        extra = {**config.hparams.get(r["algorithm"], {}), **config.hparams.get(r["method"], {})}
        cfg = {
            **r,
            "steps": config.steps,
            "warmup": config.warmup,
            "device": config.device,
            "max_seconds": config.max_seconds_per_config,
            "max_tasks": config.max_tasks,
            "seed": config.seed,
            "conv4_hidden": config.conv4_hidden,
            "resnet12_widths": list(config.resnet12_widths),
            "hparams": extra,
            "isolated": config.isolate,
            "allocator": config.allocator,
        }
        r["hparams"] = extra
        t0 = time.perf_counter()
        try:
            res = measure_isolated(cfg) if config.isolate else measure(cfg)
        except Exception as exc:  # one failing configuration must not lose the others
            res = {"status": f"error: {type(exc).__name__}: {exc}"}
        r.update(res)
        r["wall_s"] = time.perf_counter() - t0
        shown = f"{r['s_per_step']:.3f} s/step, {r['s_per_task']:.3f} s/task" if r["status"] == "ok" else r["status"]
        mem = f", peak {r['peak_mib']:.0f} MiB" if isinstance(r.get("peak_mib"), float) else ""
        print(f"{r['backbone']} {r['shots']}-shot {r['label']}: {shown}{mem}", flush=True)


def _settings(config: CostConfig, kind: str, wall_s: float) -> dict[str, Any]:
    """The ``settings`` record of the result JSON."""
    return {
        "n_way": N_WAY,
        "shots": list(config.shots),
        "episodes": config.episodes,
        "steps": config.steps,
        "warmup": config.warmup,
        "device": config.device,
        "statistic": "median",
        "isolated": config.isolate,
        "cpu_allocator_tuned": kind == "cpu" and config.allocator and config.isolate,
        "max_seconds_per_config": config.max_seconds_per_config,
        "max_tasks": config.max_tasks,
        "backbones": [asdict(b) | {"regime": b.regime} for b in config.backbone_list()],
        "conv4_hidden": config.conv4_hidden,
        "resnet12_widths": list(config.resnet12_widths),
        "seed": config.seed,
        "data": f"synthetic uint8, {TRAIN_CLASSES} classes x {IMAGES_PER_CLASS} images, "
        "a fresh meta-batch per step, sampled outside the timed region",
        "step": "zero_grad + meta_loss + backward + optimizer.step (the papers' optimizers)",
        "wall_s": wall_s,
    }


def run(config: CostConfig) -> dict[str, Any]:
    """Seconds per training step, per task and peak memory of each method, backbone and shot;
    writes ``cost_{cpu,cuda}.json``, its ``.md`` table and ``.png`` plot into ``config.out``."""
    kind = _check_device(config.device)
    config.write_resolved()
    info = machine(config.device)
    rows = config.rows()
    t_start = time.perf_counter()
    _measure_rows(config, rows)
    add_ratios(rows)
    info["loadavg_end"] = os.getloadavg()
    result = {"settings": _settings(config, kind, time.perf_counter() - t_start), "machine": info, "rows": rows}
    out = Path(config.out) / f"cost_{kind}.json"
    out.write_text(json.dumps(result, indent=1))
    md = table(rows)
    head = (
        f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}"
        + (f", {info['gpu']}" if "gpu" in info else "")
        + f"; {config.steps} timed steps after {config.warmup} warm-up, median."
    )
    out.with_suffix(".md").write_text(head + "\n\n" + md + "\n")
    plot(rows, out.with_suffix(".png"), config.episodes)
    print(md)
    print(head)
    print(f"wrote {out}, {out.with_suffix('.png')} and {out.with_suffix('.md')}")
    return result
