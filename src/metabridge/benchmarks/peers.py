"""metabridge against higher, TorchOpt and learn2learn: one meta-iteration of MAML (Finn
et al. 2017), first-order MAML and ANIL (Raghu et al. 2020) with Conv-4, timed side by side.

Protocol: 5-way K-shot (K = 1 and 5), 15 queries per class, 5 inner SGD steps
(alpha = 0.4), meta-batch 32, 28x28x1 inputs, Conv-4 with per-batch batch norm.
Every library gets a deep copy of one initial model and the same tasks (one
:class:`TaskBatch` drawn by :class:`EpisodeSampler` from a synthetic uint8 dataset);
all libraries run in one process, interleaved (A B C A B C ...) after one warm-up
each, and the median per library is reported with the ratio peer / metabridge.
Peak memory is measured per configuration in a fresh subprocess
(``_peer_impls.measure_peak_memory``). The meta-gradients are checked against each other in
float64 on a smaller instance (relative error, 2-norm). The floor is the FLOP count
over the large-matmul rate (``_flops.py``).

The peers are optional. learn2learn 0.2.0's sdist does not build on Python 3.11 (its
shipped C includes ``longintrepr.h``); ``scripts/install_peers.sh`` builds it (and
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
from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from ..config import CommandConfig
from ..device import tune_cpu_allocator
from ..machine_info import machine
from . import _flops
from ._peer_impls import (
    INNER_LR,
    PEERS,
    VARIANTS,
    available,
    build_step,
    flat_grad,
    make_problem,
    measure_peak_memory,
    use_peer_site,
)

LABELS = {"maml": "MAML (2nd order)", "fomaml": "first-order MAML", "anil": "ANIL"}


def resolve_libs(libs: list[str]) -> tuple[list[str], list[str]]:
    """The libraries to run (metabridge first) and a line per peer skipped.

    ``"auto"`` is metabridge plus every peer of :data:`PEERS` that imports; explicit names
    must all be known and importable (``ValueError`` otherwise, before anything runs).
    ``"auto"`` may head a list of further metabridge variants (``["auto", "metabridge:closed-bn"]``).
    """
    lib_list = list(libs)
    if lib_list and lib_list[0] == "auto":
        why = {p: available(p) for p in PEERS}
        extra = [lib for lib in lib_list[1:] if lib != "metabridge"]
        bad = [lib for lib in extra if lib not in VARIANTS]
        if bad:
            raise ValueError(
                f"--libs: after 'auto' only metabridge variants may follow (got {bad}); "
                f"choose from {', '.join(VARIANTS)}."
            )
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


def time_interleaved(
    libs: list[str],
    method: str,
    shots: int,
    meta_batch: int,
    steps: int,
    queries: int,
    repeats: int,
    warmup: int,
    device: str,
) -> dict[str, list[float]]:
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
    head = (
        ["method", "shot", "metabridge s"]
        + [f"{p} s (x)" for p in peers]
        + ["peak MiB " + "/".join(libs), "max grad rel err", "floor s", "of floor"]
    )
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


class PeersConfig(CommandConfig):
    """Settings of ``metabridge bench peers``: one meta-iteration of MAML, FOMAML and ANIL in
    metabridge, higher, TorchOpt and learn2learn, timed side by side."""

    out: Path = Field(
        Path("runs/bench/peers"),
        description=("Folder of peers_cpu.json (or peers_cuda.json), its PNG plot and config.json."),
    )
    methods: list[Literal["maml", "fomaml", "anil"]] = Field(
        ["maml", "fomaml", "anil"], min_length=1, description=("Methods: maml, fomaml, anil.")
    )
    shots: list[int] = Field([1, 5], min_length=1, description="K values (5-way K-shot).")
    meta_batch: int = Field(32, ge=1, description="Tasks per meta-iteration.")
    repeats: int = Field(
        5, ge=1, description="Timed meta-iterations per library (interleaved); the median is reported."
    )
    warmup: int = Field(1, ge=0, description="Untimed meta-iterations per library first.")
    inner_steps: int = Field(5, ge=1, description="Inner SGD steps (alpha = 0.4).")
    queries: int = Field(15, ge=1, description="Query examples per class.")
    libs: list[str] = Field(
        ["auto"],
        min_length=1,
        description=(
            "Libraries: auto (metabridge and every peer of higher, torchopt, learn2learn that "
            "imports; the others are skipped with a printed line; metabridge variants may follow it) or "
            "libraries, metabridge first (a peer named here that does not import is an error); also metabridge "
            "variants such as metabridge:t1, metabridge:all, metabridge:all-cl, metabridge:all-im2col, "
            "metabridge:loop, metabridge:vmap, metabridge:ckpt, metabridge:aten-bn, metabridge:closed-bn."
        ),
    )
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu, cuda or cuda:N.")
    memory: bool = Field(True, description="Measure peak memory per configuration in a fresh subprocess.")
    check_grads: bool = Field(True, description="Compare float64 meta-gradients on a small instance (meta-batch 2).")
    flops: bool = Field(True, description="Count FLOPs and measure the matmul rate to report the floor.")
    allocator: bool = Field(
        True,
        description=(
            "On CPU, apply metabridge.device.tune_cpu_allocator (as metabridge's trainer does) for the whole "
            "process, so every library runs under the same allocator settings; --no-allocator measures glibc's "
            "defaults."
        ),
    )
    peer_site: str = Field(
        "auto",
        min_length=1,
        description=(
            "site-packages of a venv to import missing peers from, appended to sys.path after this interpreter's "
            "own: auto (that of the environment scripts/install_peers.sh builds, when it exists), none (only this "
            "interpreter's packages) or a directory."
        ),
    )

    @field_validator("shots")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError(f"must be positive integers (got {values})")
        return values

    @field_validator("libs")
    @classmethod
    def _known_libs(cls, libs: list[str]) -> list[str]:
        known = {"auto", *VARIANTS, *PEERS}
        unknown = [lib for lib in libs if lib not in known]
        if unknown:
            raise ValueError(f"unknown library {unknown}; choose from auto, {', '.join([*VARIANTS, *PEERS])}")
        if "auto" in libs[1:]:
            raise ValueError("auto may only come first")
        return libs


CONFIG = PeersConfig


def _time_rows(config: PeersConfig, libs: list[str], rate: float | None) -> list[dict[str, Any]]:
    """One row per method and shot: the interleaved timings, their medians and ratios, the
    gradient check and the FLOP floor."""
    rows = []
    for method in config.methods:
        for k in config.shots:
            times = time_interleaved(
                libs,
                method,
                k,
                config.meta_batch,
                config.inner_steps,
                config.queries,
                config.repeats,
                config.warmup,
                config.device,
            )
            med = {lib: statistics.median(ts) for lib, ts in times.items()}
            row: dict[str, Any] = {
                "method": method,
                "shots": k,
                "times_s": times,
                "median_s": med,
                "ratio": {lib: med[lib] / med["metabridge"] for lib in libs},
            }
            if config.check_grads:
                row["grad_rel_err"] = gradient_check(libs, method, k, config.device)
            if config.flops and rate:
                count = _flops.meta_iteration_flops(method, k, config.meta_batch, config.inner_steps, config.queries)
                row["flops"] = count
                row["floor_s"] = count["total"] / (rate * 1e9)
                row["floor_fraction"] = row["floor_s"] / med["metabridge"]
                row["achieved_gflops"] = count["total"] / med["metabridge"] / 1e9
            rows.append(row)
            print(f"{method} {k}-shot: " + ", ".join(f"{lib} {m:.3f}s" for lib, m in med.items()), flush=True)
    return rows


def _add_memory(
    config: PeersConfig, rows: list[dict[str, Any]], libs: list[str], tuned: bool, site: Path | None
) -> None:
    """Each row's peak memory per library, each measured in a fresh child process."""
    for row in rows:
        row["peak_mib"] = {}
        for lib in libs:
            res = measure_peak_memory(
                lib,
                row["method"],
                row["shots"],
                config.meta_batch,
                config.inner_steps,
                config.device,
                tune_allocator=tuned,
                peer_site=str(site) if site else "none",
            )
            row["peak_mib"][lib] = res.get("peak_mib", res.get("error"))
            row.setdefault("peak_detail", {})[lib] = res


