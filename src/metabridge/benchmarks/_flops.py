"""The floor: FLOPs of one meta-iteration divided by the large-matmul rate of the machine it runs on.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``, which counts
every convolution, ``convolution_backward`` (grad-input and grad-weight products
separately, only those requested), ``mm``/``bmm``/``addmm``/``baddbmm`` that run,
including the ones autograd issues in the double backward of second-order MAML; it
ignores elementwise work (batch norm, ReLU, pooling), so the floor is a lower bound
on time. Because FLOPs are linear in the number of tasks, one task is counted and
the count multiplied by the meta-batch (the batched path runs the same products:
grouped convolutions count ``[T*C_out, C_in, 3, 3]`` weights, i.e. T times one task).

The rate is the median over repeats of a float32 ``n x n`` by ``n x n`` product
(2 n^3 FLOPs), the fastest dense kernel the machine runs.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ._peer_impls import INNER_LR, build_step, make_problem


def meta_iteration_flops(method: str, shots: int, meta_batch: int, steps: int, queries: int = 15) -> dict:
    """FLOPs of one meta-iteration (meta-batch ``meta_batch``) by operator, counted on one task."""
    model, batch = make_problem(shots, 1, queries=queries, device="cpu")
    step, _ = build_step("metabridge", model, batch, method, INNER_LR, steps)
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    by_op = {
        str(k).split(".")[-1] if not hasattr(k, "__name__") else k.__name__: v * meta_batch
        for k, v in counter.get_flop_counts()["Global"].items()
    }
    return {"total": counter.get_total_flops() * meta_batch, "by_op": by_op}


def matmul_gflops(device: str = "cpu", n: int = 4096, repeats: int = 5) -> float:
    """Median GFLOP/s of an ``n x n`` float32 matrix product on ``device``."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    rates = []
    for i in range(repeats + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:  # the first run warms up
            rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)
