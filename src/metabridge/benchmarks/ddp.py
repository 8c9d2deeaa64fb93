"""Data-parallel training throughput: one process against ``torchrun --nproc-per-node W``.

Trains the same run (default: MTL, Wang et al. 2021, on the glyphs benchmark, 5-way
1-shot 10-query episodes, meta-batch 16, so 880 images per step) three ways, each for
``steps`` steps from the same seed with no validation or checkpoints in between:

* ``1 process x T threads`` (T = the cores: what one process gets on the machine);
* ``1 process x 1 thread`` (one rank's share of the machine, for per-rank efficiency);
* ``W processes x 1 thread`` under torchrun (gloo on the CPU), the meta-batch split
  ``16 / W`` per rank and the gradients averaged by one all-reduce per step.

From each run's ``metrics.jsonl`` it reads the steps per second of the steady windows
(the first ``skip`` steps are start-up) and reports images per second
(``steps/s x images per step``) and, for the distributed run, each rank's mean
all-reduce wall time per step (``comm_s_per_step``: the gradient payload's travel plus
waiting for the slower rank). On W cores shared by W ranks no speed-up is possible;
what transfers to a cluster is the per-rank compute time and the communication time of
this payload size (its bytes are reported), from which the scaling can be estimated:
``t_step(W) ~ t_compute / W + t_comm``. Writes ddp_cpu.json, ddp_cpu.png and config.json
into ``--out``.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..config import CommandConfig
from ..machine_info import machine


def _train_args(algorithm: str, dataset: str, steps: int, meta_batch: int, out: Path, log_every: int) -> list[str]:
    """The ``metabridge train`` options of one run."""
    return [
        "train",
        "--algorithm",
        algorithm,
        "--task",
        dataset,
        "--n-way",
        "5",
        "--k-shot",
        "1",
        "--q-query",
        "10",
        "--meta-batch-size",
        str(meta_batch),
        "--steps",
        str(steps),
        "--eval-every",
        "0",
        "--checkpoint-every",
        "0",
        "--log-every",
        str(log_every),
        "--optimizer",
        "radam",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
        "--overwrite",
    ]


def _run(cmd: list[str], threads: int, timeout: float | None) -> float:
    """Run ``cmd`` with ``threads`` OpenMP threads; its wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def _steady(run_dir: Path, skip: int) -> dict[str, Any]:
    """Steps/s and communication time over the training records after step ``skip``."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in records if r.get("kind") == "train"]
    later = [r for r in train if r["step"] > skip]
    if len(later) < 2:
        raise RuntimeError(f"{run_dir}: too few training records after step {skip}; raise --steps.")
    first, last = later[0], later[-1]
    seconds = last["train_seconds"] - first["train_seconds"]
    out: dict[str, Any] = {
        "steps_per_s": (last["step"] - first["step"]) / seconds,
        "window_steps": last["step"] - first["step"],
    }
    if "comm_s_per_step" in last:
        ranks = len(last["comm_s_per_step"])
        out["comm_s_per_step"] = [
            sum(r["comm_s_per_step"][k] for r in later[1:]) / len(later[1:]) for k in range(ranks)
        ]
    return out


def _payload_bytes(algorithm: str, dataset: str) -> int:
    """Bytes of the flat all-reduce tensor: trainable parameters + float buffers, float32."""
    from ..config import ExperimentConfig
    from ..experiment import build_experiment

    exp = build_experiment(
        ExperimentConfig(task=dataset, algorithm=algorithm, n_way=5, k_shot=1, q_query=10, device="cpu", steps=1)
    )
    algo = exp.algorithm
    n = sum(p.numel() for p in algo.parameters() if p.requires_grad)
    n += sum(b.numel() for b in algo.buffers() if b.is_floating_point())
    return 4 * n


class DdpConfig(CommandConfig):
    """Settings of ``metabridge bench ddp``: images/s of one process against ``nproc`` torchrun
    processes, and each rank's all-reduce time per step."""

    out: Path = Field(Path("runs/bench/ddp"), description="Folder of ddp_cpu.json, ddp_cpu.png and config.json.")
    algorithm: str = Field("mtl", min_length=1, description="The algorithm trained (any few-shot one).")
    dataset: str = Field(
        "glyphs", min_length=1, description="The few-shot dataset (glyphs: rendered locally, no download)."
    )
    steps: int = Field(60, ge=1, description="Training steps of each run (more than --skip + 10).")
    skip: int = Field(10, ge=0, description="The first steps are not timed (start-up, lazy initialisation).")
    nproc: int = Field(2, ge=2, description="Processes of the distributed run (one thread each).")
    meta_batch: int = Field(16, ge=1, description="Tasks per step (split over the ranks; a multiple of --nproc).")
    threads: int | None = Field(None, ge=1, description="Threads of the one-process run [default: the cores].")
    timeout: float | None = Field(1800.0, gt=0, description="Seconds allowed per run; None for no limit.")

    @field_validator("algorithm")
    @classmethod
    def _registered(cls, name: str) -> str:
        from ..algorithms.registry import ALGORITHMS

        if name not in ALGORITHMS:
            close = difflib.get_close_matches(name, list(ALGORITHMS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown algorithm {name!r}{hint}; choose from {', '.join(sorted(ALGORITHMS))}")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> DdpConfig:
        if self.meta_batch % self.nproc or self.steps <= self.skip + 10:
            raise ValueError(
                f"need --nproc dividing --meta-batch ({self.meta_batch}) and --steps > --skip + 10 "
                f"(got nproc={self.nproc}, steps={self.steps}, skip={self.skip})."
            )
        return self


CONFIG = DdpConfig


def _train_all(config: DdpConfig, threads: int, images: int) -> tuple[dict[str, Any], list[str]]:
    """The three runs (one process x T threads, x 1 thread, nproc processes); their stats and labels."""
    log_every = 5
    scratch = Path(tempfile.mkdtemp(prefix="metabridge-ddp-"))
    me = [sys.executable, "-m", "metabridge"]
    runs: dict[str, Any] = {}
    plan = [
        (f"1 process x {threads} threads", me, threads),
        ("1 process x 1 thread", me, 1),
        (
            f"{config.nproc} processes x 1 thread",
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={config.nproc}",
                "-m",
                "metabridge",
            ],
            1,
        ),
    ]
    try:
        for i, (label, launcher, t) in enumerate(plan):
            out = scratch / f"run{i}"
            args = _train_args(config.algorithm, config.dataset, config.steps, config.meta_batch, out, log_every)
            wall = _run(launcher + args, t, config.timeout)
            stats = _steady(out, config.skip)
            stats.update(label=label, threads=t, wall_s=wall, images_per_s=stats["steps_per_s"] * images)
            runs[label] = stats
            print(
                f"{label:>28}: {stats['images_per_s']:8.1f} images/s"
                + (
                    f", all-reduce {', '.join(f'{c * 1e3:.1f}' for c in stats['comm_s_per_step'])} ms/step per rank"
                    if "comm_s_per_step" in stats
                    else ""
                )
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return runs, [label for label, _, _ in plan]


def run(config: DdpConfig) -> dict[str, Any]:
    """Images/s of one process vs ``nproc`` torchrun processes, and each rank's all-reduce time
    per step; writes ``ddp_cpu.json`` and ``ddp_cpu.png`` into ``config.out``."""
    config.write_resolved()
    threads = config.threads or os.cpu_count() or 1
    images = config.meta_batch * 5 * (1 + 10)
    runs, (one, single, dist_label) = _train_all(config, threads, images)
    payload = _payload_bytes(config.algorithm, config.dataset)
    result = {
        "protocol": {
            "algorithm": config.algorithm,
            "dataset": config.dataset,
            "steps": config.steps,
            "skip": config.skip,
            "nproc": config.nproc,
            "meta_batch": config.meta_batch,
            "images_per_step": images,
            "backend": "gloo",
        },
        "machine": machine("cpu"),
        "runs": runs,
        "allreduce_payload_bytes": payload,
        "speedup_vs_one_process": runs[dist_label]["images_per_s"] / runs[one]["images_per_s"],
        "per_rank_efficiency": runs[dist_label]["images_per_s"] / (config.nproc * runs[single]["images_per_s"]),
    }
    out_dir = Path(config.out)
    (out_dir / "ddp_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, out_dir / "ddp_cpu.png")
    print(
        f"payload {payload / 2**20:.2f} MiB per all-reduce; {dist_label} / one process: "
        f"{result['speedup_vs_one_process']:.2f}x; per-rank efficiency {result['per_rank_efficiency']:.2f}"
    )
    print(f"wrote {out_dir / 'ddp_cpu.json'} and ddp_cpu.png")
    return result


def _plot(result: dict, path: Path) -> None:
    """Images/s of each run as horizontal bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(result["runs"])
    values = [result["runs"][k]["images_per_s"] for k in labels]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(labels, values, color=["#4477aa", "#66ccee", "#228833"][: len(labels)])
    ax.set_xlabel("training images / s")
    p = result["protocol"]
    ax.set_title(
        f"{p['algorithm']} on {p['dataset']}, meta-batch {p['meta_batch']} ({p['images_per_step']} images/step)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
