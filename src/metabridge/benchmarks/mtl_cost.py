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
    metabridge bench mtl_cost --methods equal,mgda,pcgrad --tasks 2 --repeats 1

Writes mtl_cost.json and mtl_cost.png into ``--results-dir``.
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

from ..csv_options import parse_csv
from ._common import machine

MARK = "@@MTLCOST "
DEFAULT_LIBMTL_PYTHON = Path.home() / ".cache" / "mb-peers" / "venv_peer2" / "bin" / "python"
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
METHOD_KWARGS: dict[str, Any] = {
    "fixed": lambda k: {"weights": [1.0 / (i + 1) for i in range(k)]},
}


def _env(threads: int, allocator: bool) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "METABRIDGE_MALLOC_TUNING": "0"}
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
            return json.loads(line[len(MARK):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": f"error: exit {proc.returncode}: {tail}"}


def probe_libmtl(python: str) -> dict[str, Any] | str:
    """``{"libmtl": version, "torch": version}`` of LibMTL's python, or why it is not usable."""
    code = ("import importlib.metadata as m, torch, LibMTL; "
            "print(m.version('LibMTL'), torch.__version__)")
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
    return {"status": "ok", "ms_per_step": statistics.median(ok), "round_ms": ok,
            "failed_rounds": len(runs) - len(ok)}


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]], k: int, with_libmtl: bool) -> str:
    """Markdown table of one K."""
    head = ["method", "reads", "ms/step", "x equal"]
    if with_libmtl:
        head += ["LibMTL", "LibMTL ms/step", "x EW", "speed-up"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["num_tasks"] != k:
            continue
        ours = r["metabridge"]
        cells = [r["method"], r["needs"].lower().replace("_grads", " grads"),
                 _fmt(ours.get("ms_per_step")) if ours["status"] == "ok" else ours["status"][:60],
                 _fmt(r.get("ratio_to_equal"), ".2f")]
        if with_libmtl:
            lib = r.get("libmtl")
            if lib is None:
                cells += ["(none)", "-", "-", "-"]
            else:
                cells += [r["libmtl_method"],
                          _fmt(lib.get("ms_per_step")) if lib["status"] == "ok" else lib["status"][:60],
                          _fmt(r.get("libmtl_ratio_to_ew"), ".2f"),
                          _fmt(r.get("speedup_over_libmtl"), ".2f") + ("x" if r.get("speedup_over_libmtl") else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], ks: list[int], path: Path, title: str) -> None:
    """ms/step per method, metabridge beside LibMTL, one panel per K (log scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(ks), figsize=(6 * len(ks), 0.32 * len(methods) + 1.8), squeeze=False)
    for ax, k in zip(axes[0], ks):
        by = {r["method"]: r for r in rows if r["num_tasks"] == k}
        ys = range(len(methods))
        ours = [by[m]["metabridge"].get("ms_per_step", 0) if m in by else 0 for m in methods]
        theirs = [(by[m].get("libmtl") or {}).get("ms_per_step", 0) if m in by else 0 for m in methods]
        ax.barh([y - 0.2 for y in ys], ours, 0.4, label="metabridge")
        ax.barh([y + 0.2 for y in ys], theirs, 0.4, label="LibMTL")
        floor = min([v for v in ours + theirs if v > 0], default=1.0)
        for y, m in zip(ys, methods):
            lib = by[m].get("libmtl") if m in by else None
            if lib is not None and lib["status"] != "ok":
                ax.text(floor, y + 0.2, " LibMTL: " + lib["status"][:50], va="center", fontsize=6)
        ax.set_yticks(list(ys), methods, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("ms per training step (median)")
        ax.set_title(f"K = {k} tasks", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(methods: str = "all", tasks: str = "2,11", repeats: int = 5, warmup: int = 5, steps: int = 20,
         in_dim: int = 256, hidden: str = "512,512", out_dim: int = 256, batch: int = 256, lr: float = 1e-3,
         threads: int = 0, libmtl_python: str = "", device: str = "cpu", allocator: bool = True,
         timeout: float = 900.0, seed: int = 0, results_dir: str = "bench/results") -> dict[str, Any]:
    """Cost of one training step of every weighting method, against equal weighting and LibMTL.

    Args:
        methods: comma-separated metabridge weighting names, or all (every registered one);
            equal (the reference of the ratios) is always run.
        tasks: comma-separated numbers of tasks K.
        repeats: rounds of interleaved processes (metabridge's method, then LibMTL's); the median
            over rounds is reported.
        warmup: untimed steps at the start of each process.
        steps: timed steps per process (their median is the process's ms/step).
        in_dim: input features of the synthetic regression batch.
        hidden: comma-separated widths of the MLP encoder's hidden layers.
        out_dim: width of the encoder's output (the shared representation; linear heads read it).
        batch: examples per step.
        lr: Adam's learning rate (both libraries).
        threads: torch threads in every process, the same for both libraries; 0 takes this
            process's torch.get_num_threads().
        libmtl_python: the python of a virtual environment with LibMTL installed (default
            ~/.cache/mb-peers/venv_peer2/bin/python when it exists; none skips LibMTL).
        device: cpu or cuda (LibMTL's python needs a CUDA torch for cuda).
        allocator: give both libraries' processes glibc's allocator settings of
            metabridge.device.tune_cpu_allocator through the environment; --no-allocator keeps
            glibc's defaults in both.
        timeout: seconds one process may take before it is stopped and recorded as an error
            (0: no limit).
        seed: seed of the model's initial weights and of the batch (the same in both libraries).
        results_dir: where mtl_cost.json and mtl_cost.png are written.
    """
    from ..multitask.weighting import WEIGHTINGS, Needs, available_weightings

    names = available_weightings() if methods.strip() == "all" else [m.strip() for m in methods.split(",")
                                                                     if m.strip()]
    if not names:
        raise ValueError("--methods is empty; give weighting names (e.g. equal,mgda) or all.")
    unknown = [m for m in names if m not in WEIGHTINGS]
    if unknown:
        raise ValueError(f"unknown weighting method(s) {unknown}; available: {', '.join(available_weightings())}.")
    names = ["equal"] + [m for m in dict.fromkeys(names) if m != "equal"]  # the reference, always run first
    k_list = parse_csv(tasks, "--tasks", positive=True, example="2,11")
    widths = parse_csv(hidden, "--hidden", positive=True, example="512,512")
    if repeats < 1 or steps < 1 or warmup < 0:
        raise ValueError(f"--repeats and --steps must be >= 1 and --warmup >= 0 (got {repeats}, {steps}, {warmup}).")
    if min(in_dim, out_dim, batch) < 1 or not lr > 0 or threads < 0 or timeout < 0:
        raise ValueError("--in-dim, --out-dim and --batch must be >= 1, --lr > 0, --threads >= 0 and --timeout >= 0.")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"--device must be cpu or cuda (got {device!r}).")

    import torch

    n_threads = threads or torch.get_num_threads()
    peer: str | None
    if libmtl_python.strip().lower() == "none":
        peer, note = None, "LibMTL skipped (--libmtl-python none)."
    else:
        peer = libmtl_python.strip() or (str(DEFAULT_LIBMTL_PYTHON) if DEFAULT_LIBMTL_PYTHON.exists() else "")
        note = "" if peer else (f"LibMTL skipped: no --libmtl-python given and {DEFAULT_LIBMTL_PYTHON} does not exist.")
    libmtl_info: dict[str, Any] | None = None
    if peer:
        probed = probe_libmtl(peer)
        if isinstance(probed, str):
            peer, note = None, f"LibMTL skipped: {probed}"
        else:
            libmtl_info = {"python": peer, **probed}
    if note:
        print(note, flush=True)

    info = machine(device)
    env = _env(n_threads, allocator)
    base = {"in_dim": in_dim, "hidden": widths, "out_dim": out_dim, "batch": batch, "seed": seed, "warmup": warmup,
            "steps": steps, "threads": n_threads, "lr": lr, "device": device}
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    shared_params: int | None = None
    t_start = time.perf_counter()
    for r in range(repeats):
        for k in k_list:
            for name in names:
                kwargs_of = METHOD_KWARGS.get(name)
                spec = {**base, "method": name, "kwargs": kwargs_of(k) if kwargs_of else {}, "num_tasks": k}
                res = _run([sys.executable, "-m", "metabridge.benchmarks._mtl_cost_worker", json.dumps(spec)], env,
                           timeout)
                runs.setdefault(("metabridge", name, k), []).append(res)
                shared_params = shared_params or res.get("shared_params")
                shown = f"{res['ms_per_step']:.1f} ms" if res["status"] == "ok" else res["status"]
                line = f"round {r + 1}/{repeats} K={k} {name}: {shown}"
                if peer and name in LIBMTL_PAIRS:
                    cls, kwargs, rep_grad, label = LIBMTL_PAIRS[name]
                    lspec = {**base, "method": cls, "kwargs": kwargs, "rep_grad": rep_grad, "num_tasks": k}
                    lres = _run([peer, "-I", str(WORKER), "time", json.dumps(lspec)], env, timeout)
                    runs.setdefault(("libmtl", name, k), []).append(lres)
                    line += f"; LibMTL {label}: " + (f"{lres['ms_per_step']:.1f} ms" if lres["status"] == "ok"
                                                     else lres["status"])
                print(line, flush=True)

    rows: list[dict[str, Any]] = []
    for k in k_list:
        ours_equal = _summary(runs[("metabridge", "equal", k)])
        their_ew = _summary(runs[("libmtl", "equal", k)]) if ("libmtl", "equal", k) in runs else None
        for name in names:
            ours = _summary(runs[("metabridge", name, k)])
            needs = WEIGHTINGS[name].needs
            row: dict[str, Any] = {"method": name, "num_tasks": k, "needs": needs.name or str(needs),
                                   "gradient_method": bool(needs & (Needs.PARAM_GRADS | Needs.FEATURE_GRADS)),
                                   "metabridge": ours}
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

    loss_only = {f"{r['method']}@K={r['num_tasks']}": r["ratio_to_equal"] <= 1.1 for r in rows
                 if not r["gradient_method"] and "ratio_to_equal" in r and r["method"] != "equal"}
    faster = {f"{r['method']}@K={r['num_tasks']}": r["speedup_over_libmtl"] > 1.0 for r in rows
              if r["gradient_method"] and "speedup_over_libmtl" in r}
    info["loadavg_end"] = os.getloadavg()
    result = {
        "protocol": {"model": f"hard_sharing: MLP {in_dim} -> {' -> '.join(map(str, widths))} -> {out_dim} (ReLU), "
                              "one Linear(out_dim, 1) head per task",
                     "shared_params": shared_params, "batch": batch, "loss": "mean squared error per task",
                     "optimizer": f"Adam lr={lr}", "tasks": k_list, "repeats": repeats, "warmup": warmup,
                     "steps": steps, "threads": n_threads, "device": device, "allocator_env": allocator,
                     "seed": seed, "statistic": "median over rounds of the per-process median",
                     "interleaved": "per round, per K, per method: metabridge's process, then LibMTL's",
                     "wall_s": time.perf_counter() - t_start},
        "libmtl": libmtl_info, "libmtl_note": note or None, "machine": info, "rows": rows,
        "targets": {"loss_only_within_1.1x_of_equal": loss_only, "gradient_methods_faster_than_libmtl": faster},
    }
    out = Path(results_dir) / "mtl_cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    title = (f"One training step, hard sharing (P = {shared_params:,} shared parameters), batch {batch}, "
             f"{n_threads} thread(s), {info['cpu'] if device == 'cpu' else info.get('gpu', device)}")
    plot(rows, k_list, out.with_suffix(".png"), title)
    for k in k_list:
        print(f"\nK = {k} tasks (P = {shared_params} shared parameters, batch {batch}, {n_threads} thread(s)):")
        print(table(rows, k, libmtl_info is not None))
    misses = [key for key, ok in {**loss_only, **faster}.items() if not ok]
    print(f"\nloss-only methods within 1.1x of equal: {sum(loss_only.values())}/{len(loss_only)}; gradient methods "
          f"faster than LibMTL's: {sum(faster.values())}/{len(faster)}" + (f"; missed: {', '.join(misses)}"
                                                                           if misses else ""))
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}"
          + (f", LibMTL {libmtl_info['libmtl']} (torch {libmtl_info['torch']})" if libmtl_info else "")
          + f"; load {info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return result
