"""``metabridge mtl``: weighting methods x one benchmark x seeds, against single-task baselines.

For every seed it trains the single-task baselines (STL: the same architecture with one
head, equal weighting, one run per task), every requested method on all tasks, and
optionally a tuned equal-weighting baseline (the learning rate chosen on validation loss
from a grid; Kurin et al. 2022). Each run is a fresh subprocess (own peak memory), its
record is kept under ``OUT/runs/`` and reused when the command is run again with the
same spec (an interrupted sweep resumes where it stopped).

Reported per method (:func:`summarize`): each task's test metric (mean over seeds), the
relative change against STL and Delta_m % (Maninis et al. 2019; positive = worse than
STL), the mean rank over tasks among the methods (1 = best), seconds per step relative to
equal weighting, and peak memory. JSON, the table and PNG plots go under ``OUT``.

Data-parallel (``torchrun --nproc-per-node W -m metabridge mtl ...``): every run is trained
by all W processes together, each on B/W examples of every minibatch, with the update of
one process on the whole minibatch (:mod:`metabridge.multitask.trainer`); the runs then
happen inside the torchrun processes (no per-run subprocess, so no per-run peak memory),
rank 0 decides which records exist, writes them and the report, and each record carries
``world_size`` and every rank's ``comm_s_per_step``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..csv_options import parse_csv, parse_json_object
from ..distributed import DistributedContext

__all__ = ["mtl", "summarize", "format_table"]

BENCHMARK_DEFAULTS: dict[str, dict[str, Any]] = {
    "multi_fashion_mnist": {"model": "hard_sharing", "steps": 1000, "batch_size": 128, "lr": 1e-3, "eval_every": 250},
    "qm9": {"model": "hard_sharing", "steps": 6000, "batch_size": 128, "lr": 1e-3, "eval_every": 1000},
}


def _key(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def run_spec(spec: dict[str, Any], runs_dir: Path, isolate: bool = True, timeout: float | None = None,
             distributed: DistributedContext | None = None) -> dict[str, Any]:
    """Run one spec (in a subprocess when ``isolate``), or return its saved record; with
    ``distributed`` (more than one rank) every rank trains it in this process, rank 0 decides
    whether a saved record exists and writes the new one, every rank returns it."""
    path = runs_dir / f"{_key(spec)}.json"
    if distributed is not None and distributed.enabled:
        saved = distributed.broadcast_object(json.loads(path.read_text()) if distributed.is_main and path.exists()
                                             else None)
        if saved is not None:
            return saved
        from .runner import run

        error: BaseException | None = None
        record: dict[str, Any] = {}
        try:
            record = run(spec, distributed=distributed)
        except Exception as exc:  # every rank raises together (none waits in a later collective)
            error = exc
        distributed.raise_together(error)
        record["peak_mib"] = None  # the torchrun process's high-water mark mixes every run before this one
        if distributed.is_main:
            runs_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(record))
        return record
    if path.exists():
        return json.loads(path.read_text())
    runs_dir.mkdir(parents=True, exist_ok=True)
    if not isolate:
        from .runner import run

        record = run(spec)
        record["peak_mib"] = None  # one process's high-water mark mixes every run before this one
        atomic_write_text(path, json.dumps(record))
        return record
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.run([sys.executable, "-m", "metabridge.multitask._worker", str(spec_path), str(out_path)],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"run {spec['method']} (tasks={spec.get('tasks')}, seed={spec['seed']}) failed:\n{tail}")
        record = json.loads(out_path.read_text())
    atomic_write_text(path, json.dumps(record))
    return record


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


#: two-sided 97.5% quantiles of Student's t for 1..10 degrees of freedom (seeds are few)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def _ci95(values: list[float]) -> float:
    """Half-width of the 95% confidence interval of the mean over seeds (Student's t)."""
    n = len(values)
    if n < 2:
        return 0.0
    m = _mean(values)
    sd = (sum((v - m) ** 2 for v in values) / (n - 1)) ** 0.5
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return t * sd / n ** 0.5


def summarize(method_runs: dict[str, list[dict[str, Any]]], stl_runs: list[list[dict[str, Any]]] | None,
              reference: str = "equal") -> dict[str, Any]:
    """Aggregate records: ``method_runs[name]`` = one record per seed; ``stl_runs[k]`` = task k's STL
    records (one per seed) or None. Returns the JSON report's ``methods`` table."""
    from .diagnostics import delta_m, mean_rank, relative_changes

    first = next(iter(method_runs.values()))[0]
    higher = first["higher_is_better"]
    k = len(higher)
    stl_mean = None
    if stl_runs:
        stl_mean = [_mean([r["test_metric"][0] for r in stl_runs[t]]) for t in range(k)]
    table: dict[str, Any] = {}
    ref_time = None
    if reference in method_runs:
        ref_time = _mean([r["seconds_per_step"] for r in method_runs[reference]])
    means = {}
    for name, runs in method_runs.items():
        per_task = [_mean([r["test_metric"][t] for r in runs]) for t in range(k)]
        means[name] = per_task
        row: dict[str, Any] = {"test_metric": per_task, "seeds": [r["spec"]["seed"] for r in runs],
                               "seconds_per_step": _mean([r["seconds_per_step"] for r in runs]),
                               "peak_mib": _mean([r["peak_mib"] for r in runs]) if runs[0]["peak_mib"] is not None else None,
                               "best_step": [r["best_step"] for r in runs]}
        if ref_time:
            row["time_ratio"] = row["seconds_per_step"] / ref_time
        if stl_mean is not None:
            per_seed = [delta_m(r["test_metric"], stl_mean, higher) for r in runs]
            row["delta_m"] = _mean(per_seed)
            row["delta_m_ci95"] = _ci95(per_seed)
            row["relative_change"] = relative_changes(per_task, stl_mean, higher)
        table[name] = row
    if len(means) > 1:
        ranks = mean_rank(means, higher)
        for name in table:
            table[name]["mean_rank"] = ranks[name]
    return {"methods": table, "stl": stl_mean, "tasks": first["tasks"], "units": first["units"],
            "higher_is_better": higher}


def format_table(report: dict[str, Any], markdown: bool = False) -> str:
    """Plain-text (or Markdown) table: one row per method, one column per task, then the summary columns."""
    tasks, units = report["tasks"], report["units"]
    head = ["method"] + [f"{t}{f' ({u})' if u else ''}" for t, u in zip(tasks, units)]
    head += ["Delta_m %", "rank", "s/step", "x equal", "peak MiB"]
    rows = []
    if report.get("stl"):
        rows.append(["STL"] + [f"{v:.4g}" for v in report["stl"]] + ["0 (ref)", "", "", "", ""])
    for name, row in sorted(report["methods"].items(), key=lambda kv: kv[1].get("delta_m", 0.0)):
        dm = row.get("delta_m")
        rows.append([name] + [f"{v:.4g}" for v in row["test_metric"]] +
                    [("" if dm is None else f"{dm:+.2f} ± {row['delta_m_ci95']:.2f}" if len(row["seeds"]) > 1
                      else f"{dm:+.2f}"),
                     f"{row['mean_rank']:.2f}" if "mean_rank" in row else "",
                     f"{row['seconds_per_step'] * 1000:.1f} ms", f"{row.get('time_ratio', float('nan')):.2f}",
                     f"{row['peak_mib']:.0f}" if row["peak_mib"] is not None else "n/a"])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def mtl(
    benchmark: str = "multi_fashion_mnist",
    methods: str = "equal,mean,scale_invariant,uw,dwa,rlw,famo,minmax,gradnorm,mgda,mgda_ub,pcgrad,cagrad,imtl,nash_mtl,aligned_mtl",
    seeds: str = "0",
    steps: int = 0,
    batch_size: int = 0,
    lr: float = 0.0,
    model: str = "",
    model_kwargs: str = "{}",
    method_kwargs: str = "{}",
    tasks: str = "",
    stl: bool = True,
    tune_equal_lrs: str = "",
    eval_every: int = -1,
    diagnostics_every: int = 0,
    lookahead_lr: float = 0.0,
    device: str = "cpu",
    gradient_mode: str = "auto",
    benchmark_kwargs: str = "{}",
    plugin: str = "",
    isolate: bool = True,
    threads: int = 0,
    out: Path = Path("bench/results/mtl"),
) -> dict[str, Any]:
    """Weighting methods x benchmark x seeds: per-task metrics, Delta_m % vs STL, mean rank, cost.

    Args:
        benchmark: a registered multi-task benchmark (multi_fashion_mnist, qm9, or your own).
        methods: comma-separated weighting methods (metabridge.multitask.weighting registry).
        seeds: comma-separated seeds; every method and every STL baseline runs once per seed.
        steps: Adam steps per run (0: the benchmark's default).
        batch_size: examples per step (0: the benchmark's default).
        lr: Adam learning rate (0: the benchmark's default).
        model: multi-task architecture (hard_sharing, film, mmoe, ...; empty: the benchmark's default).
        model_kwargs: JSON object of keyword arguments for the architecture.
        method_kwargs: JSON object {method: {keyword: value}} of method arguments (e.g. {"cagrad": {"c": 0.4}}).
        tasks: comma-separated task indices to use (empty: all).
        stl: also train the single-task baselines (needed for Delta_m).
        tune_equal_lrs: comma-separated learning rates: adds "equal_tuned", the equal-weighting run
            with the lowest validation loss among them.
        eval_every: score validation/test every this many steps (-1: the benchmark's default; 0: at the end).
        diagnostics_every: every this many steps of the equal-weighting run, record per-layer gradient
            cosines/conflict and the lookahead task affinity (0: off); adds their plots.
        lookahead_lr: SGD step of the affinity's lookahead (0: the run's learning rate, as TAG).
        device: cpu or cuda.
        gradient_mode: per-task gradients: auto, batched (one vmapped backward) or loop (K backwards).
        benchmark_kwargs: JSON object of keyword arguments for the benchmark loader (e.g. {"root": "..."}).
        plugin: comma-separated modules imported here and in every worker before the runs, where a user's
            register_mtl_benchmark / register_mtl_model / register_weighting calls live.
        isolate: run every training in a fresh process (its own peak memory; about 3 s of start-up
            each); --no-isolate runs them in this process and reports no peak memory.
        threads: torch threads of each isolated run (0: torch's default). 1 keeps timings stable while
            the machine does other work (two processes with all-core thread pools slow each other
            several-fold).
        out: folder for the report (JSON, table, PNGs) and the per-run records.
    """
    from ..distributed import init_from_environment, torchrun_world_size

    context = init_from_environment(device) if torchrun_world_size() > 1 else DistributedContext()
    if context.enabled:
        if diagnostics_every:
            raise ValueError("--diagnostics-every reads one process's minibatch; run it without torchrun.")
        isolate = False  # the runs are trained by the torchrun processes themselves
    defaults = BENCHMARK_DEFAULTS.get(benchmark, {"model": "hard_sharing", "steps": 1000, "batch_size": 256,
                                                  "lr": 1e-3, "eval_every": 0})
    mk = parse_json_object(model_kwargs, "--model-kwargs", '{"encoder_out_dim": 64}')
    per_method_kwargs = parse_json_object(method_kwargs, "--method-kwargs", '{"cagrad": {"c": 0.4}}')
    bk = parse_json_object(benchmark_kwargs, "--benchmark-kwargs", '{"root": "data"}')
    plugins = parse_csv(plugin, "--plugin", str) if plugin else []
    from ..plugins import load_plugins

    load_plugins(plugins)
    method_list = parse_csv(methods, "--methods", str)
    seed_list = parse_csv(seeds, "--seeds", int)
    from .weighting import available_weightings

    unknown = [m for m in method_list if m not in available_weightings()]
    if unknown:
        raise ValueError(f"unknown weighting method(s) {unknown}; available: {', '.join(available_weightings())}.")
    task_idx = parse_csv(tasks, "--tasks", int) if tasks else None
    base = {"benchmark": benchmark, "benchmark_kwargs": bk, "model": model or defaults["model"], "model_kwargs": mk,
            "steps": steps or defaults["steps"], "batch_size": batch_size or defaults["batch_size"],
            "lr": lr or defaults["lr"], "eval_every": defaults["eval_every"] if eval_every < 0 else eval_every,
            "device": device, "gradient_mode": gradient_mode, "plugins": list(plugins),
            "threads": threads if isolate else 0}
    from .data import load_mtl_benchmark

    bench = load_mtl_benchmark(benchmark, **bk)
    all_tasks = list(range(len(bench.tasks))) if task_idx is None else task_idx
    runs_dir = out / "runs"
    started = time.perf_counter()
    method_runs: dict[str, list[dict[str, Any]]] = {}
    stl_runs: list[list[dict[str, Any]]] | None = [[] for _ in all_tasks] if stl else None
    tuning_lrs = parse_csv(tune_equal_lrs, "--tune-equal-lrs", float) if tune_equal_lrs else []
    total = len(seed_list) * (len(method_list) + (len(all_tasks) if stl else 0) + len(tuning_lrs))
    done = 0

    def progress(label: str, record: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        if not context.is_main:
            return
        metrics = ", ".join(f"{v:.4g}" for v in record["test_metric"])
        print(f"[{done}/{total} {time.perf_counter() - started:6.0f}s] {label}: test {metrics} "
              f"({record['seconds_per_step'] * 1000:.1f} ms/step)", flush=True)

    for seed in seed_list:
        if stl_runs is not None:
            for j, t in enumerate(all_tasks):
                rec = run_spec({**base, "method": "equal", "tasks": [t], "seed": seed}, runs_dir, isolate,
                               distributed=context)
                stl_runs[j].append(rec)
                progress(f"STL {bench.tasks[t].name} seed {seed}", rec)
        for m in method_list:
            spec = {**base, "method": m, "method_kwargs": per_method_kwargs.get(m, {}), "tasks": task_idx,
                    "seed": seed, "diagnostics_every": diagnostics_every if m == "equal" else 0}
            if diagnostics_every and m == "equal" and lookahead_lr:
                spec["lookahead_lr"] = lookahead_lr
            rec = run_spec(spec, runs_dir, isolate, distributed=context)
            method_runs.setdefault(m, []).append(rec)
            progress(f"{m} seed {seed}", rec)
        if tuning_lrs:
            candidates = [r for r in method_runs.get("equal", []) if r["spec"]["seed"] == seed]
            for value in tuning_lrs:
                rec = run_spec({**base, "lr": value, "method": "equal", "tasks": task_idx, "seed": seed}, runs_dir,
                               isolate, distributed=context)
                progress(f"equal lr={value:g} seed {seed}", rec)
                candidates.append(rec)
            best = min(candidates, key=_best_val_loss)
            method_runs.setdefault("equal_tuned", []).append(best)
    report = summarize(method_runs, stl_runs)
    report.update({"benchmark": benchmark, "settings": base, "seeds": seed_list, "command": " ".join(sys.argv),
                   "wall_seconds": time.perf_counter() - started})
    from ..machine_info import machine

    report["machine"] = machine(device)
    if context.enabled:
        report["world_size"] = context.world_size
        if not context.is_main:  # rank 0 writes the report
            return report
    if "equal" in method_runs and method_runs["equal"][0].get("diagnostics"):
        report["diagnostics"] = method_runs["equal"][0]["diagnostics"]
    out.mkdir(parents=True, exist_ok=True)
    table = format_table(report)
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    atomic_write_text(out / "table.txt", table + "\n")
    atomic_write_text(out / "table.md", format_table(report, markdown=True) + "\n")
    from .report_plots import write_plots

    report["plots"] = [str(p) for p in write_plots(report, method_runs, out)]
    print(table)
    print(f"\n{benchmark}: {len(method_runs)} methods x {len(seed_list)} seed(s); report in {out}/report.json")
    return report


def _best_val_loss(record: dict[str, Any]) -> float:
    return min(sum(c["val_loss"]) for c in record["curve"])
