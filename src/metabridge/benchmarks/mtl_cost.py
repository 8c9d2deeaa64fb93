"""What one multi-task training step costs under each weighting method, relative to equal
weighting, and against LibMTL's same method on the same model, sizes, batch and machine.

A step is what :func:`metabridge.multitask.trainer.train_multitask` does per minibatch:
``zero_grad``, forward of a hard-sharing model, the K per-task losses, the method's backward,
``Adam.step()`` (and ``after_step``: FAMO's extra forward). For LibMTL (its trainer's step):
``zero_grad``, forward, losses, ``model.backward(losses, **weight_args)``, ``Adam.step()``.

Model (the same in both; one seed gives both the same initial weights): metabridge's
``build_mtl_model("hard_sharing", input_kind="vector", input_shape=(256,), out_dims=[1] * K,
encoder_hidden=(512, 512), encoder_out_dim=256)``: an MLP encoder 256 -> 512 -> 512 -> 256 with
ReLUs (the shared parameters: P = 525,568) and one ``Linear(256, 1)`` head per task; a synthetic
regression batch of 256 inputs ~ N(0, I) and K targets ~ N(0, 1); the K losses are the mean
squared errors. LibMTL's side is ``_libmtl_worker.py``, a standalone script run by LibMTL's
python (it never imports metabridge), which rebuilds the same layers in plain torch and wraps
them as LibMTL's trainer does (``HPS`` architecture mixed with the weighting class).

Protocol: every (library, method, K) runs in its own fresh process: ``--warmup`` untimed steps,
then ``--steps`` timed ones, whose median is that process's ms/step. The processes are
interleaved (for each round: for each K, for each method: metabridge's, then LibMTL's), over
``--repeats`` rounds, and the median over rounds is reported. Both run with the same torch
thread count (``torch.set_num_threads`` and ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``) and, with
``--allocator`` (default), the same glibc allocator settings, given to both processes through
the environment (``MALLOC_MMAP_MAX_=0``, ``MALLOC_TRIM_THRESHOLD_`` = 2 GiB: what
:func:`metabridge.device.tune_cpu_allocator` sets). Both use their methods'
default hyperparameters (metabridge: the registry's, and ``fixed``, which has none, gets
w_i = 1/i; LibMTL: its ``config.py`` defaults: ``T=2``, ``alpha=1.5``, ``mgda_gn='none'``,
``calpha=0.5``, ``rescale=1``, ``dist='Normal'``).

Method pairs (metabridge -> LibMTL 1.1.5): equal -> EW, uw -> UW, dwa -> DWA (both past their
two warm-up epochs, so the softmax path runs), rlw -> RLW, scale_invariant -> GLS (the same
direction: GLS is the geometric mean of the losses, whose gradient is GM/K times that of
sum log L_i), gradnorm -> GradNorm (at epoch 1, where it reads the gradients), mgda -> MGDA,
mgda_ub -> MGDA with ``rep_grad=True`` (LibMTL solves on the batch-summed feature gradients
[K, D], metabridge on [K, B*D]), pcgrad -> PCGrad, cagrad -> CAGrad, imtl -> IMTL (both the
hybrid). LibMTL 1.1.5 has no Nash-MTL, Aligned-MTL, FAMO, IMTL-G/-L alone, min-max or fixed
weights; those rows have no LibMTL column. Its CAGrad works for exactly 3 tasks (its objective
reshapes the weights to (1, 3)), so it fails at K = 2 and 11 and is recorded as an error.
Running LibMTL 1.1.5 on torch 2 needs one change in the worker: ``zero_grad_share_params``
zeroes the gradients in place (see ``_libmtl_worker.py``).

    metabridge bench mtl_cost                          # K = 2 and 11, every method, 5 rounds
    metabridge bench mtl_cost --methods equal mgda pcgrad --tasks 2 --repeats 1

LibMTL's python is that of the peer environment ``scripts/install_peers.sh`` builds (or
``--libmtl-python``). Writes mtl_cost.json, mtl_cost.png and config.json into ``--out``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from ..config import CommandConfig
from ..machine_info import machine
from ._common import PEER_VENV
from ._mtl_cost_report import plot, table

__all__ = ["CONFIG", "MtlCostConfig", "run"]

MARK = "@@MTLCOST "
DEFAULT_LIBMTL_PYTHON = PEER_VENV / "bin" / "python"
WORKER = Path(__file__).with_name("_libmtl_worker.py")

#: metabridge method -> (LibMTL class, its weight_args, rep_grad, label in the table)
LIBMTL_PAIRS: dict[str, tuple[str, dict[str, Any], bool, str]] = {
    "equal": ("EW", {}, False, "EW"),
    "uw": ("UW", {}, False, "UW"),
    "dwa": ("DWA", {"T": 2.0}, False, "DWA"),
    "rlw": ("RLW", {"dist": "Normal"}, False, "RLW"),
    "scale_invariant": ("GLS", {}, False, "GLS"),
    "gradnorm": ("GradNorm", {"alpha": 1.5}, False, "GradNorm"),
    "mgda": ("MGDA", {"mgda_gn": "none"}, False, "MGDA"),
    "mgda_ub": ("MGDA", {"mgda_gn": "none"}, True, "MGDA rep_grad"),
    "pcgrad": ("PCGrad", {}, False, "PCGrad"),
    "cagrad": ("CAGrad", {"calpha": 0.5, "rescale": 1}, False, "CAGrad"),
    "imtl": ("IMTL", {}, False, "IMTL"),
}


#: constructor keywords of the methods that have no usable default (K -> kwargs)
METHOD_KWARGS: dict[str, Any] = {"fixed": lambda k: {"weights": [1.0 / (i + 1) for i in range(k)]}}


def _env(threads: int, allocator: bool) -> dict[str, str]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "METABRIDGE_MALLOC_TUNING": "0",
    }
    for key in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"):
        env.pop(key, None)
    if allocator:
        env["MALLOC_MMAP_MAX_"] = "0"
        env["MALLOC_TRIM_THRESHOLD_"] = str(2 << 30)
    return env


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """The worker's result (the last ``@@MTLCOST`` line), or an error status."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or None, env=env)
    except subprocess.TimeoutExpired:
        return {"status": f"error: timed out after {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": f"error: exit {proc.returncode}: {tail}"}


