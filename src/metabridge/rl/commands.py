"""``metabridge rl train | eval | tradeoff | experiment``: the meta-RL toolkit on the command line.

Plain functions: the main CLI turns their parameters into options and their docstrings
into the help. Every command works from a preset (:mod:`metabridge.rl.presets`) with
overrides as JSON (``--set '{"iterations": 50, "meta_batch": 10}'``), writes its results
under ``--out``, and resumes where a previous call stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text
from ..csv_options import parse_csv, parse_json_object

__all__ = ["evaluate", "experiment", "train", "tradeoff"]


def _overrides(text: str) -> dict[str, Any]:
    return parse_json_object(text, "--set", '{"iterations": 50, "meta_batch": 10}') if text else {}


def _threads(threads: int) -> None:
    if threads < 0:
        raise ValueError("--threads must be >= 0 (0 keeps torch's default).")
    if threads:
        torch.set_num_threads(threads)  # this CLI process only


def train(
    preset: str = "navigation-finn",
    algorithm: str = "maml-trpo",
    out: Path = Path("runs/rl/run"),
    seed: int = 0,
    iterations: int = 0,
    set: str = "",
    resume: bool = False,
    overwrite: bool = False,
    threads: int = 0,
    progress: bool = True,
) -> None:
    """Train one meta-RL run (MAML-TRPO, first-order MAML-TRPO, DRS-TRPO or DRS-PPO) from a preset.

    Data-parallel over W processes: ``torchrun --nproc-per-node W -m metabridge rl train ...``
    (the meta-batch must split evenly; each rank samples its own tasks, the update is the
    one-process update on all of them; resume with the same W).

    Args:
        preset: navigation-finn, halfcheetah-vel-gao, halfcheetah-vel-small or metaworld-ml1-reach.
        algorithm: maml-trpo, fo-maml-trpo, drs-trpo or drs-ppo.
        out: run directory (config.json, metrics.jsonl, last.pt).
        seed: seed of the policy initialisation and of every sampled task and action.
        iterations: meta-iterations (0: the preset's).
        set: JSON object of RLConfig fields to override, e.g. '{"meta_batch": 10, "env_kwargs": {"horizon": 50}}'.
        resume: continue the run in --out from its last checkpoint (bit-exact).
        overwrite: start again in an --out that holds a run.
        threads: torch CPU threads for this process (0: torch's default).
        progress: show a progress bar.
    """
    from .presets import preset_config
    from .trainer import train_rl

    _threads(threads)
    over = _overrides(set)
    if iterations:
        over["iterations"] = iterations
    config = preset_config(preset, algorithm, seed=seed, **over)
    from ..distributed import init_from_environment

    context = init_from_environment(config.device)  # one process outside torchrun
    result = train_rl(config, out, resume=resume, overwrite=overwrite, progress=progress, distributed=context)
    if not context.is_main:
        return
    final = result.final or {}
    rets = ", ".join(f"{k}: {v:.2f}" for k, v in enumerate(final.get("returns", [])))
    print(f"{config.algorithm} on {config.env}: {result.iteration} iterations, {result.env_steps:,} env steps, "
          f"{result.seconds:.0f} s of training; returns after k updates: {rets}")
    if final.get("success") is not None:
        print("success rate after k updates: " + ", ".join(f"{k}: {v:.3f}" for k, v in enumerate(final["success"])))


def evaluate(
    run: Path = Path("runs/rl/run"),
    updates: int = -1,
    tasks: int = 0,
    rollouts: int = 0,
    lrs: str = "",
    json_out: Path | None = None,
    threads: int = 0,
) -> None:
    """Fine-tune a trained run's policy on held-out tasks and print the returns after 0..K updates.

    Args:
        run: run directory of metabridge rl train.
        updates: test-time policy-gradient updates K (-1: the run's eval_updates).
        tasks: held-out tasks (0: the run's eval_tasks).
        rollouts: episodes per task per update (0: the run's eval_rollouts).
        lrs: comma-separated step size of each update, the last repeating (empty: the run's).
        json_out: also write the result as JSON here.
        threads: torch CPU threads for this process (0: torch's default).
    """
    from .trainer import evaluate_policy, load_rl_run

    _threads(threads)
    config, env, algorithm, iteration = load_rl_run(run)
    over: dict[str, Any] = {}
    if updates >= 0:
        over["eval_updates"] = updates
    if tasks:
        over["eval_tasks"] = tasks
    if rollouts:
        over["eval_rollouts"] = rollouts
    if lrs:
        over["eval_lrs"] = parse_csv(lrs, "--lrs", float, example="0.5,0.25")
    config = config.model_copy(update=over)
    try:
        res = evaluate_policy(config, env, algorithm.policy)
    finally:
        env.close()
    report = {"run": str(run), "iteration": iteration, "returns": res.mean_returns(), "success": res.mean_success(),
              "eval_tasks": config.eval_tasks, "eval_rollouts": config.eval_rollouts,
              "lrs": config.eval_schedule()}
    print(f"{config.algorithm} at iteration {iteration} on {config.eval_tasks} held-out tasks of {config.env}:")
    for k, r in enumerate(report["returns"]):
        extra = f"  success {report['success'][k]:.3f}" if report["success"] else ""
        print(f"  after {k} updates: return {r:.2f}{extra}")
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(report, indent=2) + "\n")


def tradeoff(
    preset: str = "navigation-finn",
    out: Path = Path("bench/results/rl/tradeoff_navigation"),
    runs: Path = Path("runs/rl/tradeoff_navigation"),
    seeds: str = "0,1,2,3,4",
    drs: str = "drs-trpo",
    maml: str = "maml-trpo",
    set: str = "",
    threads: int = 0,
    progress: bool = True,
) -> None:
    """Gao & Sener's trade-off map: sign(DRS - MAML)(1 - 2p) per checkpoint x test updates over seeds.

    Args:
        preset: the protocol (navigation-finn, halfcheetah-vel-small, halfcheetah-vel-gao, ...).
        out: folder for tradeoff.json, tradeoff.png and table.md.
        runs: folder of the per-seed runs (reused / resumed on a re-run).
        seeds: comma-separated seeds (>= 2; Gao & Sener use 5).
        drs: the DRS method (drs-trpo or drs-ppo); it gets 2x MAML's iterations (equal samples).
        maml: maml-trpo or fo-maml-trpo.
        set: JSON object of RLConfig overrides for every run (e.g. '{"iterations": 50, "eval_every": 10}').
        threads: torch CPU threads for this process (0: torch's default).
        progress: show progress bars.
    """
    from .experiments import tradeoff_experiment

    _threads(threads)
    seed_list = parse_csv(seeds, "--seeds", int, example="0,1,2,3,4")
    tradeoff_experiment(preset, out, runs, seed_list, drs, maml, progress, **_overrides(set))


EXPERIMENTS = {
    "navigation": "Finn et al.'s 2D navigation: MAML-TRPO, DRS-TRPO and a random policy against Finn's returns",
    "halfcheetah-vel": "HalfCheetah-Vel, scaled to 2 cores: MAML-TRPO vs DRS-TRPO vs DRS-PPO at equal samples",
    "halfcheetah-vel-gao-steps": "the same with Gao & Sener's step sizes (inner 0.01, MAML max KL 0.001)",
    "metaworld-reach": "Meta-World ML1 reach-v3, scaled: success after adaptation for MAML-TRPO and DRS-TRPO",
}


def experiment(
    name: str = "navigation",
    out: Path | None = None,
    runs: Path | None = None,
    seed: int = 0,
    set: str = "",
    threads: int = 0,
    progress: bool = True,
) -> None:
    """Run one of the papers' meta-RL experiments and write results.json, returns.png, table.md.

    Args:
        name: navigation, halfcheetah-vel, halfcheetah-vel-gao-steps or metaworld-reach.
        out: results folder (default bench/results/rl/NAME).
        runs: run folder (default runs/rl/NAME; reused / resumed on a re-run).
        seed: seed of every run.
        set: JSON object of RLConfig overrides for every run (e.g. '{"iterations": 20}').
        threads: torch CPU threads for this process (0: torch's default).
        progress: show progress bars.
    """
    from .experiments import comparison_experiment, navigation_experiment

    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of: " +
                         "; ".join(f"{k} ({v})" for k, v in EXPERIMENTS.items()))
    _threads(threads)
    out = out or Path("bench/results/rl") / name.replace("-", "_")
    runs = runs or Path("runs/rl") / name.replace("-", "_")
    over = _overrides(set)
    if name == "navigation":
        navigation_experiment(out, runs, seed, progress, **over)
    elif name.startswith("halfcheetah-vel"):
        preset = "halfcheetah-vel-small" if name == "halfcheetah-vel" else "halfcheetah-vel-small-gao-steps"
        comparison_experiment(preset, out, runs, ("maml-trpo", "drs-trpo", "drs-ppo"), seed, True,
                              None, "scaled to 2 cores: 10 tasks x 10 rollouts, horizon 100, 60 MAML iterations; "
                              "the paper's budget: metabridge rl tradeoff --preset halfcheetah-vel-gao",
                              progress, **over)
    else:
        comparison_experiment("metaworld-ml1-reach", out, runs, ("maml-trpo", "drs-trpo"), seed, True, None,
                              "scaled to 2 cores: 10 tasks x 10 rollouts, 40 MAML iterations (Gao & Sener: 20 x 10, "
                              "10001 iterations)", progress, **over)
