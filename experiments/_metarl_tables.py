"""Tables shared by the meta-RL experiments' pages (the JSON ``metabridge rl experiment`` writes).

Imported by ``experiments/metarl_*/report.py`` as ``import _metarl_tables``; every number comes from the JSON.
"""

from __future__ import annotations

from typing import Any

import _pagekit as kit


def _lrs(result: dict[str, Any]) -> str:
    lrs = result.get("lrs")
    if not lrs:
        return ""
    return " / ".join(f"{lr:g}" for lr in dict.fromkeys(round(x, 10) for x in lrs))


def returns_table(run: dict[str, Any], updates: list[int] | None = None, digits: int = 2) -> str:
    """Method | return after k test updates (mean ± 95% CI over tasks) | test steps | env steps | train s."""
    first = next(iter(run["methods"].values()))
    ks = updates if updates is not None else list(range(len(first["returns"])))
    rows = []
    for name, res in run["methods"].items():
        rows.append(
            [
                name,
                *[kit.pm(res["returns"][k], res["returns_ci95"][k], digits) for k in ks],
                _lrs(res),
                f"{res['env_steps'] / 1e6:.2f} M",
                f"{res['train_seconds']:.0f}",
            ]
        )
    headers = ["method", *[f"{k} upd." for k in ks], "test steps (tuned)", "env steps", "train s (1 thread)"]
    return kit.table(headers, rows)


def config_line(run: dict[str, Any]) -> str:
    """The run's settings as the JSON records them (MAML's run; DRS gets twice the iterations)."""
    c = run["config"]
    kwargs = ", ".join(f"{k} {v}" for k, v in c["algorithm_kwargs"].items())
    env = ", ".join(f"{k} {v}" for k, v in c["env_kwargs"].items())
    return (
        f"Settings (from the JSON, MAML's run): env `{c['env']}` ({env}); policy {tuple(c['hidden'])} "
        f"{c['activation']}; inner lr {c['inner_lr']}; {c['meta_batch']} tasks x {c['rollouts']} rollouts per "
        f"iteration; {c['iterations']} iterations; {kwargs}; test: {c['eval_tasks']} held-out tasks x "
        f"{c['eval_rollouts']} rollouts per update, evaluation seed {c['eval_seed']}; training seed {run['seed']}."
    )
