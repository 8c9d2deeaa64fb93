"""``metabridge multitask``: weighting methods x one benchmark x seeds, against single-task baselines.

For every seed it trains the single-task baselines (STL: the same architecture with one
head, equal weighting, one run per task), every requested method on all tasks, and
optionally a tuned equal-weighting baseline (the learning rate chosen on validation loss
from a grid; Kurin et al. 2022). Each run is a fresh subprocess (own peak memory), its
record is kept under ``OUT/runs/`` and reused when the command is run again with the
same settings (an interrupted sweep resumes where it stopped).

Reported per method (:func:`summarize`): each task's test metric (mean over seeds;
accuracy in percent, regression errors in the target's units), the relative change
against STL and Delta_m % (Maninis et al. 2019; positive = worse than STL), the mean rank
over tasks among the methods (1 = best), seconds per step relative to equal weighting,
and peak memory. JSON, the table, PNG plots and the resolved settings (``config.json``)
go under ``OUT``.

Data-parallel (``torchrun --nproc-per-node W -m metabridge multitask ...``): every run is
trained by all W processes together, each on B/W examples of every minibatch, with the
update of one process on the whole minibatch (:mod:`metabridge.multitask.trainer`); the
runs then happen inside the torchrun processes (no per-run subprocess, so no per-run peak
memory), rank 0 decides which records exist, writes them and the report, and each record
carries ``world_size`` and every rank's ``comm_s_per_step``.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, ValidationInfo, field_validator, model_validator

from ..atomic import atomic_write_text
from ..config import CommandConfig, KeyValues
from ..distributed import DistributedContext
from ..plugins import load_plugins
from ._report import format_table, summarize, write_report

__all__ = ["MultitaskConfig", "format_table", "run", "summarize"]

BENCHMARK_DEFAULTS: dict[str, dict[str, Any]] = {
    "multi_fashion_mnist": {"model": "hard_sharing", "steps": 1000, "batch_size": 128, "lr": 1e-3, "eval_every": 250},
    "qm9": {"model": "hard_sharing", "steps": 6000, "batch_size": 128, "lr": 1e-3, "eval_every": 1000},
}
#: The settings of a benchmark without an entry in :data:`BENCHMARK_DEFAULTS`.
GENERIC_DEFAULTS: dict[str, Any] = {
    "model": "hard_sharing",
    "steps": 1000,
    "batch_size": 256,
    "lr": 1e-3,
    "eval_every": 0,
}
DEFAULT_METHODS = [
    "equal",
    "mean",
    "scale_invariant",
    "uw",
    "dwa",
    "rlw",
    "famo",
    "minmax",
    "gradnorm",
    "mgda",
    "mgda_ub",
    "pcgrad",
    "cagrad",
    "imtl",
    "nash_mtl",
    "aligned_mtl",
]


class MultitaskConfig(CommandConfig):
    """Settings of ``metabridge multitask`` (each field's description is its ``--help`` text)."""

    out: Path = Field(
        Path("runs/multitask"),
        description=(
            "Folder of the report (report.json, table.txt, table.md, PNGs), config.json and the per-run records "
            "(runs/, reused when the command is run again)."
        ),
    )
    benchmark: str = Field(
        "multi_fashion_mnist",
        min_length=1,
        description=(
            "A registered multi-task benchmark: multi_fashion_mnist, qm9, or one a --plugin module registered."
        ),
    )
    methods: list[str] = Field(
        list(DEFAULT_METHODS),
        min_length=1,
        description=("Weighting methods, given once each (metabridge list weightings)."),
    )
    seeds: list[int] = Field(
        [0], min_length=1, description=("Seeds; every method and every single-task baseline runs once per seed.")
    )
    steps: PositiveInt | None = Field(None, description="Adam steps per run [default: the benchmark's].")
    batch_size: PositiveInt | None = Field(None, description="Examples per step [default: the benchmark's].")
    lr: PositiveFloat | None = Field(
        None, allow_inf_nan=False, description=("Adam learning rate [default: the benchmark's].")
    )
    model: str | None = Field(
        None,
        description=(
            "Multi-task architecture: hard_sharing, film, mmoe, ... (metabridge list multitask-models) [default: the "
            "benchmark's]."
        ),
    )
    model_kwargs: Annotated[dict[str, Any], KeyValues] = Field(
        default_factory=dict, description=("Keyword arguments of the architecture (e.g. encoder_out_dim=64).")
    )
    method_kwargs: Annotated[dict[str, dict[str, Any]], KeyValues] = Field(
        default_factory=dict, description=('Keyword arguments per method (e.g. cagrad={"c": 0.4}).')
    )
    benchmark_kwargs: Annotated[dict[str, Any], KeyValues] = Field(
        default_factory=dict, description=("Keyword arguments of the benchmark loader (e.g. root=data).")
    )
    tasks: list[NonNegativeInt] | None = Field(
        None, min_length=1, description=("Indices of the tasks to use [default: all].")
    )
    stl: bool = Field(True, description="Also train the single-task baselines (needed for Delta_m).")
    tune_equal_lrs: list[PositiveFloat] = Field(
        default_factory=list,
        description=(
            "Learning rates of an extra 'equal_tuned' row: the equal-weighting run with the lowest validation loss "
            "among them."
        ),
    )
    eval_every: NonNegativeInt | None = Field(
        None,
        description=("Score validation and test every this many steps, 0 only at the end [default: the benchmark's]."),
    )
    diagnostics_every: PositiveInt | None = Field(
        None,
        description=(
            "Every this many steps of the equal-weighting run, record per-layer gradient cosines and conflict and the "
            "lookahead task affinity, with their plots [default: off]."
        ),
    )
    lookahead_lr: PositiveFloat | None = Field(
        None,
        allow_inf_nan=False,
        description=("SGD step of the affinity's lookahead [default: the run's learning rate, as TAG]."),
    )
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu, cuda or cuda:N.")
    gradient_mode: Literal["auto", "batched", "loop"] = Field(
        "auto", description=("Per-task gradients: auto, batched (one vmapped backward) or loop (K backwards).")
    )
    isolate: bool = Field(
        True,
        description=(
            "Run every training in a fresh process (its own peak memory, a few seconds of start-up each); "
            "--no-isolate runs them in this process and reports no peak memory."
        ),
    )
    threads: PositiveInt | None = Field(
        None,
        description=(
            "Torch threads of each isolated run; 1 keeps timings comparable while other work shares the CPU "
            "[default: torch's]."
        ),
    )

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: list[str], info: ValidationInfo) -> list[str]:
        from .weighting.registry import WEIGHTINGS

        load_plugins(info.data.get("plugins") or [])  # a plugin's methods are names like the built-in ones
        for name in methods:
            WEIGHTINGS.get(name)  # UnknownNameError: one line with the closest names
        return methods

    @model_validator(mode="after")
    def _kwargs_name_methods(self) -> MultitaskConfig:
        stray = sorted(set(self.method_kwargs) - set(self.methods))
        if stray:
            raise ValueError(
                f"--method-kwargs names {', '.join(stray)}, which --methods does not run; add it to "
                "--methods or drop its keywords"
            )
        return self

    def run_settings(self) -> dict[str, Any]:
        """The run spec every run shares (:data:`metabridge.multitask.runner.DEFAULT_SPEC` keys), the
        benchmark's defaults filled in."""
        defaults = BENCHMARK_DEFAULTS.get(self.benchmark, GENERIC_DEFAULTS)
        return {
            "benchmark": self.benchmark,
            "benchmark_kwargs": dict(self.benchmark_kwargs),
            "model": self.model or defaults["model"],
            "model_kwargs": dict(self.model_kwargs),
            "steps": self.steps or defaults["steps"],
            "batch_size": self.batch_size or defaults["batch_size"],
            "lr": self.lr or defaults["lr"],
            "eval_every": defaults["eval_every"] if self.eval_every is None else self.eval_every,
            "device": self.device,
            "gradient_mode": self.gradient_mode,
            "plugins": list(self.plugins),
            "threads": (self.threads or 0) if self.isolate else 0,
        }


