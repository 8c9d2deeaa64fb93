"""What one training step of each method costs: seconds per step, seconds per task and
peak memory of MTL, ProtoNet, MetaOptNet-SVM, MAML (1 and 5 inner steps) and first-order
MAML, with Conv-4 at 28 px and ResNet-12 at 32 and 84 px, 5-way 1- and 5-shot.

A step is what the trainer does per meta-batch: ``zero_grad``, ``meta_loss(batch)`` of the
real algorithm (built by :func:`~metabridge.algorithms.registry.build_algorithm`),
``backward``, ``optimizer.step()``. Each method runs with its own paper's episode sizes
(``--episodes paper``, table below), because that is what a cost claim compares: Wang et
al. (2021) compare total GPU-hours of MTL against MetaOptNet's own recipe, so a per-step
ratio here is one factor of such a claim (the number of steps to converge is the other,
and is not measured here). Meta-batches differ between recipes, so every row also gives
seconds per task (s/step over the meta-batch) and per image.

Episode sizes by method and regime (the regime is the image side: 28 px = Omniglot's
shape, 32 px = CIFAR-FS's, 84 px = mini-ImageNet's), always 5-way, K = the test shot:

========== ============================ ===================================================
method     meta-batch, shot, queries    source
========== ============================ ===================================================
MAML,      28 px: 32 tasks, K, K/class  Finn et al. 2017 Sec. 5.2; cbfinn/maml main.py usage
FOMAML     32/84 px: 4 tasks (1-shot),  (Omniglot: 1 step, alpha 0.4; query = K per class from
           2 (5-shot), K, 15/class      ``DataGenerator(update_batch_size*2)``; MiniImagenet:
                                        5 steps, alpha 0.01, 15 queries; the paper says 4 and
                                        2 tasks, main.py's usage line uses 4 for 5-shot too).
                                        CIFAR-FS is not in the paper: mini-ImageNet sizes.
                                        FOMAML is reported on MiniImagenet (5 steps).
ProtoNet   1 episode, K, 28 px: 5/class Snell et al. 2017 Sec. 3; jakesnell/prototypical-
           32/84 px: 15/class           networks run_train.py. Their training episodes have
                                        more classes (Omniglot 60-way, mini-ImageNet 30-way
                                        1-shot / 20-way 5-shot): recorded, and used with
                                        ``--episodes paper-way``; ``paper`` keeps 5-way.
MetaOptNet 8 episodes, 15-shot, 6/class kjunelee/MetaOptNet train.py defaults and README
                                        (mini-ImageNet ``--train-shot 15``; one embedding is
                                        trained for every test shot, so the 1- and 5-shot rows
                                        run the same step). Not verified for CIFAR-FS; the
                                        paper has no Omniglot: mini-ImageNet values used.
MTL        6 tasks, 5 + 5 images/class  AI-secure/multi-task-learning train.py
           (84 px 5-shot: 2 tasks;      (``--meta_batch_size 6``), lightning_episodic_module.py
           32 px 1-shot: 2 tasks,       (train_shots = train_queries = 5: MTL merges them) and
           5 + 15 images/class)         the README commands. No Omniglot in the paper: defaults.
========== ============================ ===================================================

``--episodes common`` gives every method K shots, 15 queries per class and 4 tasks. Outer
optimizers are the papers' (their cost is small beside the step): Adam 1e-3 for MAML,
FOMAML and ProtoNet, SGD 0.1 (Nesterov momentum 0.9, weight decay 5e-4) for MetaOptNet,
RAdam 1e-3 for MTL. MetaOptNet's label smoothing and MTL's one-task-per-forward gradient
accumulation (the official code's ``accumulate_grad_batches``; metabridge's MTL embeds the
meta-batch in one forward) are not reproduced: they change the loss, not the work.

Data: a synthetic uint8 :class:`ClassDataset` of the right shape (64 classes x 30 images,
mini-ImageNet's training class count), a fresh meta-batch each step, sampled outside the
timed region. Each configuration runs in a fresh subprocess (``--isolate``): the first step
is the warm-up and gives the peak memory (CPU: ``VmHWM - VmRSS`` before it, after
``clear_refs``, as ``_peak_memory.py``; CUDA: ``max_memory_allocated`` minus the memory
allocated before), then ``--warmup - 1`` more untimed steps, then ``--steps`` timed ones
(median reported). The first step includes the optimizer state it creates. A configuration
whose first step takes longer than ``--max-seconds-per-config`` is stopped and recorded as
skipped, one that fails (e.g. out of memory) as an error; the others go on.

On a small CPU, ResNet-12 at 84 px is the hard part. Measured on the 2-core development
machine (23 GiB, other work running beside it): one second-order MAML task with 5 inner
steps, 1-shot, 15 queries per class, took 130 s and 9.1 GiB, and the MAML family maps the
tasks of a ResNet-12 meta-batch with ``vmap`` (all at once), so the paper's 4 tasks would
need about 36 GiB.
``--max-tasks N`` runs N tasks per step and scales s/task up to the meta-batch (marked
``*``); ``--quick`` leaves 84 px out.

    metabridge bench cost --device cuda                    # everything, on a GPU
    metabridge bench cost --quick                          # Conv-4 28 px and ResNet-12 32 px
    metabridge bench cost --backbones resnet12@84 --max-tasks 1 --steps 1   # 84 px on a CPU

Writes cost_cpu.json (or cost_cuda.json), a PNG of s/step and a Markdown table (.md)
into ``--results-dir``.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..csv_options import parse_csv, parse_json_object
from ..peak_memory import status_kb

DEFAULT_METHODS = "mtl,protonet,metaoptnet,maml-1,maml-5,fomaml-5"
DEFAULT_BACKBONES = "conv4@28,resnet12@32,resnet12@84"
EPISODE_MODES = ("paper", "paper-way", "common")
N_WAY = 5
TRAIN_CLASSES = 64
IMAGES_PER_CLASS = 30
_EVENT = "@cost "  # prefix of the child's progress lines on stdout

LABELS = {"mtl": "MTL", "protonet": "ProtoNet", "metaoptnet": "MetaOptNet-SVM", "maml": "MAML", "fomaml": "FOMAML"}


# ------------------------------------------------------------------ options
@dataclass(frozen=True)
class Method:
    key: str  # as given: mtl, maml-5, ...
    algorithm: str  # registry name
    inner_steps: int | None  # MAML family only

    @property
    def label(self) -> str:
        base = LABELS[self.algorithm]
        return f"{base} ({self.inner_steps} step{'s' if self.inner_steps != 1 else ''})" if self.inner_steps else base


@dataclass(frozen=True)
class Backbone:
    model: str
    image_size: int
    channels: int

    @property
    def key(self) -> str:
        return f"{self.model}@{self.image_size}"

    @property
    def regime(self) -> str:
        """The benchmark whose image shape this is: Omniglot (<= 28 px), CIFAR-FS (<= 32 px),
        mini-ImageNet (larger)."""
        return "omniglot" if self.image_size <= 28 else "cifarfs" if self.image_size <= 32 else "miniimagenet"


def parse_methods(text: str) -> list[Method]:
    """``mtl,protonet,metaoptnet,maml-K,fomaml-K`` -> methods (ValueError naming the valid forms)."""
    out = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        m = re.fullmatch(r"(maml|fomaml)-(\d+)", item)
        if m and int(m.group(2)) >= 1:
            out.append(Method(item, m.group(1), int(m.group(2))))
        elif item in ("mtl", "protonet", "metaoptnet"):
            out.append(Method(item, item, None))
        else:
            raise ValueError(f"--methods: unknown method {item!r}; choose from mtl, protonet, metaoptnet, maml-K and "
                             f"fomaml-K (K inner steps >= 1), e.g. --methods {DEFAULT_METHODS}.")
    if not out:
        raise ValueError(f"--methods is empty; e.g. --methods {DEFAULT_METHODS}.")
    if len({m.key for m in out}) != len(out):
        raise ValueError(f"--methods names a method twice ({text!r}).")
    return out


def parse_backbones(text: str) -> list[Backbone]:
    """``NAME@SIZE[xC]`` items -> backbones; C defaults to 1 at 28 px or less (Omniglot) and 3 above."""
    from ..models import MODELS

    out = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_]+)@(\d+)(?:x(\d+))?", item)
        if not m or int(m.group(2)) < 1 or (m.group(3) is not None and int(m.group(3)) < 1):
            raise ValueError(f"--backbones takes NAME@SIZE[xCHANNELS] items, e.g. {DEFAULT_BACKBONES} (got {item!r}).")
        name, size = m.group(1), int(m.group(2))
        if name not in MODELS:
            raise ValueError(f"--backbones: unknown backbone {name!r}; registered: {', '.join(sorted(MODELS))}.")
        if name == "conv4" and size < 16:
            raise ValueError(f"--backbones: Conv-4 halves the image four times, so it needs at least 16 px "
                             f"(got {item!r}).")
        channels = int(m.group(3)) if m.group(3) else (1 if size <= 28 else 3)
        out.append(Backbone(name, size, channels))
    if not out:
        raise ValueError(f"--backbones is empty; e.g. --backbones {DEFAULT_BACKBONES}.")
    if len({b.key for b in out}) != len(out):
        raise ValueError(f"--backbones names a backbone twice ({text!r}).")
    return out


def parse_hparams(text: str, methods: list[Method]) -> dict[str, dict[str, Any]]:
    """``--hparams`` JSON: ``{method key or algorithm name: {hyperparameter: value}}``."""
    value = parse_json_object(text, "--hparams", '{"mtl": {"C": 3.0}}')
    names = {m.key for m in methods} | {m.algorithm for m in methods}
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("--hparams takes a JSON object of objects, e.g. '{\"mtl\": {\"C\": 3.0}}'.")
    unknown = sorted(set(value) - names)
    if unknown:
        raise ValueError(f"--hparams names {', '.join(unknown)}, not among --methods ({', '.join(sorted(names))}).")
    return value


# ------------------------------------------------------------------ episode sizes
def episode(method: Method, backbone: Backbone, shot: int, mode: str) -> dict[str, Any]:
    """Training episode of ``method`` for a K-shot benchmark in ``backbone``'s regime.

    ``{"way", "shot", "query", "meta_batch", "source"}`` plus ``"paper_way"`` where the
    paper trains with more classes and ``"note"`` where a value is not the paper's own.
    """
    reg = backbone.regime
    if mode == "common":
        return {"way": N_WAY, "shot": shot, "query": 15, "meta_batch": 4, "source": "common choice (--episodes common)"}
    algo = method.algorithm
    if algo in ("maml", "fomaml"):
        if reg == "omniglot":
            ep = {"way": N_WAY, "shot": shot, "query": shot, "meta_batch": 32,
                  "source": "Finn et al. 2017 Sec. 5.2 (Omniglot 5-way: meta-batch 32, 1 step, alpha 0.4); "
                            "cbfinn/maml main.py: update_batch_size*2 images per class (query = K)"}
        else:
            ep = {"way": N_WAY, "shot": shot, "query": 15, "meta_batch": 4 if shot == 1 else 2,
                  "source": "Finn et al. 2017 Sec. 5.2 (MiniImagenet: 5 steps, alpha 0.01, 15 queries per class, "
                            "meta-batch 4 at 1-shot and 2 at 5-shot; main.py's usage line: 4 for both)"}
            if reg == "cifarfs":
                ep["note"] = "CIFAR-FS is not in Finn et al.: mini-ImageNet sizes"
        if algo == "fomaml" and reg == "omniglot":
            ep["note"] = "Finn et al. report first-order MAML on MiniImagenet only: Omniglot sizes of MAML"
        return ep
    if algo == "protonet":
        query = 5 if reg == "omniglot" else 15
        paper_way = 60 if reg == "omniglot" else (30 if shot == 1 else 20)
        ep = {"way": paper_way if mode == "paper-way" else N_WAY, "shot": shot, "query": query, "meta_batch": 1,
              "paper_way": paper_way,
              "source": "Snell et al. 2017 Sec. 3.1-3.2; jakesnell/prototypical-networks run_train.py "
                        "(one episode per update; Omniglot 60-way 5 queries, mini-ImageNet 30-/20-way 15 queries)"}
        if reg == "cifarfs":
            ep["note"] = "CIFAR-FS is not in Snell et al.: mini-ImageNet sizes"
        return ep
    if algo == "metaoptnet":
        ep = {"way": N_WAY, "shot": 15, "query": 6, "meta_batch": 8,
              "source": "kjunelee/MetaOptNet train.py defaults (--episodes-per-batch 8, --train-query 6) and README "
                        "(mini-ImageNet --train-shot 15, one embedding for every test shot)"}
        if reg != "miniimagenet":
            ep["note"] = ("not verified for CIFAR-FS; no Omniglot in Lee et al.: mini-ImageNet values"
                          if reg == "cifarfs" else "no Omniglot in Lee et al.: mini-ImageNet values")
        return ep
    # MTL: train_shots + train_queries images per class, merged into one loss.
    shots_q, batch = (5, 5), 6
    if reg == "miniimagenet" and shot == 5:
        batch = 2
    if reg == "cifarfs" and shot == 1:
        shots_q, batch = (5, 15), 2
    ep = {"way": N_WAY, "shot": shots_q[0], "query": shots_q[1], "meta_batch": batch,
          "source": "AI-secure/multi-task-learning train.py (--meta_batch_size 6), lightning_episodic_module.py "
                    "(train_shots = train_queries = 5) and README commands (mini-ImageNet 5-shot: meta-batch 2; "
                    "CIFAR-FS 1-shot: --train_queries 15 --meta_batch_size 2)"}
    if reg == "omniglot":
        ep["note"] = "no Omniglot in Wang et al.: their code's defaults"
    return ep


def inner_lr(backbone: Backbone) -> float:
    """Finn et al.'s alpha: 0.4 on Omniglot, 0.01 on MiniImagenet (it does not change the cost)."""
    return 0.4 if backbone.regime == "omniglot" else 0.01


