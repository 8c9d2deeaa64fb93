"""Data-parallel training throughput: one process against ``torchrun --nproc-per-node W``.

Trains the same run (default: MTL, Wang et al. 2021, on the glyphs benchmark, 5-way
1-shot 10-query episodes, meta-batch 16, so 880 images per step) three ways, each for
``steps`` steps from the same seed with no validation or checkpoints in between:

* ``1 process x T threads`` (T = the cores: what one process gets on this machine);
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
``t_step(W) ~ t_compute / W + t_comm``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import machine


def _train_args(algorithm: str, dataset: str, steps: int, meta_batch: int, out: Path, log_every: int) -> list[str]:
    return ["train", "--algorithm", algorithm, "--task", dataset, "--n-way", "5", "--k-shot", "1", "--q-query", "10",
            "--meta-batch-size", str(meta_batch), "--steps", str(steps), "--eval-every", "0",
            "--checkpoint-every", "0", "--log-every", str(log_every), "--optimizer", "radam", "--device", "cpu",
            "--out", str(out), "--no-progress", "--overwrite"]


def _run(cmd: list[str], threads: int, timeout: float) -> float:
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
    out: dict[str, Any] = {"steps_per_s": (last["step"] - first["step"]) / seconds, "window_steps":
                           last["step"] - first["step"]}
    if "comm_s_per_step" in last:
        ranks = len(last["comm_s_per_step"])
        out["comm_s_per_step"] = [sum(r["comm_s_per_step"][k] for r in later[1:]) / len(later[1:])
                                  for k in range(ranks)]
    return out


def _payload_bytes(algorithm: str, dataset: str) -> int:
    """Bytes of the flat all-reduce tensor: trainable parameters + float buffers, float32."""
    from ..config import ExperimentConfig
    from ..experiment import build_experiment

    exp = build_experiment(ExperimentConfig(task=dataset, algorithm=algorithm, n_way=5, k_shot=1, q_query=10,
                                            device="cpu", steps=1))
    algo = exp.algorithm
    n = sum(p.numel() for p in algo.parameters() if p.requires_grad)
    n += sum(b.numel() for b in algo.buffers() if b.is_floating_point())
    return 4 * n


def main(algorithm: str = "mtl", dataset: str = "glyphs", steps: int = 60, skip: int = 10, nproc: int = 2,
         meta_batch: int = 16, threads: int = 0, timeout: float = 1800.0, results_dir: str = "bench/results",
         ) -> dict:
    """Images/s of one process vs ``nproc`` torchrun processes, and each rank's all-reduce time per step.

    Args:
        algorithm: the algorithm trained (any few-shot one; MTL by default).
        dataset: the few-shot dataset (glyphs: rendered on the machine, no download).
        steps: training steps of each run.
        skip: the first steps are not timed (start-up, lazy initialisation).
        nproc: processes of the distributed run (one thread each).
        meta_batch: tasks per step (split over the ranks; must be a multiple of nproc).
        threads: threads of the one-process run (0: the machine's cores).
        timeout: seconds allowed per run.
        results_dir: where ddp_cpu.json and ddp_cpu.png are written.
    """
    if meta_batch % nproc or nproc < 2 or steps <= skip + 10:
        raise ValueError(f"need nproc >= 2 dividing --meta-batch ({meta_batch}) and --steps > --skip + 10 "
                         f"(got nproc={nproc}, steps={steps}, skip={skip}).")
    threads = threads or os.cpu_count() or 1
    log_every = 5
    images = meta_batch * 5 * (1 + 10)
    scratch = Path(tempfile.mkdtemp(prefix="metabridge-ddp-"))
    me = [sys.executable, "-m", "metabridge"]
    runs: dict[str, Any] = {}
    try:
        plan = [(f"1 process x {threads} threads", me, threads), ("1 process x 1 thread", me, 1),
                (f"{nproc} processes x 1 thread",
                 [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                  "-m", "metabridge"], 1)]
        for i, (label, launcher, t) in enumerate(plan):
            out = scratch / f"run{i}"
            wall = _run(launcher + _train_args(algorithm, dataset, steps, meta_batch, out, log_every), t, timeout)
            stats = _steady(out, skip)
            stats.update(label=label, threads=t, wall_s=wall, images_per_s=stats["steps_per_s"] * images)
            runs[label] = stats
            print(f"{label:>28}: {stats['images_per_s']:8.1f} images/s"
                  + (f", all-reduce {', '.join(f'{c * 1e3:.1f}' for c in stats['comm_s_per_step'])} ms/step per rank"
                     if "comm_s_per_step" in stats else ""))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    payload = _payload_bytes(algorithm, dataset)
    dist_label = f"{nproc} processes x 1 thread"
    result = {
        "protocol": {"algorithm": algorithm, "dataset": dataset, "steps": steps, "skip": skip, "nproc": nproc,
                     "meta_batch": meta_batch, "images_per_step": images, "backend": "gloo"},
        "machine": machine("cpu"), "runs": runs, "allreduce_payload_bytes": payload,
        "speedup_vs_one_process": runs[dist_label]["images_per_s"] / runs[plan[0][0]]["images_per_s"],
        "per_rank_efficiency": runs[dist_label]["images_per_s"] / (nproc * runs["1 process x 1 thread"]["images_per_s"]),
    }
    out_dir = Path(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ddp_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, out_dir / "ddp_cpu.png")
    print(f"payload {payload / 2**20:.2f} MiB per all-reduce; {dist_label} / one process: "
          f"{result['speedup_vs_one_process']:.2f}x; per-rank efficiency {result['per_rank_efficiency']:.2f}")
    print(f"wrote {out_dir / 'ddp_cpu.json'} and ddp_cpu.png")
    return result


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(result["runs"])
    values = [result["runs"][k]["images_per_s"] for k in labels]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(labels, values, color=["#4477aa", "#66ccee", "#228833"][:len(labels)])
    ax.set_xlabel("training images / s")
    p = result["protocol"]
    ax.set_title(f"{p['algorithm']} on {p['dataset']}, meta-batch {p['meta_batch']} ({p['images_per_step']} images/step)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
