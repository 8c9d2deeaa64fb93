"""One configuration of ``metabridge bench cost``, measured in this process or in a fresh
child (``python -m metabridge.benchmarks._cost_measure --child CONFIG_JSON``).

The first step is the warm-up and gives the peak memory (:mod:`metabridge.peak_memory`: CPU
``VmHWM - VmRSS`` before it, after ``clear_refs``; CUDA ``max_memory_allocated`` minus the
memory allocated before), then ``warmup - 1`` more untimed steps, then ``steps`` timed ones.
"""

from __future__ import annotations

import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from ..peak_memory import peak_memory_mib, reset_peak_memory, status_kb
from ._cost_episodes import IMAGES_PER_CLASS, TRAIN_CLASSES, optimizer_for

_EVENT = "@cost "  # prefix of the child's progress lines on stdout


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _build(cfg: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The algorithm of ``cfg`` (on its device, in training mode), its outer optimizer and
    the episode sampler over synthetic data of its shape."""
    import torch

    from ..algorithms.registry import build_algorithm
    from ..tasks.episodes import EpisodeSampler
    from ._common import synthetic_dataset

    ep = cfg["episode"]
    torch.manual_seed(cfg["seed"])
    data = synthetic_dataset(TRAIN_CLASSES, IMAGES_PER_CLASS, cfg["image_size"], cfg["channels"], seed=cfg["seed"])
    sampler = EpisodeSampler(data, ep["way"], ep["shot"], ep["query"])
    model_kwargs: dict[str, Any] = {}
    if cfg["model"] == "conv4":
        model_kwargs["hidden"] = cfg["conv4_hidden"]
    elif cfg["model"] == "resnet12":
        model_kwargs["widths"] = tuple(cfg["resnet12_widths"])
    hp = dict(cfg["hparams"])
    if cfg["inner_steps"]:
        hp = {"inner_steps": cfg["inner_steps"], "inner_lr": cfg["inner_lr"], **hp}
    algo = build_algorithm(
        cfg["algorithm"],
        model=cfg["model"],
        n_way=ep["way"],
        in_channels=cfg["channels"],
        image_size=cfg["image_size"],
        num_train_classes=TRAIN_CLASSES,
        model_kwargs=model_kwargs,
        **hp,
    ).to(cfg["device"])
    algo.train()
    opt = optimizer_for(cfg["algorithm"], [p for p in algo.parameters() if p.requires_grad])
    return algo, opt, sampler


def _first_step_memory(device: str, step: Any, isolated: bool) -> tuple[float, dict[str, Any]]:
    """Run ``step`` once; its seconds and its peak memory (:mod:`metabridge.peak_memory`)."""
    before = reset_peak_memory(device)
    first = step()
    peak = peak_memory_mib(device, before)
    if device.startswith("cuda"):
        return first, {"peak_mib": peak, "how": "cuda max_memory_allocated - allocated before, first step"}
    if before is None or peak is None:
        return first, {"peak_mib": None, "how": "unavailable (no /proc/self/clear_refs)"}
    vmhwm = status_kb("VmHWM")
    return first, {
        "peak_mib": peak,
        "rss_before_mib": before / 1024,
        "vmhwm_mib": None if vmhwm is None else vmhwm / 1024,
        "how": "VmHWM - VmRSS before the first step (clear_refs=5)"
        + (", fresh process" if isolated else ", in this process: approximate"),
    }


def measure(cfg: dict[str, Any], on_event: Any = None) -> dict[str, Any]:
    """Build one configuration, run its steps, return its timings and peak memory.

    ``cfg``: the row of :func:`~metabridge.benchmarks._cost_episodes.configurations` plus
    ``steps``, ``warmup``, ``device``, ``max_seconds``, ``max_tasks``, ``seed``, ``conv4_hidden``,
    ``resnet12_widths``, ``hparams``, ``isolated``. ``on_event(name, **fields)`` is told ``ready``
    (before the first step) and ``first`` (after it).
    """
    import torch

    emit = on_event or (lambda *_a, **_k: None)
    device, ep = cfg["device"], cfg["episode"]
    algo, opt, sampler = _build(cfg)
    gen = torch.Generator().manual_seed(cfg["seed"])
    run_tasks = min(ep["meta_batch"], cfg["max_tasks"]) if cfg["max_tasks"] else ep["meta_batch"]

    def step() -> float:
        batch = sampler.sample(run_tasks, gen).to(device)
        _sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = algo.meta_loss(batch)
        loss.backward()
        opt.step()
        _sync(device)
        return time.perf_counter() - t0

    out: dict[str, Any] = {
        "parameters": sum(p.numel() for p in algo.parameters()),
        "tasks_run": run_tasks,
        "extrapolated": run_tasks < ep["meta_batch"],
    }
    try:
        emit("ready")
        first, memory = _first_step_memory(device, step, cfg["isolated"])
        out.update(first_step_s=first, memory=memory, peak_mib=memory.get("peak_mib"))
        emit("first", seconds=first)
        if cfg["max_seconds"] and first > cfg["max_seconds"]:
            out["status"] = f"skipped: too slow (first step {first:.1f} s > {cfg['max_seconds']:g} s)"
            return out
        if cfg["warmup"] == 0:  # the first step is a timed one
            times = [first] + [step() for _ in range(cfg["steps"] - 1)]
        else:
            for _ in range(cfg["warmup"] - 1):
                step()
            times = [step() for _ in range(cfg["steps"])]
    finally:
        algo.close()
    per_task = statistics.median(times) / run_tasks
    # with fewer tasks than the paper's meta-batch, s/step is s/task times the meta-batch
    out.update(
        status="ok",
        times_s=times,
        s_per_task=per_task,
        s_per_step=per_task * ep["meta_batch"],
        s_per_image=per_task * ep["meta_batch"] / cfg["images_per_step"],
    )
    return out


def _child_main(arg: str) -> None:
    cfg = json.loads(arg)
    if not cfg["device"].startswith("cuda") and cfg.get("allocator", True):
        from ..device import tune_cpu_allocator

        tune_cpu_allocator()

    def emit(name: str, **fields: Any) -> None:
        print(_EVENT + json.dumps({"event": name, **fields}), flush=True)

    result = measure(cfg, emit)
    print(_EVENT + json.dumps({"event": "done", "result": result}), flush=True)


def _child_command(cfg: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "metabridge.benchmarks._cost_measure", "--child", json.dumps(cfg)]


def measure_isolated(cfg: dict[str, Any], build_timeout: float = 600.0) -> dict[str, Any]:
    """:func:`measure` in a fresh ``python -m metabridge.benchmarks._cost_measure`` child.

    The child is stopped if its first step has not finished ``max_seconds`` after it began
    (recorded as skipped), and the error's last line is returned if it fails.
    """
    env = {
        **os.environ,
        "METABRIDGE_MALLOC_TUNING": os.environ.get("METABRIDGE_MALLOC_TUNING", "1")
        if cfg.get("allocator", True)
        else "0",
    }
    cmd = _child_command(cfg)
    events: queue.Queue = queue.Queue()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(_EVENT):
                    events.put(json.loads(line[len(_EVENT) :]))
            events.put(None)

        threading.Thread(target=read, daemon=True).start()

        def next_event(timeout: float | None) -> dict[str, Any] | None:
            try:
                return events.get(timeout=timeout)
            except queue.Empty:
                return {"event": "timeout"}

        max_s = cfg["max_seconds"] or None
        result: dict[str, Any] | None = None
        phase = "build"
        deadline: float | None = build_timeout  # seconds without an event before the child is stopped (None: never)
        while True:
            ev = next_event(deadline)
            if ev is None:
                break
            if ev["event"] == "timeout":
                proc.kill()
                proc.wait()
                if result is not None:  # measured, but slow to exit
                    return result
                if phase == "first step":
                    return {"status": f"skipped: too slow (first step > {max_s:g} s, stopped)"}
                return {"status": f"error: no progress for {deadline:.0f} s during the {phase} (stopped)"}
            if ev["event"] == "ready":
                phase, deadline = "first step", max_s
            elif ev["event"] == "first":
                # the remaining steps take about as long as the first each (a generous bound)
                phase, deadline = "timed steps", 120 + 3 * ev["seconds"] * (cfg["warmup"] + cfg["steps"])
            elif ev["event"] == "done":
                result = ev["result"]
                phase, deadline = "exit", 60
        proc.wait()
        if result is not None and proc.returncode == 0:
            return result
        err.seek(0)
        lines = err.read().strip().splitlines()
        if proc.returncode < 0:  # e.g. SIGKILL from the kernel's out-of-memory killer
            return {
                "status": f"error: killed by signal {-proc.returncode}"
                + (" (out of memory?)" if proc.returncode == -9 else "")
            }
        return {"status": f"error: {lines[-1] if lines else f'exit code {proc.returncode}'}"}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child_main(sys.argv[2])
    else:
        sys.exit(
            "usage: python -m metabridge.benchmarks._cost_measure --child CONFIG_JSON (use `metabridge bench cost`)"
        )
