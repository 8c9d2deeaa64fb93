"""One multi-task run from a plain-dict spec: load the benchmark, build the model and the
weighting method, train, score, and measure the cost (s/step, peak memory).

``metabridge multitask`` runs each spec in a fresh subprocess (``python -m
metabridge.multitask._worker SPEC OUT``) so that every method's peak memory is its own
(the CPU allocator keeps no peak statistics: the kernel's high-water mark ``VmHWM`` is
reset before training and read after it, see :mod:`metabridge.peak_memory`).
:func:`run` is also an ordinary library call; it changes no process-wide state (the
model's initialisation is drawn inside ``torch.random.fork_rng``).

Under torchrun ``run(spec, distributed=context)`` trains data-parallel
(:func:`~metabridge.multitask.trainer.train_multitask`); every rank builds the same model
and method from the spec's seed and returns the same record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CheckpointManager
from ..distributed import DistributedContext
from ..peak_memory import peak_memory_mib, reset_peak_memory
from .data import load_mtl_benchmark
from .models.registry import build_mtl_model
from .tasks import TaskSpec
from .trainer import train_multitask
from .weighting import build_weighting

__all__ = ["DEFAULT_SPEC", "run"]

DEFAULT_SPEC: dict[str, Any] = {
    "benchmark": "multi_fashion_mnist",
    "benchmark_kwargs": {},
    "tasks": None,
    "method": "equal",
    "method_kwargs": {},
    "model": "hard_sharing",
    "model_kwargs": {},
    "steps": 1000,
    "batch_size": 256,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "eval_every": 0,
    "log_every": 10,
    "seed": 0,
    "device": "cpu",
    "gradient_mode": "auto",
    "diagnostics_every": 0,
    "plugins": [],
    "threads": 0,
    "lookahead_lr": 0.0,
}


def metric_unit(task: TaskSpec) -> str:
    """The unit of ``task``'s test metric in records and tables: accuracy is always in percent
    (as in every other command), a regression error in the unit its benchmark gives."""
    return "%" if task.kind == "classification" else task.unit


def _checkpointing(run_dir: str | Path | None) -> dict[str, Any]:
    """``train_multitask``'s run-directory arguments: resume where a checkpoint exists."""
    if run_dir is None:
        return {}
    return {"run_dir": run_dir, "resume": CheckpointManager(run_dir).exists(), "progress": False}


def _in_worker() -> bool:
    import sys

    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name == "metabridge.multitask._worker"


def run(
    spec: dict[str, Any], distributed: DistributedContext | None = None, run_dir: str | Path | None = None
) -> dict[str, Any]:
    """Train and score one (benchmark, tasks, model, method, seed); returns a JSON-able record
    (``distributed``: the ranks of a data-parallel run, default one process).

    With ``run_dir`` the training checkpoints there (periodically and on SIGINT/SIGTERM, see
    :func:`~metabridge.multitask.trainer.train_multitask`) and continues from a checkpoint it
    finds there, so an interrupted sweep loses at most the step in flight. Runs with training
    diagnostics keep no checkpoint (the diagnostics' history is not part of one)."""
    unknown = set(spec) - set(DEFAULT_SPEC)
    if unknown:
        raise ValueError(f"unknown run spec keys {sorted(unknown)}; known: {sorted(DEFAULT_SPEC)}.")
    s = {**DEFAULT_SPEC, **spec}
    from ..plugins import load_plugins

    load_plugins(list(s["plugins"]))  # a user's benchmarks, models and methods, also in worker processes
    if s["threads"]:
        if not _in_worker():
            raise ValueError(
                "spec 'threads' sets the process's torch thread count: it is honoured only in a worker "
                "process (metabridge multitask's isolated runs); call torch.set_num_threads yourself "
                "instead."
            )
        torch.set_num_threads(int(s["threads"]))
    device = torch.device(s["device"])
    bench = load_mtl_benchmark(s["benchmark"], **s["benchmark_kwargs"])
    if s["tasks"] is not None:
        bench = bench.select_tasks(list(s["tasks"]))
    tasks = bench.tasks
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(s["seed"])
        model = build_mtl_model(
            s["model"],
            input_kind=bench.input_kind,
            input_shape=tuple(bench.train.inputs.shape[1:]),
            out_dims=[t.out_dim for t in tasks],
            **s["model_kwargs"],
        )
        weighting = build_weighting(s["method"], len(tasks), **s["method_kwargs"])
    hooks = None
    if s["diagnostics_every"]:
        from .diagnostics_hooks import TrainingDiagnostics

        hooks = TrainingDiagnostics(
            model, tasks, every=s["diagnostics_every"], steps=s["steps"], lookahead_lr=s["lookahead_lr"] or s["lr"]
        )
    before = reset_peak_memory(device)
    result = train_multitask(
        model,
        weighting,
        bench,
        steps=s["steps"],
        batch_size=s["batch_size"],
        lr=s["lr"],
        weight_decay=s["weight_decay"],
        eval_every=s["eval_every"],
        log_every=s["log_every"],
        seed=s["seed"],
        device=device,
        gradient_mode=s["gradient_mode"],
        on_batch=hooks.on_batch if hooks else None,
        distributed=distributed,
        **_checkpointing(None if hooks else run_dir),
    )
    record = {
        "spec": s,
        "tasks": [t.name for t in tasks],
        "units": [metric_unit(t) for t in tasks],
        "metric_names": [t.metric_name for t in tasks],
        "higher_is_better": [t.higher_is_better for t in tasks],
        "peak_mib": peak_memory_mib(device, before),
        "num_shared_params": sum(p.numel() for p in model.shared_parameters()),
        **result.as_dict(),
    }
    if hooks is not None:
        record["diagnostics"] = hooks.summary()
    return record
