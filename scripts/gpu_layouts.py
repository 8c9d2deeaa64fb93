"""Re-decide on CUDA the layout choices that were measured on the CPU.

On the CPU metabridge runs MAML's meta-batch one task per chunk in worker threads
(``ExecutionOptions(task_chunk="auto")``: 1 on CPU, ``None`` = all tasks in one grouped-
convolution network on GPU), grouped convolutions rather than a per-task loop or vmap, and
channels-last weights for the embedding methods. This times, on the GPU, one MAML
meta-iteration (Conv-4, 5-way 1-shot, meta-batch 32, 5 inner steps) for each
task-batching / layout variant with ``cudnn.benchmark`` off and on, and one MTL step
(880 images) with contiguous and channels-last weights, and writes the medians as JSON.

    python scripts/gpu_layouts.py --out experiments/gpu_check/results/layouts_cuda.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from metabridge.benchmarks._peer_impls import INNER_LR, build_step, make_problem

VARIANTS = [
    "metabridge",
    "metabridge:c1",
    "metabridge:c4",
    "metabridge:cl",
    "metabridge:vmap",
    "metabridge:loop",
    "metabridge:im2col",
]


def _median_seconds(fn, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def maml_variants(repeats: int) -> dict[str, dict[str, float]]:
    model, batch = make_problem(1, 32, 15, "cuda")
    out: dict[str, dict[str, float]] = {}
    for bench in (False, True):
        torch.backends.cudnn.benchmark = bench
        for lib in VARIANTS:
            step, _ = build_step(lib, model, batch, "maml", INNER_LR, 5)
            out.setdefault(lib, {})[f"cudnn_benchmark_{bench}"] = _median_seconds(step, repeats)
            print(f"maml {lib:>20} cudnn.benchmark={bench}: {out[lib][f'cudnn_benchmark_{bench}'] * 1e3:.1f} ms")
    torch.backends.cudnn.benchmark = False
    return out


def mtl_layouts(repeats: int) -> dict[str, float]:
    import metabridge as mb

    x = torch.randn(880, 1, 28, 28, device="cuda")
    y = torch.randint(0, 64, (880,), device="cuda")
    out = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        body = mb.build_model("conv4", 64).cuda()
        xx = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        if channels_last:
            body = body.to(memory_format=torch.channels_last)

        def step() -> None:
            loss = torch.nn.functional.cross_entropy(body(xx), y)
            loss.backward()

        out[f"channels_last_{channels_last}"] = _median_seconds(step, repeats)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out[f"channels_last_{channels_last}_bf16"] = _median_seconds(step, repeats)
        print(
            f"mtl-like Conv-4 step channels_last={channels_last}: "
            f"{out[f'channels_last_{channels_last}'] * 1e3:.1f} ms fp32, "
            f"{out[f'channels_last_{channels_last}_bf16'] * 1e3:.1f} ms bf16"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/gpu_check/results/layouts_cuda.json")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script re-decides GPU layouts and needs one.")
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "maml_1shot_meta_batch32_s": maml_variants(args.repeats),
        "conv4_880_images_step_s": mtl_layouts(args.repeats),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
