"""The meta-RL experiments of Finn et al. 2017 and Gao & Sener 2020, each one call writing JSON and a PNG.

* :func:`navigation_experiment` (a): 2D navigation, MAML-TRPO against DRS-TRPO at equal
  samples and a randomly initialised policy: average return after 0..3 test updates
  beside Finn et al.'s (from the results stored in cbfinn/maml_rl, ``icml/``).
* :func:`comparison_experiment` (b): MAML-TRPO, DRS-TRPO and DRS-PPO at equal samples on
  any preset (HalfCheetah-Vel), returns after 0..K updates.
* :func:`tradeoff_experiment` (c): Gao & Sener's trade-off map, sign(DRS - MAML)(1 - 2p)
  from a one-sided Welch test over seeds, at every checkpoint x number of test updates.

Runs are resumable: a run directory whose run finished is reused, a partial one resumed,
so an interrupted experiment continues where it stopped. Equal samples: a MAML
iteration samples every task twice (before and after adaptation), DRS once, so DRS gets
twice the iterations and evaluates every twice as many.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text
from ..checkpoint import CheckpointManager
from ..machine_info import machine
from ..metrics_log import read_metrics
from .config import RLConfig
from .presets import preset_config
from .trainer import RLResult, build_env, build_policy, evaluate_policy, train_rl

#: Finn et al. 2017, 2D navigation: average return after 0..4 updates over 40 goals, read from
#: cbfinn/maml_rl icml/icml_point_results_*.pkl (the paper shows them only as a log-scale plot)
FINN_NAVIGATION: dict[str, Any] = {
    "maml": [-40.41, -11.68, -3.33, -3.23, -3.35],
    "random": [-82.7, -58.0, -53.8, -46.8, -42.9],
    "oracle": -2.29,
    "source": "cbfinn/maml_rl icml/icml_point_results_*.pkl (Finn et al. 2017)",
}
MAML_FAMILY = ("maml-trpo", "fo-maml-trpo")


def _scaled_for(algorithm: str, maml_config: RLConfig, preset: str, overrides: dict[str, Any]) -> RLConfig:
    """``preset``'s config for ``algorithm``; a DRS method gets the MAML config's sample budget
    (2x its iterations, evaluations and checkpoints every 2x as many iterations)."""
    config = preset_config(preset, algorithm, **overrides)
    if algorithm in MAML_FAMILY:
        return config
    return config.model_copy(
        update={
            "iterations": 2 * maml_config.iterations,
            "eval_every": 2 * maml_config.eval_every,
            "checkpoint_every": 2 * maml_config.checkpoint_every,
        }
    )


def run_or_resume(config: RLConfig, run_dir: Path, progress: bool = True) -> RLResult:
    """Train ``config`` in ``run_dir``, resuming a partial run and reusing a finished one."""
    records = read_metrics(run_dir) if (run_dir / "metrics.jsonl").is_file() else []
    evals = [r for r in records if r.get("kind") == "eval"]
    done = any(r.get("step") == config.iterations for r in evals)
    resume = CheckpointManager(run_dir).exists()
    if done and resume:
        final = evals[-1]
        return RLResult(
            run_dir, config.iterations, int(final["env_steps_total"]), float(final["seconds"]), final, records
        )
    return train_rl(config, run_dir, resume=resume, progress=progress)


def _evals(result: RLResult) -> list[dict[str, Any]]:
    return [r for r in (result.history or read_metrics(result.run_dir)) if r.get("kind") == "eval"]


def _method_summary(result: RLResult) -> dict[str, Any]:
    final = result.final or {}
    return {
        "returns": final.get("returns"),
        "returns_ci95": final.get("returns_ci95"),
        "success": final.get("success"),
        "env_steps": result.env_steps,
        "train_seconds": result.seconds,
        "iterations": result.iteration,
        "curve": [
            {
                "iteration": r["step"],
                "env_steps": r["env_steps_total"],
                "returns": r["returns"],
                **({"success": r["success"]} if "success" in r else {}),
            }
            for r in _evals(result)
        ],
    }


#: multiples of the preset's test step sizes tried when the fine-tuning step is tuned per method
TUNE_FACTORS = (5.0, 1.0, 0.2, 0.04, 0.01)


def tuned_finetuning(config: RLConfig, run_dir: Path | None, factors: Sequence[float] = TUNE_FACTORS) -> dict[str, Any]:
    """Returns after 0..K updates with the fine-tuning step chosen per method.

    Each multiple f of the config's step-size schedule is scored on *validation* tasks
    (seed ``eval_seed + 1000``, disjoint draws from the test tasks) by the mean return
    after 1..K updates; the best f is then scored on the test tasks. Gao & Sener also
    fine-tune each method with its own step size; a policy trained without the inner
    step (DRS) can need a much smaller one than MAML's."""
    from .trainer import load_rl_run

    if run_dir is None:
        env = build_env(config)
        policy = build_policy(config, env)
    else:
        _, env, algorithm, _ = load_rl_run(run_dir)
        policy = algorithm.policy
    try:
        val_cfg = config.model_copy(update={"eval_seed": config.eval_seed + 1000})
        scores: dict[float, float] = {}
        base = config.eval_lrs or [config.inner_lr]
        for f in factors:
            res = evaluate_policy(val_cfg.model_copy(update={"eval_lrs": [f * lr for lr in base]}), env, policy)
            after = res.returns[1:] if res.returns.shape[0] > 1 else res.returns
            scores[f] = float(after.mean())
        best = max(scores, key=lambda f: scores[f])
        test_cfg = config.model_copy(update={"eval_lrs": [best * lr for lr in base]})
        res = evaluate_policy(test_cfg, env, policy)
    finally:
        env.close()
    return {
        "returns": res.mean_returns(),
        "returns_ci95": res.returns_ci95(),
        "success": res.mean_success(),
        "lrs": test_cfg.eval_schedule(),
        "factor": best,
        "validation_scores": {str(k): v for k, v in scores.items()},
    }