def optimizer_for(algorithm: str, params: Any) -> Any:
    """Each paper's outer optimizer (module docstring)."""
    import torch

    if algorithm == "metaoptnet":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    if algorithm == "mtl":
        return torch.optim.RAdam(params, lr=1e-3)
    return torch.optim.Adam(params, lr=1e-3)


# ------------------------------------------------------------------ one configuration
def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(cfg: dict[str, Any], on_event: Any = None) -> dict[str, Any]:
    """Build one configuration, run its steps, return its timings and peak memory.

    ``cfg``: the row of :func:`configurations` plus ``steps``, ``warmup``, ``device``,
    ``max_seconds``, ``max_tasks``, ``seed``, ``conv4_hidden``, ``resnet12_widths``,
    ``hparams``, ``isolated``. ``on_event(name, **fields)`` is told ``ready`` (before the first step)
    and ``first`` (after it).
    """
    import torch

    from ..algorithms.registry import build_algorithm
    from ..tasks.episodes import EpisodeSampler
    from ._common import synthetic_dataset

    emit = on_event or (lambda *_a, **_k: None)
    device, ep = cfg["device"], cfg["episode"]
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
    algo = build_algorithm(cfg["algorithm"], model=cfg["model"], n_way=ep["way"], in_channels=cfg["channels"],
                           image_size=cfg["image_size"], num_train_classes=TRAIN_CLASSES,
                           model_kwargs=model_kwargs, **hp).to(device)
    algo.train()
    opt = optimizer_for(cfg["algorithm"], [p for p in algo.parameters() if p.requires_grad])
    gen = torch.Generator().manual_seed(cfg["seed"])
    n_params = sum(p.numel() for p in algo.parameters())

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

    out: dict[str, Any] = {"parameters": n_params, "tasks_run": run_tasks, "extrapolated": run_tasks < ep["meta_batch"]}
    memory: dict[str, Any] = {}
    cuda = device.startswith("cuda")
    try:
        emit("ready")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                before = status_kb("VmRSS")
            except OSError:
                before = None
        first = step()
        if cuda:
            memory = {"peak_mib": (torch.cuda.max_memory_allocated() - before) / 2**20,
                      "how": "cuda max_memory_allocated - allocated before, first step"}
        elif before is not None and (peak := status_kb("VmHWM")) is not None:
            memory = {"peak_mib": (peak - before) / 1024, "rss_before_mib": before / 1024, "vmhwm_mib": peak / 1024,
                      "how": "VmHWM - VmRSS before the first step (clear_refs=5)"
                             + (", fresh process" if cfg["isolated"] else ", in this process: approximate")}
        else:
            memory = {"peak_mib": None, "how": "unavailable (no /proc/self/clear_refs)"}
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
    out.update(status="ok", times_s=times, s_per_task=per_task, s_per_step=per_task * ep["meta_batch"],
               s_per_image=per_task * ep["meta_batch"] / cfg["images_per_step"])
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
    return [sys.executable, "-m", "metabridge.benchmarks.cost", "--child", json.dumps(cfg)]