def _key(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def run_spec(
    spec: dict[str, Any],
    runs_dir: Path,
    isolate: bool = True,
    timeout: float | None = None,
    distributed: DistributedContext | None = None,
) -> dict[str, Any]:
    """Run one spec (in a subprocess when ``isolate``), or return its saved record; with
    ``distributed`` (more than one rank) every rank trains it in this process, rank 0 decides
    whether a saved record exists and writes the new one, every rank returns it. Each run
    checkpoints into ``runs_dir/<key>/`` while it trains, so a sweep stopped by Ctrl-C or
    SIGTERM continues, when the same command runs again, from the last completed step of the
    run it was in (finished runs are read back)."""
    path = runs_dir / f"{_key(spec)}.json"
    run_dir = runs_dir / _key(spec)
    if distributed is not None and distributed.enabled:
        saved = distributed.broadcast_object(
            json.loads(path.read_text()) if distributed.is_main and path.exists() else None
        )
        if saved is not None:
            return saved
        from .runner import run

        error: BaseException | None = None
        record: dict[str, Any] = {}
        try:
            record = run(spec, distributed=distributed, run_dir=run_dir)
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

        record = run(spec, run_dir=run_dir)
        record["peak_mib"] = None  # one process's high-water mark mixes every run before this one
        atomic_write_text(path, json.dumps(record))
        return record
    record = _run_isolated(spec, run_dir, timeout)
    atomic_write_text(path, json.dumps(record))
    return record


def _wait_forwarding(proc: subprocess.Popen[bytes], guard: Any, timeout: float | None) -> None:
    """Wait for ``proc``, passing the first signal ``guard`` records on to it (once)."""
    start, forwarded = time.perf_counter(), False
    while proc.poll() is None:
        if guard.requested is not None and not forwarded:
            proc.send_signal(signal.SIGINT)
            forwarded = True
        if timeout is not None and time.perf_counter() - start > timeout and not forwarded:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.05)