def probe_libmtl(python: str) -> dict[str, Any] | str:
    """``{"libmtl": version, "torch": version}`` of LibMTL's python, or why it is not usable."""
    code = "import importlib.metadata as m, torch, LibMTL; print(m.version('LibMTL'), torch.__version__)"
    try:
        proc = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {python}: {exc}"
    if proc.returncode != 0:
        return f"{python} cannot import LibMTL: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    libmtl, torch_version = proc.stdout.split()
    return {"libmtl": libmtl, "torch": torch_version}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r["ms_per_step"] for r in runs if r.get("status") == "ok"]
    if not ok:
        return {"status": runs[0].get("status", "error") if runs else "not run", "runs": runs}
    return {"status": "ok", "ms_per_step": statistics.median(ok), "round_ms": ok, "failed_rounds": len(runs) - len(ok)}


class MtlCostConfig(CommandConfig):
    """Settings of ``metabridge bench mtl_cost``: the cost of one training step of every
    weighting method, against equal weighting and LibMTL."""

    out: Path = Field(Path("runs/bench/mtl_cost"), description="Folder of mtl_cost.json, mtl_cost.png and config.json.")
    methods: list[str] | None = Field(
        None,
        min_length=1,
        description=(
            "Weighting names; equal (the reference of the ratios) is always run [default: every registered weighting]."
        ),
    )
    tasks: list[int] = Field([2, 11], min_length=1, description="Numbers of tasks K.")
    repeats: int = Field(
        5,
        ge=1,
        description=(
            "Rounds of interleaved processes (metabridge's method, then LibMTL's); the median over rounds is reported."
        ),
    )
    warmup: int = Field(5, ge=0, description="Untimed steps at the start of each process.")
    steps: int = Field(20, ge=1, description="Timed steps per process (their median is the process's ms/step).")
    in_dim: int = Field(256, ge=1, description="Input features of the synthetic regression batch.")
    hidden: list[int] = Field([512, 512], min_length=1, description="Widths of the MLP encoder's hidden layers.")
    out_dim: int = Field(
        256, ge=1, description="Width of the encoder's output (the shared representation; linear heads read it)."
    )
    batch: int = Field(256, ge=1, description="Examples per step.")
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="Adam's learning rate (both libraries).")
    threads: int | None = Field(
        None,
        ge=1,
        description=(
            "Torch threads in every process, the same for both libraries [default: this process's "
            "torch.get_num_threads()]."
        ),
    )
    libmtl: bool = Field(True, description="Time LibMTL's methods beside metabridge's; --no-libmtl skips them.")
    libmtl_python: Path | None = Field(
        None,
        description=(
            "The python of a virtual environment with LibMTL installed [default: the peer environment of "
            "scripts/install_peers.sh, when it exists]."
        ),
    )
    device: str = Field(
        "cpu",
        pattern=r"^(cpu|cuda(:\d+)?)$",
        description=("cpu, cuda or cuda:N (LibMTL's python needs a CUDA torch for cuda)."),
    )
    allocator: bool = Field(
        True,
        description=(
            "Give both libraries' processes glibc's allocator settings of metabridge.device.tune_cpu_allocator "
            "through the environment; --no-allocator keeps glibc's defaults in both."
        ),
    )
    timeout: float | None = Field(
        900.0,
        gt=0,
        description=("Seconds one process may take before it is stopped and recorded as an error; None for no limit."),
    )
    seed: int = Field(
        0, description="Seed of the model's initial weights and of the batch (the same in both libraries)."
    )

    @field_validator("methods")
    @classmethod
    def _known(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        from ..multitask.weighting import WEIGHTINGS, available_weightings

        unknown = [m for m in names if m not in WEIGHTINGS]
        if unknown:
            raise ValueError(f"unknown weighting method(s) {unknown}; available: {', '.join(available_weightings())}")
        return names

    @field_validator("tasks", "hidden")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError(f"must be positive integers (got {values})")
        return values

    def method_names(self) -> list[str]:
        """The weightings timed: ``equal`` first (the reference), then each other one once."""
        from ..multitask.weighting import available_weightings

        names = available_weightings() if self.methods is None else self.methods
        return ["equal"] + [m for m in dict.fromkeys(names) if m != "equal"]


CONFIG = MtlCostConfig


def _libmtl_python(config: MtlCostConfig) -> tuple[str | None, str, dict[str, Any] | None]:
    """``(LibMTL's python or None, a note on why it is skipped, its versions)``."""
    if not config.libmtl:
        return None, "LibMTL skipped (--no-libmtl).", None
    peer = (
        str(config.libmtl_python)
        if config.libmtl_python
        else (str(DEFAULT_LIBMTL_PYTHON) if DEFAULT_LIBMTL_PYTHON.exists() else "")
    )
    if not peer:
        return (
            None,
            (
                f"LibMTL skipped: no --libmtl-python given and {DEFAULT_LIBMTL_PYTHON} does not exist "
                "(bash scripts/install_peers.sh builds it)."
            ),
            None,
        )
    probed = probe_libmtl(peer)
    if isinstance(probed, str):
        return None, f"LibMTL skipped: {probed}", None
    return peer, "", {"python": peer, **probed}


def _time_all(
    config: MtlCostConfig, names: list[str], base: dict[str, Any], peer: str | None, env: dict[str, str]
) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    """Every (library, method, K) process of every round, interleaved; their results."""
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    timeout = config.timeout or 0.0
    for r in range(config.repeats):
        for k in config.tasks:
            for name in names:
                kwargs_of = METHOD_KWARGS.get(name)
                spec = {**base, "method": name, "kwargs": kwargs_of(k) if kwargs_of else {}, "num_tasks": k}
                res = _run(
                    [sys.executable, "-m", "metabridge.benchmarks._mtl_cost_worker", json.dumps(spec)], env, timeout
                )
                runs.setdefault(("metabridge", name, k), []).append(res)
                shown = f"{res['ms_per_step']:.1f} ms" if res["status"] == "ok" else res["status"]
                line = f"round {r + 1}/{config.repeats} K={k} {name}: {shown}"
                if peer and name in LIBMTL_PAIRS:
                    cls, kwargs, rep_grad, label = LIBMTL_PAIRS[name]
                    lspec = {**base, "method": cls, "kwargs": kwargs, "rep_grad": rep_grad, "num_tasks": k}
                    lres = _run([peer, "-I", str(WORKER), "time", json.dumps(lspec)], env, timeout)
                    runs.setdefault(("libmtl", name, k), []).append(lres)
                    line += f"; LibMTL {label}: " + (
                        f"{lres['ms_per_step']:.1f} ms" if lres["status"] == "ok" else lres["status"]
                    )
                print(line, flush=True)
    return runs


def _rows(
    runs: dict[tuple[str, str, int], list[dict[str, Any]]], names: list[str], ks: list[int]
) -> list[dict[str, Any]]:
    """One row per (method, K): the medians and the ratios to equal weighting and to LibMTL."""
    from ..multitask.weighting import WEIGHTINGS, Needs

    rows: list[dict[str, Any]] = []
    for k in ks:
        ours_equal = _summary(runs[("metabridge", "equal", k)])
        their_ew = _summary(runs[("libmtl", "equal", k)]) if ("libmtl", "equal", k) in runs else None
        for name in names:
            ours = _summary(runs[("metabridge", name, k)])
            needs = WEIGHTINGS[name].needs  # type: ignore[attr-defined]  # a Weighting class
            row: dict[str, Any] = {
                "method": name,
                "num_tasks": k,
                "needs": needs.name or str(needs),
                "gradient_method": bool(needs & (Needs.PARAM_GRADS | Needs.FEATURE_GRADS)),
                "metabridge": ours,
            }
            if ours["status"] == "ok" and ours_equal and ours_equal["status"] == "ok":
                row["ratio_to_equal"] = ours["ms_per_step"] / ours_equal["ms_per_step"]
            if ("libmtl", name, k) in runs:
                lib = _summary(runs[("libmtl", name, k)])
                row["libmtl_method"] = LIBMTL_PAIRS[name][3]
                row["libmtl"] = lib
                if lib["status"] == "ok" and their_ew and their_ew["status"] == "ok":
                    row["libmtl_ratio_to_ew"] = lib["ms_per_step"] / their_ew["ms_per_step"]
                if lib["status"] == "ok" and ours["status"] == "ok":
                    row["speedup_over_libmtl"] = lib["ms_per_step"] / ours["ms_per_step"]
            rows.append(row)
    return rows


def _targets(rows: list[dict[str, Any]]) -> dict[str, dict[str, bool]]:
    """Loss-only methods within 1.1x of equal weighting; gradient methods faster than LibMTL's."""
    loss_only = {
        f"{r['method']}@K={r['num_tasks']}": r["ratio_to_equal"] <= 1.1
        for r in rows
        if not r["gradient_method"] and "ratio_to_equal" in r and r["method"] != "equal"
    }
    faster = {
        f"{r['method']}@K={r['num_tasks']}": r["speedup_over_libmtl"] > 1.0
        for r in rows
        if r["gradient_method"] and "speedup_over_libmtl" in r
    }
    return {"loss_only_within_1.1x_of_equal": loss_only, "gradient_methods_faster_than_libmtl": faster}


def _print_summary(result: dict[str, Any], out: Path) -> None:
    p, info, libmtl_info = result["protocol"], result["machine"], result["libmtl"]
    for k in p["tasks"]:
        print(
            f"\nK = {k} tasks (P = {p['shared_params']} shared parameters, batch {p['batch']}, "
            f"{p['threads']} thread(s)):"
        )
        print(table(result["rows"], k, libmtl_info is not None))
    loss_only, faster = result["targets"].values()
    misses = [key for key, ok in {**loss_only, **faster}.items() if not ok]
    print(
        f"\nloss-only methods within 1.1x of equal: {sum(loss_only.values())}/{len(loss_only)}; gradient methods "
        f"faster than LibMTL's: {sum(faster.values())}/{len(faster)}"
        + (f"; missed: {', '.join(misses)}" if misses else "")
    )
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}"
        + (f", LibMTL {libmtl_info['libmtl']} (torch {libmtl_info['torch']})" if libmtl_info else "")
        + f"; load {info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}"
    )
    print(f"wrote {out} and {out.with_suffix('.png')}")


