"""One method of ``metabridge compare``, run in its own process.

A separate process per method gives each one a clean clock and its own peak-memory
reading (the resident-set high-water mark ``VmHWM`` is reset after set-up, so it
measures training), and a crash of one method does not take the others down.
Usage (internal): ``python -m metabridge.benchmarks._compare_worker SPEC.json RESULT.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ..checkpoint import load_checkpoint
from ..config import ExperimentConfig, load_plugins
from ..device import resolve_device, tune_cpu_allocator
from ..distributed import init_from_environment
from ..evaluate import evaluate
from ..experiment import build_task_source
from ..peak_memory import peak_total_mib, reset_peak_memory
from ..tasks.episodes import EpisodeSampler
from ..train import Trainer, read_metrics


def run_method(spec: dict[str, Any]) -> dict[str, Any] | None:
    """Train one method under a time budget, then test it on every requested shot (under
    torchrun: every rank trains, rank 0 tests and returns the result, the others ``None``)."""
    load_plugins(spec["config"].get("plugins", []))  # a user's registered algorithm / dataset, before building
    config = ExperimentConfig.from_dict(spec["config"])
    context = init_from_environment(resolve_device(config.device))  # one process unless under torchrun
    trainer = Trainer(
        config, overwrite=True, progress=spec.get("progress", False), tensorboard=False, distributed=context
    )
    reset_peak_memory(trainer.device)  # the peak read after training belongs to training
    baseline = peak_total_mib(trainer.device)
    t0 = time.perf_counter()
    result = trainer.run()
    wall = time.perf_counter() - t0
    peak = peak_total_mib(trainer.device)
    if not context.is_main:
        return None  # rank 0 tests and reports
    assert trainer.experiment is not None
    algorithm = trainer.experiment.algorithm
    best_path = trainer.checkpoints.best if trainer.checkpoints.best.exists() else result.checkpoint
    algorithm.load_state_dict(load_checkpoint(best_path)["algorithm"])

    records = read_metrics(config.out_dir)
    train_recs = [r for r in records if r["kind"] == "train"]
    curve = [
        {"train_seconds": r["train_seconds"], "step": r["step"], "val_mean": r["val_mean"], "val_ci95": r["val_ci95"]}
        for r in records
        if r["kind"] == "val"
    ]
    train_seconds = train_recs[-1]["train_seconds"] if train_recs else 0.0

    test_source = build_task_source(config, "test", trainer.device)
    assert isinstance(test_source, EpisodeSampler)
    tests = {}
    for shot, query in zip(spec["test_shots"], spec["test_queries"]):
        # the test split's pixels stay where build_task_source put them (on the GPU when they fit)
        sampler = EpisodeSampler(test_source.dataset, config.n_way, shot, query)
        t1 = time.perf_counter()
        episodes = sampler.fixed_episodes(spec["test_episodes"], config.test_seed, config.eval_batch_size)
        res = evaluate(algorithm, episodes, trainer.device)
        tests[str(shot)] = {**res.as_dict(), "query": query, "seconds": time.perf_counter() - t1}
    return {
        "method": spec["method"],
        "steps": result.step,
        "train_seconds": train_seconds,
        "stopped_early": bool(getattr(result, "stopped_early", False)),
        "seconds_per_iteration": train_seconds / max(result.step, 1),
        "wall_seconds": wall,
        "peak_memory_mb": peak,
        "baseline_memory_mb": baseline,
        "best_val": result.best,
        "curve": curve,
        "test": tests,
        "config": config.to_dict(),
        "world_size": context.world_size,
    }


def main(argv: list[str]) -> int:
    spec_path, out_path = argv
    spec = json.loads(Path(spec_path).read_text())
    on_cpu = resolve_device(spec["config"].get("device", "cpu")).type == "cpu"  # "auto" included
    if spec.get("tune_cpu", True) and on_cpu:
        tune_cpu_allocator()  # this process exists only for this run: the allocator is its own to tune
    out = run_method(spec)
    if out is not None:
        Path(out_path).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
