"""Does ``torch.compile`` pay for Conv-4 training steps? (Measure, keep what wins.)

Times one forward + backward of the Conv-4 body on one meta-batch of glyph episodes
(16 tasks x 5-way x (1 support + 10 query) = 880 images of 28x28x1, the ``compare``
MTL step) in three forms: eager NCHW, eager channels-last (metabridge's default for
embedding methods), and ``torch.compile`` (inductor) of the channels-last model.
It also records whether a second-order MAML step (a backward through a
``create_graph=True`` gradient) runs through the compiled model at all.

    metabridge bench torch_compile --threads 2 --repeats 5

Writes torch_compile_cpu.json and config.json into ``--out``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from ..config import CommandConfig
from ..device import tune_cpu_allocator
from ..machine_info import machine
from ..models.conv4 import Conv4Backbone


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, heads: torch.Tensor) -> None:
    """The MTL loss of ``algorithms/mtl.py`` in miniature: normalized features, class-row logits."""
    f = F.normalize(model(x).flatten(1), dim=-1)
    loss = F.cross_entropy(f @ heads.t(), y)
    loss.backward()


def _time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, heads: torch.Tensor, repeats: int) -> list[float]:
    """Seconds of ``repeats`` steps after two untimed ones."""
    for _ in range(2):  # warm-up (and, for the compiled model, compilation)
        _step(model, x, y, heads)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _step(model, x, y, heads)
        out.append(time.perf_counter() - t0)
    return out


def _second_order_works(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, heads: torch.Tensor) -> str:
    """One MAML-style inner step with create_graph=True, then the outer backward."""
    try:
        params = dict(model.named_parameters())
        f = F.normalize(model(x[:55]).flatten(1), dim=-1)
        g = torch.autograd.grad(F.cross_entropy(f @ heads.t(), y[:55]), list(params.values()), create_graph=True)
        sum((gi * gi).sum() for gi in g).backward()  # type: ignore[union-attr]  # a sum of tensors
        return "ok"
    except Exception as exc:  # report, do not hide: this is what the benchmark measures
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


class TorchCompileConfig(CommandConfig):
    """Settings of ``metabridge bench torch_compile``: median seconds of one Conv-4
    forward+backward, eager, channels-last and compiled."""

    out: Path = Field(Path("runs/bench/torch_compile"), description="Folder of torch_compile_cpu.json and config.json.")
    threads: int = Field(2, ge=1, description="Torch CPU threads while timing (restored after).")
    repeats: int = Field(
        5, ge=1, description="Timed steps of each form after two warm-up steps (the median is reported)."
    )
    meta_batch: int = Field(
        16, ge=1, description="Tasks of 5-way episodes with 1 support + 10 queries per class (880 images at 16)."
    )
    allocator: bool = Field(
        True,
        description=(
            "Apply metabridge.device.tune_cpu_allocator (as metabridge's trainer does) for the whole process "
            "first; --no-allocator measures glibc's defaults."
        ),
    )


CONFIG = TorchCompileConfig


def _measure(config: TorchCompileConfig) -> dict[str, Any]:
    """The three forms timed, the compile time and the second-order check."""
    torch.manual_seed(0)
    n = config.meta_batch * 5 * 11
    x = torch.randn(n, 1, 28, 28)
    y = torch.randint(0, 5, (n,))
    heads = torch.randn(5, 64, requires_grad=True)
    eager = Conv4Backbone(1)
    times = {"eager": _time(eager, x, y, heads, config.repeats)}
    cl = Conv4Backbone(1).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    cl.load_state_dict(eager.state_dict())
    times["eager_channels_last"] = _time(cl, x, y, heads, config.repeats)
    compiled: Any = torch.compile(Conv4Backbone(1).to(memory_format=torch.channels_last))  # type: ignore[call-overload]
    t0 = time.perf_counter()
    _step(compiled, x, y, heads)
    compile_s = time.perf_counter() - t0
    times["compiled_channels_last"] = _time(compiled, x, y, heads, config.repeats)
    return {
        "images": n,
        "times_s": times,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "compile_seconds_first_call": compile_s,
        "second_order_through_compiled": _second_order_works(compiled, x, y, heads),
    }


def run(config: TorchCompileConfig) -> dict[str, Any]:
    """Median seconds of one Conv-4 forward+backward: eager, channels-last, compiled; writes
    ``torch_compile_cpu.json`` into ``config.out``."""
    config.write_resolved()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        tuned = bool(tune_cpu_allocator()) if config.allocator else False
        info = machine("cpu")  # with this run's thread count
        m = _measure(config)
    finally:
        torch.set_num_threads(threads)
    result = {
        "what": "one Conv-4 forward+backward, MTL loss, 28x28x1",
        "images": m["images"],
        "threads": config.threads,
        "repeats": config.repeats,
        "cpu_allocator_tuned": tuned,
        "times_s": m["times_s"],
        "median_s": m["median_s"],
        "compile_seconds_first_call": m["compile_seconds_first_call"],
        "second_order_through_compiled": m["second_order_through_compiled"],
        "machine": {**info, "loadavg_end": os.getloadavg()},
    }
    out = Path(config.out) / "torch_compile_cpu.json"
    out.write_text(json.dumps(result, indent=1))
    for k, v in result["median_s"].items():
        print(f"{k:24s} {v:.3f} s")
    print(
        f"first compiled call {result['compile_seconds_first_call']:.1f} s; second order through compiled: "
        f"{result['second_order_through_compiled']}\nwrote {out}"
    )
    return result