def run(config: MtlCostConfig) -> dict[str, Any]:
    """Cost of one training step of every weighting method, against equal weighting and LibMTL;
    writes ``mtl_cost.json`` and ``mtl_cost.png`` into ``config.out``."""
    import torch

    names = config.method_names()
    n_threads = config.threads or torch.get_num_threads()
    config.write_resolved()
    peer, note, libmtl_info = _libmtl_python(config)
    if note:
        print(note, flush=True)
    info = machine(config.device)
    base = {
        "in_dim": config.in_dim,
        "hidden": list(config.hidden),
        "out_dim": config.out_dim,
        "batch": config.batch,
        "seed": config.seed,
        "warmup": config.warmup,
        "steps": config.steps,
        "threads": n_threads,
        "lr": config.lr,
        "device": config.device,
    }
    t_start = time.perf_counter()
    runs = _time_all(config, names, base, peer, _env(n_threads, config.allocator))
    shared_params = next(
        (
            r["shared_params"]
            for (lib, _, _), rs in runs.items()
            if lib == "metabridge"
            for r in rs
            if r.get("shared_params")
        ),
        None,
    )
    rows = _rows(runs, names, list(config.tasks))
    info["loadavg_end"] = os.getloadavg()
    hidden = " -> ".join(map(str, config.hidden))
    result = {
        "protocol": {
            "model": f"hard_sharing: MLP {config.in_dim} -> {hidden} -> {config.out_dim} (ReLU), "
            "one Linear(out_dim, 1) head per task",
            "shared_params": shared_params,
            "batch": config.batch,
            "loss": "mean squared error per task",
            "optimizer": f"Adam lr={config.lr}",
            "tasks": list(config.tasks),
            "repeats": config.repeats,
            "warmup": config.warmup,
            "steps": config.steps,
            "threads": n_threads,
            "device": config.device,
            "allocator_env": config.allocator,
            "seed": config.seed,
            "statistic": "median over rounds of the per-process median",
            "interleaved": "per round, per K, per method: metabridge's process, then LibMTL's",
            "wall_s": time.perf_counter() - t_start,
        },
        "libmtl": libmtl_info,
        "libmtl_note": note or None,
        "machine": info,
        "rows": rows,
        "targets": _targets(rows),
    }
    out = Path(config.out) / "mtl_cost.json"
    out.write_text(json.dumps(result, indent=1))
    title = (
        f"One training step, hard sharing (P = {shared_params:,} shared parameters), batch {config.batch}, "
        f"{n_threads} thread(s), {info['cpu'] if config.device == 'cpu' else info.get('gpu', config.device)}"
    )
    plot(rows, list(config.tasks), out.with_suffix(".png"), title)
    _print_summary(result, out)
    return result
