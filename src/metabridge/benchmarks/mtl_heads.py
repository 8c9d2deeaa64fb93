"""MTL's per-class heads over a meta-batch: one ``torch.bmm`` (what ``algorithms/mtl.py``
does) against a Python loop of per-task products, forward + backward, on the
features a Conv-4 gives (5-way, 5 shots + 15 queries per class, D = 64 or 1600).

    python bench/mtl_heads.py
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F


def run(tasks: int = 32, per_task: int = 100, dim: int = 64, classes: int = 1200, repeats: int = 50) -> dict:
    """Median seconds of the batched and the looped head loss (forward + backward)."""
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(tasks, per_task, dim, generator=g, requires_grad=True)
    heads = torch.randn(classes, dim, generator=g, requires_grad=True)
    class_ids = torch.stack([torch.randperm(classes, generator=g)[:5] for _ in range(tasks)])
    y = torch.arange(5).repeat_interleave(per_task // 5).expand(tasks, -1)

    def batched() -> None:
        logits = torch.bmm(feats, heads[class_ids].transpose(1, 2))
        F.cross_entropy(logits.reshape(-1, 5), y.reshape(-1)).backward()

    def looped() -> None:
        loss = sum(F.cross_entropy(feats[t] @ heads[class_ids[t]].T, y[t]) for t in range(tasks)) / tasks
        loss.backward()

    out = {}
    for name, fn in (("bmm", batched), ("loop", looped)):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        out[name] = statistics.median(ts)
    return out


if __name__ == "__main__":
    for d in (64, 1600):
        r = run(dim=d)
        print(f"D={d}: one bmm {r['bmm'] * 1e3:.2f} ms, loop over 32 tasks {r['loop'] * 1e3:.2f} ms "
              f"({r['loop'] / r['bmm']:.1f}x)")
