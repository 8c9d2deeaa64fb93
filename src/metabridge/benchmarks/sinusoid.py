"""Sinusoid regression reproduction (Finn, Abbeel & Levine, ICML 2017, Appendix C).

Protocol: amplitude U[0.1, 5], phase U[0, pi], x U[-5, 5]; MLP 1-40-40-1 (ReLU);
K = 10 support and 10 query points per training task; 25 tasks per meta-batch;
Adam (lr 1e-3) in the outer loop; MAML takes one inner step of size 0.01 in training.
At test time every method sees K = 5 support points of a new task and is scored by
its mean squared error on ``query_points`` fresh points of that task, after 1, 5 and
10 SGD steps of size 0.01 (MAML, and DRS = "pretrained on all tasks"). MTL (Wang et
al. 2021) learns one head per task of a finite pool and refits the head in closed
form on the support set, so it has one number for every step count.

Finn et al.'s Table 2 (5-shot; MSE after 1 / 5 / 10 steps):
MAML 0.67 / 0.38 / 0.35; pretrained 2.41 / 2.23 / 2.19.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from ..config import ExperimentConfig
from ..evaluate import evaluate
from ..experiment import RegressionSource
from ..tasks.sinusoid import SinusoidFamily
from ..train import Trainer

PAPER = {"maml": [0.67, 0.38, 0.35], "drs": [2.41, 2.23, 2.19]}
STEPS_EVAL = (1, 5, 10)
LABELS = {"maml": "MAML", "fomaml": "first-order MAML", "drs": "DRS (pretrained on all tasks)",
          "mtl": "MTL (head refit)", "anil": "ANIL", "reptile": "Reptile", "metasgd": "Meta-SGD"}


def method_config(method: str, steps: int, out_dir: Path, seed: int, num_train_tasks: int,
                  device: str) -> ExperimentConfig:
    """The training run of one method under Finn et al.'s protocol."""
    hparams: dict[str, Any] = {}
    pool = None
    if method in ("maml", "fomaml", "anil", "metasgd"):
        hparams = {"inner_lr": 0.01, "inner_steps": 1, "eval_steps": 10}
    elif method == "reptile":
        hparams = {"inner_lr": 0.01, "inner_steps": 5, "eval_steps": 10}
    elif method == "drs":
        hparams = {"finetune_lr": 0.01, "finetune_steps": 10}
    elif method == "mtl":
        pool = num_train_tasks
    return ExperimentConfig(
        task="sinusoid", algorithm=method, hparams=hparams, model="mlp", k_shot=10, q_query=10, eval_k_shot=5,
        num_train_tasks=pool, meta_batch_size=25, steps=steps, lr=1e-3, optimizer="adam",
        eval_every=max(steps // 10, 1), val_episodes=200, checkpoint_every=max(steps // 4, 1),
        seed=seed, device=device, out_dir=str(out_dir / method),
    )


def evaluate_steps(algorithm: Any, method: str, test: RegressionSource, episodes: int, seed: int) -> list[dict]:
    """MSE +- 95% CI after each number of test-time steps in ``STEPS_EVAL``."""
    rows = []
    for k in STEPS_EVAL:
        if hasattr(algorithm, "eval_steps"):
            algorithm.eval_steps = k
        res = evaluate(algorithm, test.fixed_episodes(episodes, seed=seed, batch_size=100))
        rows.append({"steps": k, **res.as_dict()})
    return rows


def plot(results: dict[str, Any], path: Path) -> None:
    """MSE against test-time steps for every method, with Finn et al.'s numbers dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, res in results["methods"].items():
        ks = [r["steps"] for r in res["test"]]
        ax.errorbar(ks, [r["mean"] for r in res["test"]], yerr=[r["ci95"] for r in res["test"]],
                    marker="o", capsize=3, label=f"{LABELS.get(method, method)} (ours)")
        if method in PAPER:
            ax.plot(list(STEPS_EVAL), PAPER[method], "k--", alpha=0.4)
    ax.plot([], [], "k--", alpha=0.4, label="Finn et al. 2017, Table 2")
    ax.set_xlabel("gradient steps at test time (5-shot support)")
    ax.set_ylabel("query MSE (mean ± 95% CI)")
    ax.set_yscale("log")
    ax.set_title(f"Sinusoid regression, {results['train_steps']} meta-iterations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(results: dict[str, Any]) -> str:
    """A plain-text table: ours beside the paper."""
    head = f"{'method':32s} " + " ".join(f"{f'{k} step(s)':>16s}" for k in STEPS_EVAL) + f" {'train s':>8s}"
    lines = [head, "-" * len(head)]
    for method, res in results["methods"].items():
        cells = " ".join(f"{r['mean']:>8.3f} ± {r['ci95']:<5.3f}" for r in res["test"])
        lines.append(f"{LABELS.get(method, method):32s} {cells} {res['train_seconds']:>8.0f}")
        if method in PAPER:
            lines.append(f"{'  Finn et al. 2017':32s} " + " ".join(f"{v:>16.2f}" for v in PAPER[method]))
    return "\n".join(lines)


def run(methods: tuple[str, ...] = ("maml", "drs", "mtl"), steps: int = 70000, test_tasks: int = 1000,
        query_points: int = 100, num_train_tasks: int = 1000, seed: int = 0, device: str = "cpu",
        out_dir: Path = Path("runs/bench_sinusoid"), results_dir: Path = Path("bench/results"),
        progress: bool = True, test_seed: int = 2000) -> dict[str, Any]:
    """Train each method, evaluate on identical test tasks, write JSON + PNG, return results."""
    if steps < 1 or test_tasks < 1 or query_points < 1:
        raise ValueError("steps, test_tasks and query_points must be >= 1.")
    test = RegressionSource(SinusoidFamily(), 5, query_points)
    results: dict[str, Any] = {
        "benchmark": "sinusoid", "train_steps": steps, "test_tasks": test_tasks, "query_points": query_points,
        "k_shot_test": 5, "num_train_tasks_mtl": num_train_tasks, "seed": seed, "device": device,
        "torch": torch.__version__, "machine": platform.machine(), "threads": torch.get_num_threads(),
        "paper": PAPER, "methods": {},
    }
    for method in methods:
        cfg = method_config(method, steps, Path(out_dir), seed, num_train_tasks, device)
        trainer = Trainer(cfg, overwrite=True, progress=progress, tensorboard=False)
        t0 = time.perf_counter()
        trainer.run()
        seconds = time.perf_counter() - t0
        assert trainer.experiment is not None
        rows = evaluate_steps(trainer.experiment.algorithm, method, test, test_tasks, test_seed)
        results["methods"][method] = {"train_seconds": seconds, "test": rows}
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "sinusoid.json").write_text(json.dumps(results, indent=2))
    plot(results, results_dir / "sinusoid.png")
    return results


def main(
    methods: str = "maml,drs,mtl",
    steps: int = 70000,
    test_tasks: int = 1000,
    query_points: int = 100,
    num_train_tasks: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    out_dir: str = "runs/bench_sinusoid",
    results_dir: str = "bench/results",
) -> None:
    """Reproduce Finn et al. (2017)'s sinusoid table: MAML, DRS (pretrained) and MTL.

    Args:
        methods: comma-separated algorithms (maml, fomaml, anil, metasgd, reptile, drs, mtl).
        steps: meta-iterations per method (Finn et al.: 70000).
        test_tasks: fixed test tasks (identical for every method).
        query_points: query points per test task used to score MSE.
        num_train_tasks: size of MTL's training task pool (one head per task).
        seed: training seed.
        device: cpu, cuda or auto.
        out_dir: run directories (checkpoints, metrics.jsonl).
        results_dir: where sinusoid.json and sinusoid.png are written.
    """
    res = run(tuple(m.strip() for m in methods.split(",") if m.strip()), steps, test_tasks, query_points,
              num_train_tasks, seed, device, Path(out_dir), Path(results_dir))
    print(format_table(res))
    print(f"\nwrote {Path(results_dir) / 'sinusoid.json'} and {Path(results_dir) / 'sinusoid.png'}")