def _run_isolated(spec: dict[str, Any], run_dir: Path, timeout: float | None) -> dict[str, Any]:
    """One run in a worker process of its own session (a terminal's Ctrl-C reaches this process
    only): SIGINT/SIGTERM here is passed on to the worker once, which checkpoints its last
    completed step into ``run_dir``; then the sweep stops with the way to continue it. A second
    signal stops the worker at once (its previous checkpoint stays whole)."""
    from ..training import InterruptGuard

    with tempfile.TemporaryDirectory() as tmp, InterruptGuard(announce=False) as guard:
        spec_path, out_path, err_path = Path(tmp) / "spec.json", Path(tmp) / "out.json", Path(tmp) / "stderr.txt"
        spec_path.write_text(json.dumps(spec))
        with open(err_path, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "metabridge.multitask._worker", str(spec_path), str(out_path), str(run_dir)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
            try:
                _wait_forwarding(proc, guard, timeout)
            except BaseException:
                if proc.poll() is None:  # asked twice, or timed out: the worker stops now
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                raise
        if guard.requested is not None:
            name = signal.Signals(guard.requested).name
            where = f"checkpointed in {run_dir}" if (run_dir / "last.pt").exists() else "not yet checkpointed"
            raise KeyboardInterrupt(
                f"{name}: the sweep stopped; the run in progress is {where}; run the same "
                "command again to continue (finished runs are reused, this one resumes)."
            )
        if proc.returncode != 0:
            tail = "\n".join(err_path.read_text().strip().splitlines()[-15:])
            raise RuntimeError(f"run {spec['method']} (tasks={spec.get('tasks')}, seed={spec['seed']}) failed:\n{tail}")
        return json.loads(out_path.read_text())


def run(config: MultitaskConfig) -> dict[str, Any]:
    """Weighting methods x benchmark x seeds: per-task metrics, Delta_m % vs STL, mean rank, cost.

    Trains (or reuses) every run, prints the table and writes the report under ``config.out``;
    returns the report (on every rank of a torchrun job; rank 0 writes it)."""
    from ..distributed import init_from_environment, torchrun_world_size

    context = init_from_environment(config.device) if torchrun_world_size() > 1 else DistributedContext()
    if context.enabled and config.diagnostics_every:
        raise ValueError("--diagnostics-every reads one process's minibatch; run it without torchrun.")
    load_plugins(config.plugins)
    from .data import load_mtl_benchmark

    base = config.run_settings()
    if context.enabled:
        base["threads"] = 0  # the runs are trained by the torchrun processes themselves
    bench = load_mtl_benchmark(config.benchmark, **config.benchmark_kwargs)
    if context.is_main:
        config.write_resolved()
    sweep = _Sweep(config, base, [t.name for t in bench.tasks], context)
    method_runs, stl_runs = sweep.run_all()
    report = summarize(method_runs, stl_runs)
    from ..machine_info import machine

    report.update(
        {
            "benchmark": config.benchmark,
            "settings": base,
            "seeds": list(config.seeds),
            "command": " ".join(sys.argv),
            "wall_seconds": sweep.elapsed(),
            "machine": machine(config.device),
        }
    )
    if context.enabled:
        report["world_size"] = context.world_size
        if not context.is_main:  # rank 0 writes the report
            return report
    if "equal" in method_runs and method_runs["equal"][0].get("diagnostics"):
        report["diagnostics"] = method_runs["equal"][0]["diagnostics"]
    write_report(report, method_runs, Path(config.out))
    print(
        f"\n{config.benchmark}: {len(method_runs)} methods x {len(config.seeds)} seed(s); report in "
        f"{Path(config.out) / 'report.json'}"
    )
    return report


class _Sweep:
    """Every run of one ``metabridge multitask`` call, in order, with a progress line per run."""

    def __init__(
        self, config: MultitaskConfig, base: dict[str, Any], task_names: list[str], context: DistributedContext
    ) -> None:
        self.config, self.base, self.task_names, self.context = config, base, task_names, context
        self.isolate = config.isolate and not context.enabled
        self.runs_dir = Path(config.out) / "runs"
        self.all_tasks = list(range(len(task_names))) if config.tasks is None else list(config.tasks)
        per_seed = len(config.methods) + (len(self.all_tasks) if config.stl else 0) + len(config.tune_equal_lrs)
        self.total, self.done, self.started = len(config.seeds) * per_seed, 0, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _run(self, spec: dict[str, Any], label: str) -> dict[str, Any]:
        record = run_spec({**self.base, **spec}, self.runs_dir, self.isolate, distributed=self.context)
        self.done += 1
        if self.context.is_main:
            metrics = ", ".join(f"{v:.4g}" for v in record["test_metric"])
            print(
                f"[{self.done}/{self.total} {self.elapsed():6.0f}s] {label}: test {metrics} "
                f"({record['seconds_per_step'] * 1000:.1f} ms/step)",
                flush=True,
            )
        return record

    def _method_spec(self, method: str, seed: int) -> dict[str, Any]:
        cfg = self.config
        diagnostics = cfg.diagnostics_every if method == "equal" and cfg.diagnostics_every else 0
        spec: dict[str, Any] = {
            "method": method,
            "method_kwargs": cfg.method_kwargs.get(method, {}),
            "tasks": cfg.tasks,
            "seed": seed,
            "diagnostics_every": diagnostics,
        }
        if diagnostics and cfg.lookahead_lr is not None:
            spec["lookahead_lr"] = cfg.lookahead_lr
        return spec

    def run_all(self) -> tuple[dict[str, list[dict[str, Any]]], list[list[dict[str, Any]]] | None]:
        """``(method_runs, stl_runs)``: one record per seed of each method, and of each task's STL run."""
        cfg = self.config
        method_runs: dict[str, list[dict[str, Any]]] = {}
        stl_runs: list[list[dict[str, Any]]] | None = [[] for _ in self.all_tasks] if cfg.stl else None
        for seed in cfg.seeds:
            for j, t in enumerate(self.all_tasks if stl_runs is not None else []):
                record = self._run(
                    {"method": "equal", "tasks": [t], "seed": seed}, f"STL {self.task_names[t]} seed {seed}"
                )
                stl_runs[j].append(record)  # type: ignore[index]
            for m in cfg.methods:
                method_runs.setdefault(m, []).append(self._run(self._method_spec(m, seed), f"{m} seed {seed}"))
            if cfg.tune_equal_lrs:
                candidates = [r for r in method_runs.get("equal", []) if r["spec"]["seed"] == seed]
                for value in cfg.tune_equal_lrs:
                    candidates.append(
                        self._run(
                            {"lr": value, "method": "equal", "tasks": cfg.tasks, "seed": seed},
                            f"equal lr={value:g} seed {seed}",
                        )
                    )
                method_runs.setdefault("equal_tuned", []).append(min(candidates, key=_best_val_loss))
        return method_runs, stl_runs


def _best_val_loss(record: dict[str, Any]) -> float:
    return min(sum(c["val_loss"]) for c in record["curve"])