def measure_isolated(cfg: dict[str, Any], build_timeout: float = 600.0) -> dict[str, Any]:
    """:func:`measure` in a fresh ``python -m metabridge.benchmarks.cost`` child.

    The child is stopped if its first step has not finished ``max_seconds`` after it began
    (recorded as skipped), and the error's last line is returned if it fails.
    """
    env = {**os.environ, "METABRIDGE_MALLOC_TUNING": os.environ.get("METABRIDGE_MALLOC_TUNING", "1")
           if cfg.get("allocator", True) else "0"}
    cmd = _child_command(cfg)
    events: queue.Queue = queue.Queue()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(_EVENT):
                    events.put(json.loads(line[len(_EVENT):]))
            events.put(None)

        threading.Thread(target=read, daemon=True).start()

        def next_event(timeout: float | None) -> dict[str, Any] | None:
            try:
                return events.get(timeout=timeout)
            except queue.Empty:
                return {"event": "timeout"}

        max_s = cfg["max_seconds"] or None
        result: dict[str, Any] | None = None
        phase, deadline = "build", build_timeout
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
            return {"status": f"error: killed by signal {-proc.returncode}"
                              + (" (out of memory?)" if proc.returncode == -9 else "")}
        return {"status": f"error: {lines[-1] if lines else f'exit code {proc.returncode}'}"}


