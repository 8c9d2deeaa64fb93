"""``metabridge bench rl_sampler``: what the task-batched sampler adds to the raw environment-step time.

For a meta-batch of T tasks x R rollouts over the horizon H, it times (best of
``repeats``, one process, after a warm-up):

* raw: ``env.reset`` + H calls of ``env.step`` with pre-drawn random actions (the
  simulator alone, the floor for any sampler);
* sampler: :func:`metabridge.rl.sample_episodes` with a policy of the given widths (one
  batched forward per step, each task with its own parameters as after MAML's inner step);
* processing: :func:`metabridge.rl.process_episodes` (returns, the T linear-baseline fits, GAE);

and reports env steps/s of each and the overhead (sampler + processing - raw) / raw.
Target: <= 25 % at 20 tasks x 20 rollouts on HalfCheetah. JSON, a bar plot and the resolved
config.json go under ``--out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field, field_validator

from ..atomic import atomic_write_text
from ..config import CommandConfig, KeyValues
from ..machine_info import machine


def _best(fn: Any, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


class RlSamplerConfig(CommandConfig):
    """Settings of ``metabridge bench rl_sampler``: the sampler's overhead against the raw
    environment-step time."""

    out: Path = Field(
        Path("runs/bench/rl_sampler"),
        description=("Folder of ENV.json and ENV.png (one pair per environment) and config.json."),
    )
    env: str = Field("halfcheetah-vel", min_length=1, description=("Environment family (metabridge list envs)."))
    tasks: int = Field(20, ge=1, description="T, tasks stepped together.")
    rollouts: int = Field(20, ge=1, description="R, episodes per task.")
    horizon: int = Field(200, ge=1, description="H, steps per episode (passed to the family as horizon=).")
    hidden: list[int] = Field([64, 64], min_length=1, description="Policy widths.")
    repeats: int = Field(3, ge=1, description="Timed repetitions of each part (the best is kept).")
    per_task_params: bool = Field(True, description="Sample with one parameter set per task (as after the inner step).")
    env_kwargs: Annotated[dict[str, Any], KeyValues] = Field(
        default_factory=dict,
        description=(
            "Further options of the family KEY=VALUE, VALUE read as JSON, e.g. --env-kwargs velocity_range=[0,3]."
        ),
    )
    threads: int = Field(
        1,
        ge=1,
        description="Torch CPU threads while timing (1: the raw simulator is single-threaded too; restored after).",
    )

    @field_validator("hidden")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError(f"must be positive integers (got {values})")
        return values


CONFIG = RlSamplerConfig


def _time_parts(config: RlSamplerConfig, family: Any) -> tuple[float, float, float]:
    """Best seconds of the raw simulator, the sampler and the processing."""
    from ..rl import GaussianMLPPolicy, process_episodes, sample_episodes

    tasks, rollouts, horizon = config.tasks, config.rollouts, config.horizon
    policy = GaussianMLPPolicy(
        family.obs_dim, family.action_dim, list(config.hidden), generator=torch.Generator().manual_seed(0)
    )
    g = torch.Generator().manual_seed(0)
    task_rows = family.sample_tasks(tasks, g)
    params = {
        k: v.detach().unsqueeze(0).repeat(tasks, *([1] * v.ndim)) if config.per_task_params else v.detach()
        for k, v in policy.params().items()
    }
    actions = torch.randn(horizon, tasks, rollouts, family.action_dim, generator=g)

    def raw() -> None:
        family.reset(task_rows, rollouts, torch.Generator().manual_seed(1))
        for t in range(horizon):
            family.step(actions[t])

    episodes = {}

    def sampler() -> None:
        episodes["e"] = sample_episodes(family, policy, params, task_rows, rollouts, torch.Generator().manual_seed(1))

    def processing() -> None:
        process_episodes(episodes["e"])

    for warm_up in (raw, sampler, processing):  # pools, vmap tracing
        warm_up()
    return _best(raw, config.repeats), _best(sampler, config.repeats), _best(processing, config.repeats)


def _plot(report: dict[str, Any], path: Path) -> None:
    """Environment steps/s of the three parts as horizontal bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh(
        ["raw env.step", "sampler", "sampler + baselines/GAE"],
        [report["raw_steps_per_s"], report["sampler_steps_per_s"], report["with_processing_steps_per_s"]],
    )
    ax.set_xlabel("environment steps / s")
    ax.set_title(
        f"{report['env']}: {report['tasks']} tasks x {report['rollouts']} rollouts x {report['horizon']} "
        f"steps; overhead {100 * report['overhead']:.1f}%",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run(config: RlSamplerConfig) -> dict[str, Any]:
    """Sampler overhead against the raw environment-step time; writes ``ENV.json`` and
    ``ENV.png`` into ``config.out``."""
    from ..rl import make_env

    family = make_env(config.env, horizon=config.horizon, **config.env_kwargs)
    config.write_resolved()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        used = torch.get_num_threads()
        t_raw, t_sampler, t_proc = _time_parts(config, family)
    finally:
        torch.set_num_threads(threads)
        family.close()
    steps = config.tasks * config.rollouts * config.horizon
    report: dict[str, Any] = {
        "env": config.env,
        "tasks": config.tasks,
        "rollouts": config.rollouts,
        "horizon": config.horizon,
        "hidden": list(config.hidden),
        "per_task_params": config.per_task_params,
        "threads": used,
        "env_steps": steps,
        "raw_seconds": t_raw,
        "sampler_seconds": t_sampler,
        "processing_seconds": t_proc,
        "raw_steps_per_s": steps / t_raw,
        "sampler_steps_per_s": steps / t_sampler,
        "with_processing_steps_per_s": steps / (t_sampler + t_proc),
        "overhead": (t_sampler + t_proc - t_raw) / t_raw,
        "machine": machine("cpu"),
    }
    out = Path(config.out)
    stem = config.env.replace("-", "_")
    atomic_write_text(out / f"{stem}.json", json.dumps(report, indent=2) + "\n")
    _plot(report, out / f"{stem}.png")
    print(
        f"{config.env}: raw {report['raw_steps_per_s']:,.0f} steps/s; sampler "
        f"{report['sampler_steps_per_s']:,.0f}; with baselines + GAE {report['with_processing_steps_per_s']:,.0f}; "
        f"overhead {100 * report['overhead']:.1f}% (target <= 25%)"
    )
    return report