def _random_init(config: RLConfig) -> dict[str, Any]:
    env = build_env(config)
    try:
        res = evaluate_policy(config, env, build_policy(config, env))
    finally:
        env.close()
    return {
        "returns": res.mean_returns(),
        "returns_ci95": res.returns_ci95(),
        "success": res.mean_success(),
        "env_steps": 0,
        "train_seconds": 0.0,
        "iterations": 0,
    }


def _plot_returns(report: dict[str, Any], path: Path, references: dict[str, Any] | None) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, row in report["methods"].items():
        if row.get("returns") is None:
            continue
        ks = list(range(len(row["returns"])))
        ax.errorbar(ks, row["returns"], yerr=row.get("returns_ci95"), marker="o", capsize=3, label=name)
    for name, values in (references or {}).items():
        if isinstance(values, list):
            ax.plot(range(len(values)), values, ls="--", marker="x", alpha=0.7, label=f"{name} (paper)")
    ax.set_xlabel("policy-gradient updates at test time")
    ax.set_ylabel("average return (symlog)")
    ax.set_yscale("symlog", linthresh=10.0)  # Finn et al. plot 2D navigation on a log scale
    ax.xaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]
    ax.set_title(report["title"], fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _table(report: dict[str, Any]) -> str:
    k = max(len(r["returns"]) for r in report["methods"].values() if r.get("returns"))
    head = "| method | " + " | ".join(f"{i} upd." for i in range(k)) + " | env steps | train s |"
    lines = [head, "|" + "---|" * (k + 3)]
    for name, row in report["methods"].items():
        if not row.get("returns"):
            continue
        cells = [f"{v:.2f} ± {c:.2f}" for v, c in zip(row["returns"], row.get("returns_ci95") or [0] * k)]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['env_steps']:,} | {row['train_seconds']:.0f} |")
    for name, values in report.get("references", {}).items():
        if isinstance(values, list):
            lines.append(f"| {name} (paper) | " + " | ".join(f"{v:.2f}" for v in values[:k]) + " | | |")
    return "\n".join(lines)


