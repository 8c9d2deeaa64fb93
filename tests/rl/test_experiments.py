"""The meta-RL experiments end to end on tiny budgets: equal samples, reuse of finished runs, the map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metabridge.rl.experiments import comparison_experiment, tradeoff_experiment

TINY = dict(
    env_kwargs={"horizon": 6},
    hidden=[8],
    meta_batch=3,
    rollouts=3,
    iterations=4,
    eval_every=2,
    eval_tasks=3,
    eval_rollouts=2,
    eval_updates=2,
    checkpoint_every=2,
)


def test_comparison_gives_drs_twice_the_iterations_and_reuses_runs(tmp_path: Path, capsys) -> None:
    report = comparison_experiment(
        "navigation-finn", tmp_path / "out", tmp_path / "runs", ("maml-trpo", "drs-trpo", "drs-ppo"), seed=0, **TINY
    )
    methods = report["methods"]
    assert methods["maml-trpo"]["iterations"] == 4 and methods["drs-trpo"]["iterations"] == 8
    assert methods["drs-ppo"]["config"]["algorithm_kwargs"]["clip"] == 0.2
    # equal samples: DRS samples once per iteration, MAML twice
    ratio = methods["drs-trpo"]["env_steps"] / methods["maml-trpo"]["env_steps"]
    assert 0.6 < ratio < 1.4
    assert len(methods["random init"]["returns"]) == 3
    tuned = methods["drs-trpo (tuned step)"]
    assert tuned["factor"] in (5.0, 1.0, 0.2, 0.04, 0.01) and len(tuned["returns"]) == 3
    assert tuned["validation_scores"][str(tuned["factor"])] == max(tuned["validation_scores"].values())
    assert {"results.json", "returns.png", "table.md"} <= {p.name for p in (tmp_path / "out").iterdir()}
    assert "| maml-trpo |" in capsys.readouterr().out
    stamp = (tmp_path / "runs" / "maml-trpo-s0" / "last.pt").stat().st_mtime_ns
    again = comparison_experiment(
        "navigation-finn", tmp_path / "out", tmp_path / "runs", ("maml-trpo", "drs-trpo", "drs-ppo"), seed=0, **TINY
    )
    assert (tmp_path / "runs" / "maml-trpo-s0" / "last.pt").stat().st_mtime_ns == stamp  # reused, not retrained
    assert again["methods"]["maml-trpo"]["returns"] == methods["maml-trpo"]["returns"]


def test_tradeoff_map_from_seeds(tmp_path: Path) -> None:
    from metabridge.rl.commands import TradeoffConfig, run_tradeoff

    config = TradeoffConfig(out=tmp_path / "out", seeds=[0, 1], progress=False, **TINY)
    report = run_tradeoff(config)
    assert {p.name for p in (tmp_path / "out" / "runs").iterdir()} == {
        "maml-trpo-s0",
        "maml-trpo-s1",
        "drs-trpo-s0",
        "drs-trpo-s1",
    }
    assert TradeoffConfig.from_file(tmp_path / "out" / "config.json") == config
    value = report["map"]["value"]
    assert len(value) == 2 and all(len(row) == 3 for row in value)  # checkpoints x (0..2 updates)
    assert all(-1 <= v <= 1 for row in value for v in row)
    assert report["drs_iterations"] == [4, 8] and report["maml_iterations"] == [2, 4]
    saved = json.loads((tmp_path / "out" / "tradeoff.json").read_text())
    assert saved["map"]["value"] == value
    assert (tmp_path / "out" / "tradeoff.png").stat().st_size > 0
    with pytest.raises(ValueError, match="at least 2 seeds"):
        tradeoff_experiment("navigation-finn", tmp_path / "o2", tmp_path / "r2", seeds=(0,), **TINY)
    with pytest.raises(ValueError, match="seeds"):
        TradeoffConfig(seeds=[0])


@pytest.mark.slow
def test_experiment_command_runs_the_named_experiment_into_out(tmp_path: Path, capsys) -> None:
    from metabridge.rl.commands import RLExperimentConfig, run_experiment

    small = {**TINY, "iterations": 2, "eval_every": 2, "eval_updates": 1}
    report = run_experiment(RLExperimentConfig(name="navigation", out=tmp_path / "nav", progress=False, **small))
    assert report["preset"] == "navigation-finn" and report["references"]["maml"][0] == -40.41
    assert report["methods"]["maml-trpo"]["config"]["meta_batch"] == TINY["meta_batch"]
    assert {"results.json", "returns.png", "table.md", "config.json", "runs"} <= {
        p.name for p in (tmp_path / "nav").iterdir()
    }
    assert "| maml-trpo |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="name"):
        RLExperimentConfig(name="cartpole")


@pytest.mark.parametrize("name", ["RLTrainConfig", "RLEvalConfig", "TradeoffConfig", "RLExperimentConfig"])
def test_every_rl_setting_is_described_and_writes_under_runs(name: str) -> None:
    import metabridge.rl.commands as commands
    from metabridge.config import CommandConfig

    model = getattr(commands, name)
    assert issubclass(model, CommandConfig)
    assert all(info.description for info in model.model_fields.values()), name
    assert str(model.model_fields["out"].default).startswith("runs/rl/")


def test_finetune_result_reports_mean_and_95_ci_over_tasks() -> None:
    import torch

    from metabridge.rl.evaluate import FinetuneResult
    from metabridge.stats import mean_ci95

    returns = torch.tensor([[-4.0, -2.0, -3.0, -7.0], [-1.0, -1.5, -0.5, -1.0]])
    success = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0]])
    res = FinetuneResult(returns, success, env_steps=80)
    assert res.mean_returns() == [-4.0, -1.0]
    assert res.returns_ci95() == pytest.approx([mean_ci95(r).ci95 for r in returns])
    assert res.returns_ci95()[0] == pytest.approx(1.96 * float(returns[0].std()) / 2)
    assert [(s.mean, s.n) for s in res.returns_summary()] == [(-4.0, 4), (-1.0, 4)]
    assert res.success_ci95() == pytest.approx([mean_ci95(s).ci95 for s in success])
    assert FinetuneResult(returns, None, 0).success_ci95() is None
    assert FinetuneResult(returns[:, :1], None, 0).returns_ci95() == [0.0, 0.0]  # one task: no spread to report