def run(config: PeersConfig) -> dict[str, Any]:
    """Time one meta-iteration of MAML, FOMAML and ANIL in metabridge, higher, TorchOpt and
    learn2learn; writes ``peers_{cpu,cuda}.json`` and its plot into ``config.out``."""
    site = use_peer_site(config.peer_site)
    lib_list, skipped = resolve_libs(config.libs)
    for why in skipped:
        print(f"skipped: {why}", flush=True)
    kind = "cuda" if config.device.startswith("cuda") else "cpu"
    config.write_resolved()
    out_path = Path(config.out) / f"peers_{kind}.json"
    tuned = bool(kind == "cpu" and config.allocator and tune_cpu_allocator())
    info = machine(config.device)
    rate = _flops.matmul_gflops(config.device) if config.flops else None
    rows = _time_rows(config, lib_list, rate)
    if config.memory:
        _add_memory(config, rows, lib_list, tuned, site)
    info["loadavg_end"] = os.getloadavg()
    result = {
        "protocol": {
            "n_way": 5,
            "shots": list(config.shots),
            "queries": config.queries,
            "inner_steps": config.inner_steps,
            "inner_lr": INNER_LR,
            "meta_batch": config.meta_batch,
            "input": [1, 28, 28],
            "model": "Conv-4 (64)",
            "repeats": config.repeats,
            "warmup": config.warmup,
            "interleaved": True,
            "statistic": "median",
            "cpu_allocator_tuned": tuned,
            "libs": lib_list,
            "skipped": skipped,
            "peer_site": str(site) if site else None,
            "peer_versions": _versions(lib_list),
        },
        "machine": info,
        "matmul_gflops": rate,
        "rows": rows,
    }
    out_path.write_text(json.dumps(result, indent=1))
    plot(rows, lib_list, out_path.with_suffix(".png"))
    print(table(rows, lib_list))
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
        f"load {info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}; matmul {rate or 0:.0f} GFLOP/s"
    )
    print(f"wrote {out_path} and {out_path.with_suffix('.png')}")
    return result