# ------------------------------------------------------------------ the whole table
def configurations(methods: list[Method], backbones: list[Backbone], shots: list[int], mode: str) -> list[dict]:
    """One row per backbone x shot x method, with its episode sizes."""
    rows = []
    for bb in backbones:
        for k in shots:
            for m in methods:
                ep = episode(m, bb, k, mode)
                rows.append({"backbone": bb.key, "model": bb.model, "image_size": bb.image_size,
                             "channels": bb.channels, "regime": bb.regime, "shots": k, "method": m.key,
                             "label": m.label, "algorithm": m.algorithm, "inner_steps": m.inner_steps,
                             "inner_lr": inner_lr(bb) if m.inner_steps else None, "episode": ep,
                             "images_per_step": ep["meta_batch"] * ep["way"] * (ep["shot"] + ep["query"])})
    return rows


def add_ratios(rows: list[dict[str, Any]], reference: str = "mtl") -> None:
    """``x_mtl_step`` / ``x_mtl_task``: each row's s/step and s/task over MTL's on the same
    backbone and shot (``None`` where either was not measured)."""
    ref = {(r["backbone"], r["shots"]): r for r in rows if r["method"] == reference and r.get("status") == "ok"}
    for r in rows:
        base = ref.get((r["backbone"], r["shots"]))
        ok = base is not None and r.get("status") == "ok"
        r["x_mtl_step"] = r["s_per_step"] / base["s_per_step"] if ok else None
        r["x_mtl_task"] = r["s_per_task"] / base["s_per_task"] if ok else None


