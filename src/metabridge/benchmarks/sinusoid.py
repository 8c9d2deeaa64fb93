"""Sinusoid regression reproduction (Finn, Abbeel & Levine, ICML 2017, Appendix C).

Protocol: amplitude U[0.1, 5], phase U[0, pi], x U[-5, 5]; MLP 1-40-40-1 (ReLU);
K = 10 support and 10 query points per training task; 25 tasks per meta-batch;
Adam (lr 1e-3) in the outer loop; MAML takes one inner step of size 0.01 in training.
At test time every method sees K = 5 support points of a new task and is scored by
its mean squared error on ``query_points`` fresh points of that task, after 1, 5 and
10 SGD steps of size 0.01 (MAML, and joint training = "pretrained on all tasks"). MTL (Wang et
al. 2021) learns one head per task of a finite pool and refits the head in closed
form on the support set, so it has one number for every step count.

Model selection: every method is scored with its best-validation weights (validation
MSE after the method's own test-time adaptation, 200 fixed tasks, every steps/10
iterations), and also with its final weights. The two differ for MAML: trained with
one inner step, MAML's weights keep improving the one-step loss, but after tens of
thousands of iterations ten steps of 0.01 can diverge on a few test tasks, so the final
weights' 10-step MSE is not the best one (the numbers are on the results page).

Finn et al.'s Table 2 (5-shot; MSE after 1 / 5 / 10 steps):
MAML 0.67 / 0.38 / 0.35; pretrained 2.41 / 2.23 / 2.19.

Writes sinusoid.json, sinusoid.png and config.json into ``--out``, each method's run
(checkpoints, metrics.jsonl) into ``OUT/runs/METHOD``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator

from ..checkpoint import load_checkpoint
from ..config import CommandConfig, ExperimentConfig
from ..evaluate import evaluate
from ..experiment import RegressionSource, build_experiment
from ..machine_info import machine
from ..tasks.sinusoid import SinusoidFamily
from ..train import Trainer, read_metrics

PAPER = {"maml": [0.67, 0.38, 0.35], "joint": [2.41, 2.23, 2.19]}
STEPS_EVAL = (1, 5, 10)
LABELS = {
    "maml": "MAML",
    "fomaml": "first-order MAML",
    "joint": "joint training (pretrained on all tasks)",
    "mtl": "MTL (head refit)",
    "anil": "ANIL",
    "reptile": "Reptile",
    "metasgd": "Meta-SGD",
    "mann": "MANN (LSTM)",
    "snail": "SNAIL",
    "icl": "ICL transformer",
}


def _canonical(method: str) -> str:
    """The registered name ``method`` stands for (``drs``, the 0.x name, is ``joint``)."""
    from ..algorithms.registry import ALGORITHMS

    return ALGORITHMS.canonical(method) if method in ALGORITHMS else method


def method_config(
    method: str, steps: int, out_dir: Path, seed: int, num_train_tasks: int, device: str
) -> ExperimentConfig:
    """The training run of one method under Finn et al.'s protocol."""
    hparams: dict[str, Any] = {}
    pool = None
    kind = _canonical(method)
    if method in ("maml", "fomaml", "anil", "metasgd"):
        hparams = {"inner_lr": 0.01, "inner_steps": 1, "eval_steps": 10}
    elif method == "reptile":
        hparams = {"inner_lr": 0.01, "inner_steps": 5, "eval_steps": 10}
    elif kind == "joint":
        hparams = {"finetune_lr": 0.01, "finetune_steps": 10}
    elif method == "mtl":
        pool = num_train_tasks
    elif method == "snail":
        hparams = {"tc_length": 11}  # SNAIL's T: the training sequence, K = 10 support points + the query
    return ExperimentConfig(
        task="sinusoid",
        algorithm=method,
        hparams=hparams,
        model="mlp",
        k_shot=10,
        q_query=10,
        eval_k_shot=5,
        num_train_tasks=pool,
        meta_batch_size=25,
        steps=steps,
        lr=1e-3,
        optimizer="adam",
        eval_every=max(steps // 10, 1),
        val_episodes=200,
        checkpoint_every=max(steps // 4, 1),
        seed=seed,
        device=device,
        out_dir=str(out_dir / method),
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
        ax.errorbar(
            ks,
            [r["mean"] for r in res["test"]],
            yerr=[r["ci95"] for r in res["test"]],
            marker="o",
            capsize=3,
            label=f"{LABELS.get(_canonical(method), method)} (ours)",
        )
        if _canonical(method) in PAPER:
            ax.plot(list(STEPS_EVAL), PAPER[_canonical(method)], "k--", alpha=0.4)
    ax.plot([], [], "k--", alpha=0.4, label="Finn et al. 2017, Table 2")
    ax.set_xlabel("gradient steps at test time (5-shot support)")
    ax.set_ylabel("query MSE (mean ± 95% CI)")
    ax.set_yscale("log")
    ax.set_title(f"Sinusoid regression, {results['train_steps']} meta-iterations (best-validation weights)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cell(mean: float, ci: float) -> str:
    """``mean ± ci`` in a fixed width."""
    return f"{mean:>8.3g} ± {ci:<6.2g}"


def format_table(results: dict[str, Any]) -> str:
    """A plain-text table: ours (best-validation and final weights) beside the paper."""
    head = f"{'method':36s} " + " ".join(f"{f'{k} step(s)':>17s}" for k in STEPS_EVAL) + f" {'train s':>8s}"
    lines = [head, "-" * len(head)]
    for method, res in results["methods"].items():
        cells = " ".join(_cell(r["mean"], r["ci95"]) for r in res["test"])
        lines.append(
            f"{LABELS.get(_canonical(method), method) + ' (best val.)':36s} {cells} {res['train_seconds']:>8.0f}"
        )
        cells = " ".join(_cell(r["mean"], r["ci95"]) for r in res["test_final"])
        lines.append(f"{'  final weights':36s} {cells}")
        if _canonical(method) in PAPER:
            lines.append(f"{'  Finn et al. 2017':36s} " + " ".join(f"{v:>17.2f}" for v in PAPER[_canonical(method)]))
    return "\n".join(lines)


def _train_or_load(cfg: ExperimentConfig, train: bool, progress: bool) -> tuple[Any, float, Path, Path]:
    """``(algorithm, training seconds, best checkpoint, final checkpoint)`` of one method.

    ``train=False`` reuses the run already in ``cfg.out_dir`` (e.g. to re-score it)."""
    trainer = Trainer(cfg, overwrite=train, progress=progress, tensorboard=False)
    if train:
        trainer.run()
    elif not trainer.checkpoints.last.exists():
        raise FileNotFoundError(f"no finished run in {cfg.out_dir}; run without --no-train first.")
    if trainer.experiment is None:
        trainer.experiment = build_experiment(cfg)
    records = [r for r in read_metrics(cfg.out_dir) if r["kind"] == "train"]
    last = trainer.checkpoints.last
    if load_checkpoint(last)["step"] < cfg.steps:
        raise RuntimeError(f"the run in {cfg.out_dir} stopped before {cfg.steps} steps; resume it or retrain.")
    best = trainer.checkpoints.best if trainer.checkpoints.best.exists() else last
    return trainer.experiment.algorithm, float(records[-1]["train_seconds"]) if records else 0.0, best, last


class SinusoidConfig(CommandConfig):
    """Settings of ``metabridge bench sinusoid``: Finn et al. (2017)'s sinusoid table, MAML, joint training
    (pretrained) and MTL."""

    out: Path = Field(
        Path("runs/bench/sinusoid"),
        description=(
            "Folder of sinusoid.json, sinusoid.png and config.json; each method's run goes into OUT/runs/METHOD."
        ),
    )
    methods: list[str] = Field(
        ["maml", "joint", "mtl"],
        min_length=1,
        description=(
            "Algorithms: maml, fomaml, anil, metasgd, reptile, joint (or its old name drs), mtl, and the black-box "
            "learners mann, snail, icl, which read the support in one forward (one number for every step count, "
            "like MTL)."
        ),
    )
    steps: int = Field(70000, ge=1, description="Meta-iterations per method (Finn et al.: 70000).")
    test_tasks: int = Field(1000, ge=1, description="Fixed test tasks (identical for every method).")
    query_points: int = Field(100, ge=1, description="Query points per test task used to score MSE.")
    num_train_tasks: int = Field(1000, ge=1, description="Size of MTL's training task pool (one head per task).")
    seed: int = Field(0, description="Training seed.")
    test_seed: int = Field(2000, description="Seed of the fixed test tasks.")
    device: str = Field("cpu", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$", description="cpu, cuda, cuda:N, mps or auto.")
    train: bool = Field(
        True, description="--no-train re-scores the finished runs already in OUT/runs instead of training."
    )
    progress: bool = Field(True, description="Show each run's progress bar.")

    @field_validator("methods")
    @classmethod
    def _registered(cls, names: list[str]) -> list[str]:
        import difflib

        from ..algorithms.registry import ALGORITHMS

        for name in names:
            if name not in ALGORITHMS:
                close = difflib.get_close_matches(name, list(ALGORITHMS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown algorithm {name!r}{hint}; choose from {', '.join(sorted(ALGORITHMS))}")
        if len(set(names)) != len(names):
            raise ValueError(f"names a method twice ({', '.join(names)})")
        return names


CONFIG = SinusoidConfig


def reproduce(config: SinusoidConfig) -> dict[str, Any]:
    """Train each method, evaluate its best-validation and final weights on identical test
    tasks, write JSON + PNG, return the results."""
    test = RegressionSource(SinusoidFamily(), 5, config.query_points)
    info = machine(config.device if config.device.startswith("cuda") else "cpu")
    results: dict[str, Any] = {
        "benchmark": "sinusoid",
        "train_steps": config.steps,
        "test_tasks": config.test_tasks,
        "query_points": config.query_points,
        "k_shot_test": 5,
        "num_train_tasks_mtl": config.num_train_tasks,
        "seed": config.seed,
        "device": config.device,
        "torch": torch.__version__,
        "machine": info,
        "threads": torch.get_num_threads(),
        "selection": "test = best-validation weights; test_final = weights after the last step",
        "paper": PAPER,
        "methods": {},
    }
    runs = Path(config.out) / "runs"
    for method in config.methods:
        cfg = method_config(method, config.steps, runs, config.seed, config.num_train_tasks, config.device)
        algorithm, seconds, best, last = _train_or_load(cfg, config.train, config.progress)
        scores: dict[str, Any] = {}
        for name, path in (("test", best), ("test_final", last)):
            ckpt = load_checkpoint(path)
            algorithm.load_state_dict(ckpt["algorithm"])
            scores[name] = evaluate_steps(algorithm, method, test, config.test_tasks, config.test_seed)
            scores[name.replace("test", "step")] = int(ckpt["step"])
        results["methods"][method] = {"train_seconds": seconds, **scores}
    out = Path(config.out)
    (out / "sinusoid.json").write_text(json.dumps(results, indent=2))
    plot(results, out / "sinusoid.png")
    return results


def run(config: SinusoidConfig) -> dict[str, Any]:
    """Reproduce Finn et al. (2017)'s sinusoid table: MAML, joint training (pretrained) and MTL; prints
    the table and writes ``sinusoid.json`` and ``sinusoid.png`` into ``config.out``."""
    config.write_resolved()
    res = reproduce(config)
    out = Path(config.out)
    print(format_table(res))
    print(f"\nwrote {out / 'sinusoid.json'} and {out / 'sinusoid.png'}")
    return res
