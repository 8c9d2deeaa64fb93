"""Peak memory of one meta-iteration, each configuration in a fresh subprocess.

CPU: PyTorch's CPU allocator keeps no peak statistics, and a tensor-level profiler
(``torch.profiler(profile_memory=True)``) misses allocator overhead and slows the run.
What the user pays is resident memory, so a child process builds the model and the
tasks, resets the kernel's high-water mark (writing ``5`` to ``/proc/self/clear_refs``
sets ``VmHWM`` to the current ``VmRSS``), runs one meta-iteration, and reads ``VmHWM``.
A fresh process per configuration keeps one library's cached memory from hiding
another's peak. The reported figure is ``VmHWM - VmRSS before the iteration``: the
memory the meta-iteration itself needed (model, tasks and interpreter excluded).

CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the
memory allocated before the iteration.

Run as ``python -m metabridge.benchmarks._peak_memory LIB METHOD SHOTS META_BATCH STEPS DEVICE``;
``$METABRIDGE_PEER_SITE`` names the peer venv's ``site-packages`` to import a peer from
(``_peer_impls.use_peer_site``), as the parent did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..peak_memory import status_kb
from ._peer_impls import INNER_LR, PEER_SITE_ENV, build_step, make_problem, use_peer_site


def _status_kb(field: str) -> int:
    value = status_kb(field)
    if value is None:
        raise RuntimeError(f"{field} not in /proc/self/status")
    return value


def measure_in_this_process(lib: str, method: str, shots: int, meta_batch: int, steps: int, device: str) -> dict:
    """Build the problem, reset the peak, run one meta-iteration, return the peak in MiB."""
    import gc

    import torch

    model, batch = make_problem(shots, meta_batch, device=device)
    step, _ = build_step(lib, model, batch, method, INNER_LR, steps)
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return {"peak_mib": (torch.cuda.max_memory_allocated() - before) / 2**20, "how": "cuda max_memory_allocated"}
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    step()
    peak = _status_kb("VmHWM")
    return {"peak_mib": (peak - before) / 1024, "rss_before_mib": before / 1024, "vmhwm_mib": peak / 1024,
            "how": "VmHWM - VmRSS (clear_refs=5), fresh process"}


def measure(lib: str, method: str, shots: int, meta_batch: int, steps: int, device: str,
            timeout: float = 1800, tune_allocator: bool = False, peer_site: str | None = None) -> dict:
    """Run :func:`measure_in_this_process` in a child process; ``{"error": ...}`` if it fails.

    ``tune_allocator``: apply :func:`metabridge.device.tune_cpu_allocator` in the child
    too, so that the peak is measured under the allocator settings the timings used.
    ``peer_site``: the peer ``site-packages`` the child appends to its path (default: the
    parent's ``$METABRIDGE_PEER_SITE``, if any).
    """
    cmd = [sys.executable, "-m", "metabridge.benchmarks._peak_memory", lib, method, str(shots), str(meta_batch),
           str(steps), device]
    env = {**os.environ, "METABRIDGE_MALLOC_TUNING": "1" if tune_allocator else "0"}
    if peer_site is not None:
        env[PEER_SITE_ENV] = peer_site
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    a = sys.argv[1:]
    use_peer_site(os.environ.get(PEER_SITE_ENV, "none"))
    if a[5] == "cpu":
        from metabridge.device import tune_cpu_allocator

        tune_cpu_allocator()  # a no-op when METABRIDGE_MALLOC_TUNING=0 (the parent decides)
    print(json.dumps(measure_in_this_process(a[0], a[1], int(a[2]), int(a[3]), int(a[4]), a[5])))
