"""``metabridge compare``'s budget: a step budget under the official recipe, annealed to its end, by
default; ``--budget-seconds`` as the opt-in wall-clock budget; the verdict a run records and prints."""

from __future__ import annotations

import json
import math

import pytest

from metabridge.benchmarks import compare as compare_mod
from metabridge.benchmarks.compare import CompareConfig, run


def test_the_main_job_is_a_step_budget_under_the_official_recipe_annealed_to_its_end() -> None:
    short, full = CompareConfig(), CompareConfig(full=True)
    assert short.recipe == "official"
    for config, steps, every, val, test in ((short, 300, 20, 100, 600), (full, 1000, 50, 300, 1000)):
        for method in ("mtl", "maml", "protonet"):
            cfg = config.method_config(method)
            assert (cfg.steps, cfg.eval_every, cfg.max_train_seconds, cfg.eval_every_seconds) == (
                steps,
                every,
                None,
                None,
            )
            assert (cfg.val_episodes, cfg.test_episodes) == (val, test)
            assert (cfg.lr_schedule, cfg.early_stopping_patience, cfg.augment) == ("step", None, "auto")
        assert config.method_config("mtl").hparams == {"head_init": "official", "train_forward": "per_task"}
        settings = config.report_settings()
        assert (settings["budget_steps"], settings["eval_every_steps"]) == (steps, every)
        assert settings["budget_seconds"] is None and settings["eval_every_seconds"] is None
        assert settings["training"] == {"lr_schedule": "step", "early_stopping_patience": None}


def test_budget_seconds_is_the_opt_in_wall_clock_budget() -> None:
    for config, seconds, every in (
        (CompareConfig(budget_seconds=90.0), 90.0, 25.0),
        (CompareConfig(budget_seconds=90.0, full=True), 90.0, 60.0),
        (CompareConfig(budget_seconds=90.0, eval_every_seconds=10.0), 90.0, 10.0),
    ):
        cfg = config.method_config("maml")
        assert (cfg.max_train_seconds, cfg.eval_every_seconds, cfg.eval_every, cfg.steps) == (seconds, every, 0, 10**9)
        assert (cfg.lr_schedule, cfg.early_stopping_patience) == ("plateau", 15)  # the official recipe's
        assert config.resolved("budget_steps") is None and config.resolved("eval_every_steps") is None
        assert config.report_settings()["training"] == {}
    old = CompareConfig(recipe="default", budget_seconds=200.0, eval_every_seconds=25.0).method_config("mtl")
    assert (old.lr_schedule, old.early_stopping_patience, old.augment, old.hparams) == ("constant", None, None, {})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"budget_steps": 100, "budget_seconds": 60.0}, "either --budget-steps or --budget-seconds, not both"),
        ({"eval_every_seconds": 10.0}, "--eval-every-seconds needs --budget-seconds"),
        ({"budget_steps": 100, "eval_every_seconds": 10.0}, "--eval-every-seconds needs --budget-seconds"),
        ({"budget_seconds": 60.0, "eval_every_steps": 5}, "--eval-every-steps needs a step budget"),
    ],
)
def test_a_step_budget_and_a_clock_budget_do_not_mix(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CompareConfig(**options)


def test_compare_records_the_verdict_and_run_prints_it(tmp_path, monkeypatch, capsys) -> None:
    # validation every 20 steps to the 300-step budget; MTL flat from step 60, MAML still climbing
    points = {
        "mtl": [(2.0 * s, 0.6 if s < 60 else 0.9) for s in range(20, 301, 20)],
        "maml": [(5.0 * s, 0.5 + 0.001 * s) for s in range(20, 301, 20)],
    }

    def fake_worker(spec: dict) -> dict:
        m = spec["method"]
        curve = [
            {"train_seconds": t, "step": 20 * (i + 1), "val_mean": a, "val_ci95": 0.01}
            for i, (t, a) in enumerate(points[m])
        ]
        final = curve[-1]["val_mean"]
        return {
            "curve": curve,
            "test": {"1": {"mean": final, "ci95": 0.01}, "5": {"mean": final, "ci95": 0.01}},
            "train_seconds": curve[-1]["train_seconds"],
            "steps": 300,
            "stopped_early": False,
            "seconds_per_iteration": 0.1,
            "peak_memory_mb": 10.0,
            "config": spec["config"],
        }

    monkeypatch.setattr(compare_mod, "run_worker", fake_worker)
    report = run(CompareConfig(methods=["mtl", "maml"], out=tmp_path / "c"))
    assert report["summary"]["settled"] == {"mtl": "converged", "maml": "annealed"}
    written = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert written["verdict"]["best"] == {"1": "mtl", "5": "mtl"}
    # MAML's target 0.8 - 0.01 = 0.79, first reached at step 300 (1500 s); MTL's at step 60 (120 s)
    assert math.isclose(written["verdict"]["step_ratio"], 5.0) and math.isclose(written["verdict"]["time_ratio"], 12.5)
    assert written["verdict"]["mtl_to_reference"] == "sooner"
    out = capsys.readouterr().out
    assert "  annealed" in out and "verdict (seed 0):" in out
    assert "sooner (in training steps): MAML took 12.50x MTL's training seconds and 5.00x its steps" in out
