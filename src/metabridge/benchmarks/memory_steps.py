"""Peak memory of second-order MAML against the number of inner steps k.

Unrolling k steps keeps every step's activations for the outer backward, so memory
should grow linearly in k (and no faster); ``checkpoint_inner=True`` keeps only each
step's input weights and recomputes the activations, so the growth per step drops to
the size of the weights plus one step's activations at a time. Each point is a
fresh subprocess (``_peak_memory.measure``).
"""

from __future__ import annotations

from typing import Any

from . import _peak_memory


def memory_vs_steps(libs: list[str], steps: list[int], shots: int, meta_batch: int, device: str) -> dict[str, Any]:
    """``{lib: {k: peak MiB}}`` for second-order MAML, plus the MiB added per step (least squares)."""
    table: dict[str, Any] = {}
    for lib in libs:
        peaks = {}
        for k in steps:
            res = _peak_memory.measure(lib, "maml", shots, meta_batch, k, device)
            peaks[k] = res.get("peak_mib", res.get("error"))
        ok = [(k, v) for k, v in peaks.items() if isinstance(v, float)]
        slope = None
        if len(ok) >= 2:
            mk = sum(k for k, _ in ok) / len(ok)
            mv = sum(v for _, v in ok) / len(ok)
            slope = sum((k - mk) * (v - mv) for k, v in ok) / sum((k - mk) ** 2 for k, _ in ok)
        table[lib] = {"peak_mib": peaks, "mib_per_step": slope}
    return table