def comparison_experiment(
    preset: str,
    out: Path,
    runs: Path,
    algorithms: Sequence[str] = ("maml-trpo", "drs-trpo"),
    seed: int = 0,
    random_init: bool = True,
    references: dict[str, Any] | None = None,
    scaled_note: str | None = None,
    progress: bool = True,
    tune: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Train each of ``algorithms`` on ``preset`` at equal samples (DRS: 2x iterations) and report
    the returns after 0..K test updates of each, beside ``references``: with the preset's
    fine-tuning step for every method, and (``tune=True``) with the step tuned per method
    on validation tasks (:func:`tuned_finetuning`), as ``"<method> (tuned step)"`` rows."""
    out.mkdir(parents=True, exist_ok=True)
    maml_cfg = preset_config(preset, "maml-trpo", seed=seed, **overrides)
    report: dict[str, Any] = {
        "title": f"{preset} (seed {seed})",
        "preset": preset,
        "seed": seed,
        "config": maml_cfg.model_dump(),
        "methods": {},
        "references": references or {},
        "machine": machine("cpu"),
        "note": scaled_note,
    }
    for algorithm in algorithms:
        cfg = _scaled_for(algorithm, maml_cfg, preset, {"seed": seed, **overrides})
        result = run_or_resume(cfg, runs / f"{algorithm}-s{seed}", progress)
        report["methods"][algorithm] = _method_summary(result)
        report["methods"][algorithm]["config"] = cfg.model_dump()
    if random_init:
        report["methods"]["random init"] = _random_init(maml_cfg)
    if tune:
        for algorithm in algorithms:
            row = report["methods"][algorithm]
            tuned = tuned_finetuning(RLConfig(**row["config"]), runs / f"{algorithm}-s{seed}")
            report["methods"][f"{algorithm} (tuned step)"] = {
                **tuned,
                "env_steps": row["env_steps"],
                "train_seconds": row["train_seconds"],
                "iterations": row["iterations"],
            }
        if random_init:
            report["methods"]["random init (tuned step)"] = {
                **tuned_finetuning(maml_cfg, None),
                "env_steps": 0,
                "train_seconds": 0.0,
                "iterations": 0,
            }
    atomic_write_text(out / "results.json", json.dumps(report, indent=2) + "\n")
    _plot_returns(report, out / "returns.png", references)
    table = _table(report)
    atomic_write_text(out / "table.md", table + "\n")
    print(table)
    return report


def navigation_experiment(
    out: Path = Path("runs/rl/navigation"),
    runs: Path = Path("runs/rl/navigation/runs"),
    seed: int = 0,
    progress: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """(a) Finn et al.'s 2D navigation: MAML-TRPO, DRS-TRPO (equal samples) and a random policy."""
    return comparison_experiment(
        "navigation-finn",
        out,
        runs,
        ("maml-trpo", "drs-trpo"),
        seed,
        True,
        {"maml": FINN_NAVIGATION["maml"][:4], "random": FINN_NAVIGATION["random"][:4]},
        progress=progress,
        **overrides,
    )


def tradeoff_experiment(
    preset: str,
    out: Path,
    runs: Path,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    drs: str = "drs-trpo",
    maml: str = "maml-trpo",
    progress: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """(c) Gao & Sener's trade-off map over (checkpoint x test updates) from ``len(seeds)`` seeds."""
    from .tradeoff import plot_tradeoff_map, tradeoff_map

    if len(seeds) < 2:
        raise ValueError("the Welch test needs at least 2 seeds (Gao & Sener use 5).")
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[list[dict[str, Any]]]] = {maml: [], drs: []}
    cfgs: dict[str, RLConfig] = {}
    for seed in seeds:
        maml_cfg = preset_config(preset, maml, seed=seed, **overrides)
        for algorithm in (maml, drs):
            cfg = _scaled_for(algorithm, maml_cfg, preset, {"seed": seed, **overrides})
            cfgs[algorithm] = cfg
            curves[algorithm].append(_evals(run_or_resume(cfg, runs / f"{algorithm}-s{seed}", progress)))
    n_ckpt = min(len(c) for per in curves.values() for c in per)

    def grid(algorithm: str, key: str) -> torch.Tensor:
        return torch.tensor([[r[key] for r in c[:n_ckpt]] for c in curves[algorithm]], dtype=torch.float64)

    means = {a: grid(a, "returns") for a in (maml, drs)}
    stderrs = {a: grid(a, "returns_ci95") / 1.96 for a in (maml, drs)}
    result = tradeoff_map(means[drs].numpy(), means[maml].numpy(), stderrs[drs].numpy(), stderrs[maml].numpy())
    budgets = [
        float(torch.tensor([c[i]["env_steps_total"] for c in curves[maml]], dtype=torch.float64).mean())
        for i in range(n_ckpt)
    ]
    updates = list(range(means[maml].shape[2]))
    report = {
        "preset": preset,
        "seeds": list(seeds),
        "maml": maml,
        "drs": drs,
        "env_steps": budgets,
        "maml_iterations": [c["step"] for c in curves[maml][0][:n_ckpt]],
        "drs_iterations": [c["step"] for c in curves[drs][0][:n_ckpt]],
        "updates": updates,
        "map": result.to_json(),
        "configs": {a: c.model_dump() for a, c in cfgs.items()},
        "machine": machine("cpu"),
    }
    atomic_write_text(out / "tradeoff.json", json.dumps(report, indent=2) + "\n")
    fig = plot_tradeoff_map(result, budgets, updates, f"{preset}: sign({drs} - {maml}) (1 - 2p), {len(seeds)} seeds")
    fig.savefig(out / "tradeoff.png", dpi=120)
    lines = ["| env steps (M) | " + " | ".join(f"{k} upd." for k in updates) + " |", "|" + "---|" * (len(updates) + 1)]
    value = result.value
    for i, b in enumerate(budgets):
        lines.append(f"| {b / 1e6:.2f} | " + " | ".join(f"{float(value[i][k]):+.2f}" for k in updates) + " |")
    table = "\n".join(lines)
    atomic_write_text(out / "table.md", table + "\n")
    print(table)
    return report
