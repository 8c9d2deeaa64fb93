"""metabridge's side of ``metabridge bench mtl_cost``: the cost of one training step of one
weighting method, in its own process.

Usage (internal): ``python -m metabridge.benchmarks._mtl_cost_worker SPEC_JSON``; the last
stdout line starting with ``@@MTLCOST`` holds the result. SPEC has ``method`` (a registered
weighting name), ``kwargs``, ``num_tasks``, ``in_dim``, ``hidden``, ``out_dim``, ``batch``,
``seed``, ``warmup``, ``steps``, ``threads``, ``lr``, ``device``.

One step is what :func:`metabridge.multitask.trainer.train_multitask` does per minibatch:
``zero_grad``, forward of the hard-sharing model, the K mean-squared errors,
:func:`~metabridge.multitask.weighting.weighted_backward`, ``Adam.step()`` (over the model's
and the method's parameters) and ``weighting.after_step`` (FAMO's extra forward). The model and
the batch are built from ``seed`` exactly as ``_libmtl_worker.py`` builds LibMTL's.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

MARK = "@@MTLCOST "


def _set_history(weighting: Any, losses: Any) -> None:
    """Put DWA past its two warm-up epochs (ratios of 1), as LibMTL's DWA is put at epoch 2, so
    that both run the softmax path."""
    import torch

    if type(weighting).__name__ == "DynamicWeightAverage":
        with torch.no_grad():
            weighting.last_avg.fill_(1.0)
            weighting.previous_avg.fill_(1.0)
            weighting.epochs_done.fill_(2)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from ..multitask.models.registry import build_mtl_model
    from ..multitask.weighting import build_weighting, weighted_backward

    threads = int(spec["threads"])
    if threads > 0:
        torch.set_num_threads(threads)
    device = spec.get("device", "cpu")
    k = int(spec["num_tasks"])
    torch.manual_seed(int(spec["seed"]))
    model = build_mtl_model(
        "hard_sharing",
        input_kind="vector",
        input_shape=(int(spec["in_dim"]),),
        out_dims=[1] * k,
        encoder_hidden=tuple(int(h) for h in spec["hidden"]),
        encoder_out_dim=int(spec["out_dim"]),
    ).to(device)
    weighting = build_weighting(spec["method"], k, **spec.get("kwargs", {})).to(device)
    g = torch.Generator().manual_seed(int(spec["seed"]))
    x = torch.randn(int(spec["batch"]), int(spec["in_dim"]), generator=g).to(device)
    y = torch.randn(int(spec["batch"]), k, generator=g).to(device)
    opt = torch.optim.Adam(list(model.parameters()) + list(weighting.parameters()), lr=float(spec["lr"]))
    shared = list(model.shared_parameters())
    task_params = list(model.task_parameters())

    def losses_of(out: Any) -> torch.Tensor:
        preds = torch.cat(out.predictions, dim=1)
        return ((preds - y) ** 2).mean(dim=0)

    with torch.no_grad():
        _set_history(weighting, losses_of(model(x)))

    def recompute() -> torch.Tensor:
        with torch.no_grad():
            return losses_of(model(x))

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        out = model(x)
        losses = losses_of(out)
        weighted_backward(weighting, losses, shared, task_params, features=out.features, step=i)
        opt.step()
        weighting.after_step(recompute)

    times = []
    for i in range(int(spec["warmup"]) + int(spec["steps"])):
        sync()
        t0 = time.perf_counter()
        step(i)
        sync()
        if i >= int(spec["warmup"]):
            times.append(time.perf_counter() - t0)
    return {
        "status": "ok",
        "ms_per_step": 1e3 * statistics.median(times),
        "steps_ms": [1e3 * t for t in times],
        "shared_params": sum(p.numel() for p in shared),
        "needs": str(weighting.needs).split(".")[-1],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m metabridge.benchmarks._mtl_cost_worker SPEC_JSON\n")
        return 2
    spec = json.loads(argv[1])
    try:
        result = run(spec)
    except Exception as exc:  # noqa: BLE001 - reported to the caller, which records it
        import traceback

        traceback.print_exc()
        last = str(exc).strip().splitlines()
        result = {"status": f"error: {type(exc).__name__}: {last[-1] if last else ''}"}
    print(MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