def _fmt(v: Any, spec: str, suffix: str = "") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:{spec}}{suffix}"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: episode, s/step and s/task with their ratio to MTL, peak MiB.

    An s/step scaled up from fewer tasks (``--max-tasks``) carries a ``*``, and its peak
    memory the number of tasks it was measured with."""
    head = ["backbone", "shot", "method", "tasks x (way x (shot+query))", "s/step", "x MTL", "s/task", "x MTL",
            "peak MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ep = r["episode"]
        ok = r.get("status") == "ok"
        star = "*" if r.get("extrapolated") else ""
        peak = _fmt(r.get("peak_mib"), ".0f")
        if r.get("extrapolated") and peak != "-":
            peak += f" ({r['tasks_run']} task{'s' if r['tasks_run'] > 1 else ''})"
        cells = [r["backbone"], str(r["shots"]), r["label"],
                 f"{ep['meta_batch']} x ({ep['way']} x ({ep['shot']}+{ep['query']}))",
                 _fmt(r.get("s_per_step"), ".3f", star) if ok else r.get("status", "-"),
                 _fmt(r.get("x_mtl_step"), ".2f", "x"), _fmt(r.get("s_per_task"), ".3f") if ok else "-",
                 _fmt(r.get("x_mtl_task"), ".2f", "x"), peak]
        lines.append("| " + " | ".join(cells) + " |")
    if any(r.get("extrapolated") for r in rows):
        lines.append("\n\\* s/task measured with fewer tasks (--max-tasks) times the meta-batch.")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, episodes: str = "paper") -> None:
    """s/step by method per backbone (log scale), one panel per shot; skipped ones marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = sorted({r["shots"] for r in rows})
    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    labels = {r["method"]: r["label"] for r in rows}
    fig, axes = plt.subplots(1, len(shots), figsize=(max(4.0, 1.1 * len(backbones) * len(methods) / 2) * len(shots),
                                                     4.2), squeeze=False, sharey=True)
    width = 0.8 / len(methods)
    cell = {(r["backbone"], r["shots"], r["method"]): r for r in rows}
    for ax, k in zip(axes[0], shots):
        labelled: set[str] = set()
        for j, m in enumerate(methods):
            for i, bb in enumerate(backbones):
                r = cell.get((bb, k, m))
                x = i + (j - (len(methods) - 1) / 2) * width
                if r is not None and r.get("status") == "ok":
                    ax.bar(x, r["s_per_step"], width, color=f"C{j}", label=None if m in labelled else labels[m])
                    labelled.add(m)
                elif r is not None:
                    ax.text(x, 0.02, "skipped" if str(r.get("status")).startswith("skipped") else "error",
                            rotation=90, ha="center", va="bottom", fontsize=6, transform=ax.get_xaxis_transform())
        ax.set_xticks(range(len(backbones)), backbones, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("seconds per training step (median)")
        sizes = {"paper": "each method's paper episode sizes", "paper-way": "paper episode sizes and ways",
                 "common": "15 queries, 4 tasks for all"}[episodes]
        ax.set_title(f"5-way {k}-shot, {sizes}", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(methods: str = DEFAULT_METHODS, backbones: str = DEFAULT_BACKBONES, shots: str = "1,5",
         episodes: str = "paper", steps: int = 3, warmup: int = 1, device: str = "cpu", quick: bool = False,
         max_seconds_per_config: float = 600.0, max_tasks: int = 0, isolate: bool = True, allocator: bool = True,
         conv4_hidden: int = 64, resnet12_widths: str = "64,160,320,640", hparams: str = "", seed: int = 0,
         results_dir: str = "bench/results") -> dict[str, Any]:
    """Seconds per training step, per task and peak memory of each method, backbone and shot.

    Args:
        methods: comma-separated mtl, protonet, metaoptnet (SVM head), maml-K and fomaml-K
            (K inner SGD steps; second- and first-order MAML).
        backbones: comma-separated NAME@SIZE[xCHANNELS] (a registered backbone at SIZE px;
            channels default to 1 at 28 px or less and 3 above). The size sets the regime
            whose paper episode sizes are used: 28 px Omniglot, 32 px CIFAR-FS, larger mini-ImageNet.
        shots: comma-separated K of the 5-way K-shot benchmarks.
        episodes: paper (each method's paper meta-batch, shots and queries, 5-way; see the
            module docstring), paper-way (the same with ProtoNet's larger training way) or
            common (every method K shots, 15 queries per class, 4 tasks).
        steps: timed training steps per configuration (the median is reported).
        warmup: untimed steps first (the first step, timed separately, also gives the peak
            memory); 0 times the first step too.
        device: cpu or cuda.
        quick: leave out every backbone above 32 px (ResNet-12 at 84 px takes minutes per
            MAML step on 2 CPU cores).
        max_seconds_per_config: stop a configuration whose first step takes longer than this
            and record it as skipped; 0 for no limit.
        max_tasks: run at most this many tasks per step and report s/step as s/task times
            the paper's meta-batch (marked extrapolated; the peak memory is that of the smaller
            step); 0 runs the whole meta-batch. For CPUs: ResNet-12 at 84 px holds about 9 GiB
            per MAML-5 task.
        isolate: run each configuration in a fresh subprocess (exact peak memory, no cached
            memory from the previous one); --no-isolate runs them in this process (memory approximate).
        allocator: on CPU, tune glibc's allocator in each child as the trainer does
            (metabridge.device.tune_cpu_allocator); --no-allocator keeps glibc's defaults.
        conv4_hidden: Conv-4 filters per block (64: Finn et al.'s Omniglot, Snell et al.).
        resnet12_widths: comma-separated widths of ResNet-12's four blocks.
        hparams: JSON object of extra hyperparameters per method key or algorithm name,
            e.g. '{"mtl": {"C": 3.0}}' (merged into build_algorithm's keywords).
        seed: seed of the synthetic data, the models and the episodes.
        results_dir: where cost_cpu.json (or cost_cuda.json), its .png and .md are written.
    """
    method_list = parse_methods(methods)
    bb_list = parse_backbones(backbones)
    if quick:
        bb_list = [b for b in bb_list if b.image_size <= 32]
        if not bb_list:
            raise ValueError(f"--quick leaves out every backbone above 32 px, and {backbones!r} has no other; "
                             "drop --quick or add e.g. conv4@28.")
    shot_list = parse_csv(shots, "--shots", positive=True, example="1,5")
    if episodes not in EPISODE_MODES:
        raise ValueError(f"--episodes must be one of {', '.join(EPISODE_MODES)} (got {episodes!r}).")
    if steps < 1 or warmup < 0:
        raise ValueError(f"--steps must be >= 1 and --warmup >= 0 (got {steps}, {warmup}).")
    if not max_seconds_per_config >= 0:
        raise ValueError(f"--max-seconds-per-config must be >= 0, 0 for no limit (got {max_seconds_per_config}).")
    if max_tasks < 0:
        raise ValueError(f"--max-tasks must be >= 0, 0 for the whole meta-batch (got {max_tasks}).")
    if conv4_hidden < 1:
        raise ValueError(f"--conv4-hidden must be >= 1 (got {conv4_hidden}).")
    widths = parse_csv(resnet12_widths, "--resnet12-widths", positive=True, example="64,160,320,640")
    if len(widths) != 4:
        raise ValueError(f"--resnet12-widths takes four widths, e.g. 64,160,320,640 (got {resnet12_widths!r}).")
    hp = parse_hparams(hparams, method_list)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
        raise ValueError(f"--device must be cpu or cuda (got {device!r}).")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is visible here; use --device cpu.")
    need = max(r["episode"]["shot"] + r["episode"]["query"] for r in configurations(method_list, bb_list, shot_list,
                                                                                     episodes))
    if need > IMAGES_PER_CLASS:
        raise ValueError(f"an episode needs {need} images per class, the synthetic data has {IMAGES_PER_CLASS}; "
                         "lower --shots.")

    from ._common import machine

    info = machine(device)
    rows = configurations(method_list, bb_list, shot_list, episodes)
    t_start = time.perf_counter()
    for r in rows:
        extra = {**hp.get(r["algorithm"], {}), **hp.get(r["method"], {})}
        cfg = {**r, "steps": steps, "warmup": warmup, "device": device, "max_seconds": max_seconds_per_config,
               "max_tasks": max_tasks,
               "seed": seed, "conv4_hidden": conv4_hidden, "resnet12_widths": widths, "hparams": extra,
               "isolated": isolate, "allocator": allocator}
        r["hparams"] = extra
        t0 = time.perf_counter()
        try:
            res = measure_isolated(cfg) if isolate else measure(cfg)
        except Exception as exc:  # one failing configuration must not lose the others
            res = {"status": f"error: {type(exc).__name__}: {exc}"}
        r.update(res)
        r["wall_s"] = time.perf_counter() - t0
        shown = f"{r['s_per_step']:.3f} s/step, {r['s_per_task']:.3f} s/task" if r["status"] == "ok" else r["status"]
        mem = f", peak {r['peak_mib']:.0f} MiB" if isinstance(r.get("peak_mib"), float) else ""
        print(f"{r['backbone']} {r['shots']}-shot {r['label']}: {shown}{mem}", flush=True)
    add_ratios(rows)
    info["loadavg_end"] = os.getloadavg()
    result = {
        "settings": {"n_way": N_WAY, "shots": shot_list, "episodes": episodes, "steps": steps, "warmup": warmup,
                     "device": device, "statistic": "median", "isolated": isolate,
                     "cpu_allocator_tuned": kind == "cpu" and allocator and isolate,
                     "max_seconds_per_config": max_seconds_per_config, "max_tasks": max_tasks,
                     "backbones": [asdict(b) | {"regime": b.regime} for b in bb_list],
                     "conv4_hidden": conv4_hidden, "resnet12_widths": widths, "seed": seed,
                     "data": f"synthetic uint8, {TRAIN_CLASSES} classes x {IMAGES_PER_CLASS} images, "
                             "a fresh meta-batch per step, sampled outside the timed region",
                     "step": "zero_grad + meta_loss + backward + optimizer.step (the papers' optimizers)",
                     "wall_s": time.perf_counter() - t_start},
        "machine": info, "rows": rows,
    }
    out = Path(results_dir) / f"cost_{kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    md = table(rows)
    head = (f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}"
            + (f", {info['gpu']}" if "gpu" in info else "") + f"; {steps} timed steps after {warmup} warm-up, median.")
    out.with_suffix(".md").write_text(head + "\n\n" + md + "\n")
    plot(rows, out.with_suffix(".png"), episodes)
    print(md)
    print(head)
    print(f"wrote {out}, {out.with_suffix('.png')} and {out.with_suffix('.md')}")
    return result


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child_main(sys.argv[2])
    else:
        sys.exit("usage: python -m metabridge.benchmarks.cost --child CONFIG_JSON (use `metabridge bench cost`)")
