"""``metabridge bench rl_sampler``: what the task-batched sampler adds to the raw environment-step time.

For a meta-batch of T tasks x R rollouts over the horizon H, it times (best of
``repeats``, one process, after a warm-up):

* raw: ``env.reset`` + H calls of ``env.step`` with pre-drawn random actions (the
  simulator alone, the floor for any sampler);
* sampler: :func:`metabridge.rl.sample_episodes` with a policy of the given widths (one
  batched forward per step, each task with its own parameters as after MAML's inner step);
* processing: :func:`metabridge.rl.process_episodes` (returns, the T linear-baseline fits, GAE);

and reports env steps/s of each and the overhead (sampler + processing - raw) / raw.
Target (issue 15): <= 25 % at 20 tasks x 20 rollouts on HalfCheetah. JSON and a bar plot
go under ``out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..atomic import atomic_write_text
from ..csv_options import parse_json_object
from ..machine_info import machine


def _best(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(env: str = "halfcheetah-vel", tasks: int = 20, rollouts: int = 20, horizon: int = 200,
         hidden: str = "64,64", repeats: int = 3, per_task_params: bool = True, env_kwargs: str = "",
         threads: int = 1, out: Path = Path("bench/results/rl_sampler")) -> dict:
    """Sampler overhead against the raw environment-step time.

    Args:
        env: environment family (metabridge.rl.available_envs()).
        tasks: T, tasks stepped together.
        rollouts: R, episodes per task.
        horizon: H, steps per episode (passed to the family as horizon=).
        hidden: comma-separated policy widths.
        repeats: timed repetitions of each part (the best is kept).
        per_task_params: sample with one parameter set per task (as after the inner step).
        env_kwargs: JSON object of further options of the family.
        threads: torch CPU threads (1: the raw simulator is single-threaded too).
        out: folder for sampler.json and sampler.png (one file pair per env).
    """
    from ..csv_options import parse_csv
    from ..rl import GaussianMLPPolicy, make_env, process_episodes, sample_episodes

    if threads:
        torch.set_num_threads(threads)
    kwargs = parse_json_object(env_kwargs, "--env-kwargs", '{"velocity_range": [0, 3]}') if env_kwargs else {}
    family = make_env(env, horizon=horizon, **kwargs)
    widths = parse_csv(hidden, "--hidden", positive=True)
    policy = GaussianMLPPolicy(family.obs_dim, family.action_dim, widths, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    task_rows = family.sample_tasks(tasks, g)
    params = {k: v.detach().unsqueeze(0).repeat(tasks, *([1] * v.ndim)) if per_task_params else v.detach()
              for k, v in policy.params().items()}
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

    raw(), sampler(), processing()  # warm-up (pools, vmap tracing)
    t_raw, t_sampler, t_proc = _best(raw, repeats), _best(sampler, repeats), _best(processing, repeats)
    family.close()
    steps = tasks * rollouts * horizon
    report = {"env": env, "tasks": tasks, "rollouts": rollouts, "horizon": horizon, "hidden": widths,
              "per_task_params": per_task_params, "threads": torch.get_num_threads(), "env_steps": steps,
              "raw_seconds": t_raw, "sampler_seconds": t_sampler, "processing_seconds": t_proc,
              "raw_steps_per_s": steps / t_raw, "sampler_steps_per_s": steps / t_sampler,
              "with_processing_steps_per_s": steps / (t_sampler + t_proc),
              "overhead": (t_sampler + t_proc - t_raw) / t_raw, "machine": machine("cpu")}
    out.mkdir(parents=True, exist_ok=True)
    stem = env.replace("-", "_")
    atomic_write_text(out / f"{stem}.json", json.dumps(report, indent=2) + "\n")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh(["raw env.step", "sampler", "sampler + baselines/GAE"],
            [report["raw_steps_per_s"], report["sampler_steps_per_s"], report["with_processing_steps_per_s"]])
    ax.set_xlabel("environment steps / s")
    ax.set_title(f"{env}: {tasks} tasks x {rollouts} rollouts x {horizon} steps; overhead "
                 f"{100 * report['overhead']:.1f}%", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=120)
    print(f"{env}: raw {report['raw_steps_per_s']:,.0f} steps/s; sampler {report['sampler_steps_per_s']:,.0f}; "
          f"with baselines + GAE {report['with_processing_steps_per_s']:,.0f}; overhead "
          f"{100 * report['overhead']:.1f}% (target <= 25%)")
    return report
