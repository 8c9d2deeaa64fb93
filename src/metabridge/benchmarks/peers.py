"""metabridge against higher, TorchOpt and learn2learn: one meta-iteration of MAML (Finn
et al. 2017), first-order MAML and ANIL (Raghu et al. 2020) with Conv-4, timed side by side.

Protocol: 5-way K-shot (K = 1 and 5), 15 queries per class, 5 inner SGD steps
(alpha = 0.4), meta-batch 32, 28x28x1 inputs, Conv-4 with per-batch batch norm.
Every library gets a deep copy of one initial model and the same tasks (one
:class:`TaskBatch` drawn by :class:`EpisodeSampler` from a synthetic uint8 dataset);
all libraries run in one process, interleaved (A B C A B C ...) after one warm-up
each, and the median per library is reported with the ratio peer / metabridge.
Peak memory is measured per configuration in a fresh subprocess
(``_peak_memory.py``). The meta-gradients are checked against each other in
float64 on a smaller instance (relative error, 2-norm). The floor is the FLOP count
over the large-matmul rate (``_flops.py``).

The peers are optional. learn2learn 0.2.0's sdist does not build on Python 3.11 (its
shipped C includes ``longintrepr.h``); ``../shared/peers/install.sh`` builds it (and
higher, TorchOpt) into a peer venv. ``--peer-site auto`` (the default) appends that
venv's ``site-packages`` to ``sys.path`` when it exists, after this interpreter's own
entries, so metabridge, torch and numpy come from the venv running the benchmark and
only the packages missing here (learn2learn, higher, TorchOpt, torchvision, gym) from
the peer venv. With ``--libs auto`` (the default) a peer that does not import is
skipped with a printed line saying how to install it; a peer named in ``--libs`` that
does not import is an error.

metabridge runs with its defaults: on CPU four tasks per chunk (one grouped network), two chunks at once in
threads with single-threaded operators (``ExecutionOptions(task_chunk="auto", task_threads="auto")``);
``metabridge:t1`` runs the chunks one after another, ``metabridge:c1`` one task per chunk (the
previous default: the smallest memory), ``metabridge:all`` the
whole meta-batch as one grouped-convolution network, ``metabridge:aten-bn`` / ``metabridge:closed-bn``
ATen's batch norm or the closed-form double backward (``models/batch_norm.py``) whatever the
device; see ``_peer_impls.VARIANTS``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ..device import tune_cpu_allocator
from . import _flops, _peak_memory
from ._common import machine
from ._peer_impls import (INNER_LR, METHODS, PEERS, VARIANTS, available, build_step, flat_grad, make_problem,
                          use_peer_site)

LABELS = {"maml": "MAML (2nd order)", "fomaml": "first-order MAML", "anil": "ANIL"}


def resolve_libs(libs: str) -> tuple[list[str], list[str]]:
    """The libraries to run (metabridge first) and a line per peer skipped.

    ``"auto"`` is metabridge plus every peer of :data:`PEERS` that imports; explicit names
    must all be known and importable (``ValueError`` otherwise, before anything runs).
    ``"auto"`` may head a list of further metabridge variants (``auto,metabridge:closed-bn``).
    """
    lib_list = [s.strip() for s in libs.split(",") if s.strip()]
    if lib_list and lib_list[0] == "auto":
        why = {p: available(p) for p in PEERS}
        extra = [lib for lib in lib_list[1:] if lib != "metabridge"]
        bad = [lib for lib in extra if lib not in VARIANTS]
        if bad:
            raise ValueError(f"--libs: after 'auto' only metabridge variants may follow (got {bad}); "
                             f"choose from {', '.join(VARIANTS)}.")
        return ["metabridge", *extra] + [p for p in PEERS if why[p] is None], [w for w in why.values() if w]
    lib_list = ["metabridge"] + [lib for lib in lib_list if lib != "metabridge"]
    unknown = [lib for lib in lib_list if lib not in VARIANTS and lib not in PEERS]
    if unknown:
        raise ValueError(f"--libs: unknown library {unknown}; choose from auto, {', '.join([*VARIANTS, *PEERS])}.")
    missing = [why for why in (available(lib) for lib in lib_list if lib in PEERS) if why]
    if missing:
        raise ValueError("--libs: " + "; ".join(missing))
    return lib_list, []


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_interleaved(libs: list[str], method: str, shots: int, meta_batch: int, steps: int, queries: int,
                     repeats: int, warmup: int, device: str) -> dict[str, list[float]]:
    """Seconds per meta-iteration of every library, run in turn ``repeats`` times."""
    model, batch = make_problem(shots, meta_batch, queries, device)
    stepper = {lib: build_step(lib, model, batch, method, INNER_LR, steps)[0] for lib in libs}
    times: dict[str, list[float]] = {lib: [] for lib in libs}
    for r in range(warmup + repeats):
        for lib in libs:
            _sync(device)
            t0 = time.perf_counter()
            stepper[lib]()
            _sync(device)
            if r >= warmup:
                times[lib].append(time.perf_counter() - t0)
    return times


def gradient_check(libs: list[str], method: str, shots: int, device: str) -> dict[str, float]:
    """Relative 2-norm error of each library's float64 meta-gradient against metabridge's
    (meta-batch 2, 3 queries per class, 2 inner steps)."""
    model, batch = make_problem(shots, 2, 3, device, torch.float64, seed=1)
    grads = {}
    for lib in libs:
        step, params = build_step(lib, model, batch, method, INNER_LR, 2)
        step()
        grads[lib] = flat_grad(params)
    ref = grads["metabridge"]
    return {lib: float((g - ref).norm() / ref.norm()) for lib, g in grads.items() if lib != "metabridge"}


def table(rows: list[dict[str, Any]], libs: list[str]) -> str:
    """Markdown table: median seconds, ratio to metabridge, peak MiB, gradient error, floor fraction."""
    peers = [lib for lib in libs if lib != "metabridge"]
    head = (["method", "shot", "metabridge s"] + [f"{p} s (x)" for p in peers]
            + ["peak MiB " + "/".join(libs), "max grad rel err", "floor s", "of floor"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        med = r["median_s"]
        cells = [LABELS[r["method"]], str(r["shots"]), f"{med['metabridge']:.3f}"]
        cells += [f"{med[p]:.3f} ({r['ratio'][p]:.2f}x)" for p in peers]
        mem = r.get("peak_mib", {})
        cells.append("/".join(f"{mem[lib]:.0f}" if isinstance(mem.get(lib), float) else "-" for lib in libs))
        errs = r.get("grad_rel_err", {})
        cells.append(f"{max(errs.values()):.1e}" if errs else "-")
        cells.append(f"{r['floor_s']:.3f}" if "floor_s" in r else "-")
        cells.append(f"{r['floor_fraction']:.0%}" if "floor_fraction" in r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], libs: list[str], path: Path) -> None:
    """Median seconds per meta-iteration, one bar per library and configuration (log scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 3, 4))
    width = 0.8 / len(libs)
    for j, lib in enumerate(libs):
        xs = [i + (j - (len(libs) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(xs, [r["median_s"][lib] for r in rows], width, label=lib)
    ax.set_xticks(range(len(rows)), [f"{LABELS[r['method']]}\n{r['shots']}-shot" for r in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per meta-iteration (median)")
    ax.legend(fontsize=8)
    ax.set_title("One meta-iteration, Conv-4, 5-way, 15 queries, 5 steps", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _versions(libs: list[str]) -> dict[str, str]:
    """``__version__`` (and the directory it came from) of each peer in ``libs``."""
    out = {}
    for lib in libs:
        if lib in PEERS:
            mod = importlib.import_module(lib)
            try:
                version = importlib.metadata.version(lib)
            except importlib.metadata.PackageNotFoundError:
                version = getattr(mod, "__version__", "?")
            out[lib] = f"{version} ({Path(mod.__file__ or '?').parent})"
    return out


def main(methods: str = "maml,fomaml,anil", shots: str = "1,5", meta_batch: int = 32, repeats: int = 5,
         warmup: int = 1, inner_steps: int = 5, queries: int = 15, libs: str = "auto",
         device: str = "cpu", memory: bool = True, check_grads: bool = True, flops: bool = True,
         out: str = "", allocator: bool = True, peer_site: str = "auto") -> dict[str, Any]:
    """Time one meta-iteration of MAML, FOMAML and ANIL in metabridge, higher, TorchOpt and learn2learn.

    Args:
        methods: comma-separated subset of maml, fomaml, anil.
        shots: comma-separated K values (5-way K-shot).
        meta_batch: tasks per meta-iteration.
        repeats: timed meta-iterations per library (interleaved); the median is reported.
        warmup: untimed meta-iterations per library first.
        inner_steps: inner SGD steps (alpha = 0.4).
        queries: query examples per class.
        libs: auto (metabridge and every peer of higher, torchopt, learn2learn that imports; the
            others are skipped with a printed line; metabridge variants may follow it:
            auto,metabridge:closed-bn) or comma-separated libraries, metabridge first
            (a peer named here that does not import is an error); also metabridge variants such as
            metabridge:t1, metabridge:all, metabridge:all-cl, metabridge:all-im2col, metabridge:loop,
            metabridge:vmap, metabridge:ckpt, metabridge:aten-bn, metabridge:closed-bn (other task-batching
            modes, threads, checkpointing, batch-norm kernels).
        device: cpu or cuda.
        memory: measure peak memory per configuration in a fresh subprocess.
        check_grads: compare float64 meta-gradients on a small instance (meta-batch 2).
        flops: count FLOPs and measure the matmul rate to report the floor.
        out: JSON path (default bench/results/peers_cpu.json or peers_cuda.json); a PNG plot goes beside it.
        allocator: on CPU, apply :func:`metabridge.device.tune_cpu_allocator` (as metabridge's
            trainer does) for the whole process, so every library runs under the same allocator
            settings; ``--no-allocator`` measures glibc's defaults.
        peer_site: site-packages of a venv to import missing peers from, appended to sys.path
            after this interpreter's own (auto: ~/.cache/mb-peers/venv_peer2's, built by
            ../shared/peers/install.sh, when it exists; none: only this interpreter's packages).
    """
    site = use_peer_site(peer_site)
    lib_list, skipped = resolve_libs(libs)
    for why in skipped:
        print(f"skipped: {why}", flush=True)
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    bad = [m for m in method_list if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}.")
    shot_list = [int(s) for s in shots.split(",") if s.strip()]
    kind = "cuda" if device.startswith("cuda") else "cpu"
    out_path = Path(out or f"bench/results/peers_{kind}.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tuned = kind == "cpu" and allocator and tune_cpu_allocator()
    info = machine(device)
    rate = _flops.matmul_gflops(device) if flops else None
    rows = []
    for method in method_list:
        for k in shot_list:
            times = time_interleaved(lib_list, method, k, meta_batch, inner_steps, queries, repeats, warmup, device)
            med = {lib: statistics.median(ts) for lib, ts in times.items()}
            row: dict[str, Any] = {"method": method, "shots": k, "times_s": times, "median_s": med,
                                   "ratio": {lib: med[lib] / med["metabridge"] for lib in lib_list}}
            if check_grads:
                row["grad_rel_err"] = gradient_check(lib_list, method, k, device)
            if flops and rate:
                count = _flops.meta_iteration_flops(method, k, meta_batch, inner_steps, queries)
                row["flops"] = count
                row["floor_s"] = count["total"] / (rate * 1e9)
                row["floor_fraction"] = row["floor_s"] / med["metabridge"]
                row["achieved_gflops"] = count["total"] / med["metabridge"] / 1e9
            rows.append(row)
            print(f"{method} {k}-shot: " + ", ".join(f"{lib} {m:.3f}s" for lib, m in med.items()), flush=True)
    if memory:
        for row in rows:
            row["peak_mib"] = {}
            for lib in lib_list:
                res = _peak_memory.measure(lib, row["method"], row["shots"], meta_batch, inner_steps, device,
                                           tune_allocator=bool(tuned),
                                           peer_site=str(site) if site else "none")
                row["peak_mib"][lib] = res.get("peak_mib", res.get("error"))
                row.setdefault("peak_detail", {})[lib] = res
    info["loadavg_end"] = os.getloadavg()
    result = {
        "protocol": {"n_way": 5, "shots": shot_list, "queries": queries, "inner_steps": inner_steps,
                     "inner_lr": INNER_LR, "meta_batch": meta_batch, "input": [1, 28, 28], "model": "Conv-4 (64)",
                     "repeats": repeats, "warmup": warmup, "interleaved": True, "statistic": "median",
                     "cpu_allocator_tuned": bool(tuned),
                     "libs": lib_list, "skipped": skipped, "peer_site": str(site) if site else None,
                     "peer_versions": _versions(lib_list)},
        "machine": info, "matmul_gflops": rate, "rows": rows,
    }
    out_path.write_text(json.dumps(result, indent=1))
    plot(rows, lib_list, out_path.with_suffix(".png"))
    print(table(rows, lib_list))
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
          f"load {info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}; matmul {rate or 0:.0f} GFLOP/s")
    print(f"wrote {out_path} and {out_path.with_suffix('.png')}")
    return result
