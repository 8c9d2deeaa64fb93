"""The meta-RL trainer: exact resume after a kill, config checks, clear errors, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metabridge.checkpoint import CheckpointError
from metabridge.metrics_log import read_metrics
from metabridge.rl import MetaEnv, Navigation2D, StepResult, register_env
from metabridge.rl.config import RLConfig
from metabridge.rl.presets import available_presets, preset_config
from metabridge.rl.trainer import RLTrainingError, load_rl_run, train_rl

TINY = dict(
    env="navigation-2d",
    env_kwargs={"horizon": 8},
    hidden=[8],
    meta_batch=3,
    rollouts=3,
    iterations=6,
    eval_every=3,
    eval_tasks=3,
    eval_rollouts=2,
    eval_updates=1,
    checkpoint_every=2,
)


def tiny(algorithm: str = "maml-trpo", **kw: object) -> RLConfig:
    return RLConfig(**{**TINY, "algorithm": algorithm, **kw})


class Killed(RuntimeError):
    pass


def _params(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_rl_run(run_dir)[2].state_dict()


@pytest.mark.parametrize("algorithm", ["maml-trpo", "drs-trpo", "drs-ppo"])
def test_resume_after_kill_equals_uninterrupted(tmp_path: Path, algorithm: str) -> None:
    cfg = tiny(algorithm)
    full = train_rl(cfg, tmp_path / "full", progress=False)

    def kill(it: int, stats: dict[str, float]) -> None:
        if it == 5:  # after the checkpoint of iteration 4, before that of 6
            raise Killed

    with pytest.raises(Killed):
        train_rl(cfg, tmp_path / "cut", progress=False, on_iteration=kill)
    resumed = train_rl(cfg, tmp_path / "cut", resume=True, progress=False)
    a, b = _params(tmp_path / "full"), _params(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.env_steps == full.env_steps
    steps = [r["step"] for r in read_metrics(tmp_path / "cut") if r["kind"] == "train"]
    assert steps == list(range(1, 7))  # the killed run's iteration 5 record was dropped, none duplicated
    assert resumed.final["returns"] == full.final["returns"]


def test_resume_refuses_a_changed_config(tmp_path: Path) -> None:
    train_rl(tiny(iterations=2), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="inner_lr"):
        train_rl(tiny(iterations=4, inner_lr=0.5), tmp_path, resume=True, progress=False)
    more = train_rl(tiny(iterations=4), tmp_path, resume=True, progress=False)  # iterations may grow
    assert more.iteration == 4


def test_existing_run_needs_resume_or_overwrite(tmp_path: Path) -> None:
    train_rl(tiny(iterations=1), tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train_rl(tiny(iterations=1), tmp_path, progress=False)
    train_rl(tiny(iterations=1), tmp_path, overwrite=True, progress=False)


def test_training_leaves_global_rng_untouched(tmp_path: Path) -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    train_rl(tiny(iterations=1), tmp_path, progress=False)
    assert torch.equal(before, torch.get_rng_state())


def test_seed_changes_the_run(tmp_path: Path) -> None:
    a = train_rl(tiny(iterations=1, seed=0), tmp_path / "a", progress=False)
    b = train_rl(tiny(iterations=1, seed=1), tmp_path / "b", progress=False)
    assert a.final["returns"] != b.final["returns"]


class NaNRewardEnv(Navigation2D):
    name = "nan-reward"

    def step(self, actions: torch.Tensor) -> StepResult:
        out = super().step(actions)
        return StepResult(out.observation, out.reward * float("nan"), out.done)


def test_non_finite_rewards_stop_with_a_clear_error(tmp_path: Path) -> None:
    register_env("nan-reward-test", lambda **kw: NaNRewardEnv(**kw), replace=True)
    with pytest.raises(FloatingPointError, match="non-finite reward"):
        train_rl(tiny(env="nan-reward-test", iterations=1), tmp_path, progress=False)


def test_diverging_parameters_stop_and_keep_the_checkpoint(tmp_path: Path) -> None:
    calls = {"n": 0}

    def poison(it: int, stats: dict[str, float]) -> None:
        calls["n"] += 1

    cfg = tiny("drs-ppo", iterations=4, checkpoint_every=1, algorithm_kwargs={"learning_rate": 1e-3})
    train_rl(cfg.model_copy(update={"iterations": 2}), tmp_path, progress=False, on_iteration=poison)
    # poison the policy through the checkpoint-free path: a learning rate of inf on resume is a config change,
    # so corrupt the parameters in a subclass of the algorithm run instead
    from metabridge.rl import trainer as trainer_module

    original = trainer_module.build_rl_algorithm

    def exploding(config: RLConfig, policy: torch.nn.Module):  # type: ignore[no-untyped-def]
        alg = original(config, policy)
        step = alg.train_iteration

        def bad(*args, **kwargs):  # type: ignore[no-untyped-def]
            out = step(*args, **kwargs)
            with torch.no_grad():
                next(policy.parameters()).fill_(float("nan"))
            return out

        alg.train_iteration = bad  # type: ignore[method-assign]
        return alg

    trainer_module.build_rl_algorithm = exploding
    try:
        with pytest.raises(RLTrainingError, match="iteration 2") as err:
            train_rl(cfg, tmp_path, resume=True, progress=False)
    finally:
        trainer_module.build_rl_algorithm = original
    assert "last.pt" in str(err.value) and "Lower inner_lr" in str(err.value)
    assert load_rl_run(tmp_path)[3] == 2  # the good checkpoint of iteration 2 survives


def test_presets_validate_and_reject_bad_overrides(tmp_path: Path) -> None:
    assert "navigation-finn" in available_presets()
    cfg = preset_config("navigation-finn", "drs-ppo")
    merged = preset_config("navigation-finn", env_kwargs={"horizon": 5}).env_kwargs
    assert merged == {"action_scale": 0.1, "horizon": 5}  # added to the preset's
    assert preset_config("navigation-finn", env="another-family").env_kwargs == {}  # another env starts from none
    assert cfg.algorithm_kwargs["clip"] == 0.2 and "max_kl" not in cfg.algorithm_kwargs
    with pytest.raises(ValueError, match="available"):
        preset_config("no-such-preset")
    with pytest.raises(ValueError):
        preset_config("navigation-finn", meta_batch=0)
    with pytest.raises(ValueError, match="do not fit"):
        train_rl(tiny("drs-ppo", algorithm_kwargs={"max_kl": 0.1}), tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()  # a bad config writes nothing


def test_eval_schedule_repeats_the_last_step_size() -> None:
    assert tiny(eval_updates=4, eval_lrs=[0.5, 0.25]).eval_schedule() == [0.5, 0.25, 0.25, 0.25]
    assert tiny(eval_updates=2, inner_lr=0.3).eval_schedule() == [0.3, 0.3]


def test_rl_train_then_eval_report_returns_with_their_interval(tmp_path: Path, capsys) -> None:
    from metabridge.rl.commands import RLEvalConfig, RLTrainConfig, run_eval, run_train

    over = {k: v for k, v in TINY.items() if k != "env"} | {"iterations": 2}
    train = RLTrainConfig(out=tmp_path / "r", preset="navigation-finn", algorithm="drs-trpo", progress=False, **over)
    result = run_train(train)
    assert result.iteration == 2
    printed = capsys.readouterr().out
    assert "mean ± 95% CI over 3 held-out tasks" in printed and "after 0 updates: return" in printed
    saved = RLConfig(**json.loads((tmp_path / "r" / "config.json").read_text()))
    assert saved.meta_batch == 3 and saved.algorithm == "drs-trpo"
    assert RLTrainConfig.from_file(tmp_path / "r" / "config.json").rl_config() == saved  # --config RUN/config.json
    report = run_eval(RLEvalConfig(run=tmp_path / "r", updates=2, out=tmp_path / "e"))
    data = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert data == json.loads(json.dumps(report)) and data["iteration"] == 2
    assert len(data["returns"]) == 3 and len(data["returns_ci95"]) == 3 and all(c > 0 for c in data["returns_ci95"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "after 2 updates" in line]
    assert lines and f"{data['returns'][2]:.2f} ± {data['returns_ci95'][2]:.2f}" in lines[0]
    assert json.loads((tmp_path / "e" / "config.json").read_text())["updates"] == 2


def test_rl_train_resume_keeps_the_runs_own_settings(tmp_path: Path) -> None:
    from metabridge.rl.commands import RLTrainConfig, run_train

    over = {k: v for k, v in TINY.items() if k not in ("env", "env_kwargs")} | {"iterations": 2, "eval_every": 2}
    run_train(
        RLTrainConfig(out=tmp_path, algorithm="drs-ppo", seed=3, env_kwargs={"horizon": 8}, progress=False, **over)
    )
    result = run_train(RLTrainConfig(out=tmp_path, resume=True, iterations=4, progress=False))  # no other option
    saved = RLConfig(**json.loads((tmp_path / "config.json").read_text()))
    assert result.iteration == 4 and saved.iterations == 4
    assert saved.algorithm == "drs-ppo" and saved.seed == 3 and saved.meta_batch == 3
    assert saved.env_kwargs == {"action_scale": 0.1, "horizon": 8}


def test_rl_eval_of_a_folder_without_a_run_says_so(tmp_path: Path) -> None:
    from metabridge.rl.commands import RLEvalConfig, run_eval

    for folder in (tmp_path, tmp_path / "missing"):
        with pytest.raises(CheckpointError, match=f"no run in {folder}; train one with metabridge rl train"):
            run_eval(RLEvalConfig(run=folder, out=tmp_path / "e"))


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"algorithm": "pearl"}, ["algorithm", "'pearl'", "drs-ppo, drs-trpo, fo-maml-trpo, maml-trpo"]),
        ({"meta_batch": -3}, ["meta_batch: must be >= 1 (got -3)"]),
        ({"preset": "nope"}, ["unknown meta-RL preset 'nope'", "navigation-finn"]),
        ({"resume": True, "overwrite": True}, ["--resume", "--overwrite"]),
    ],
)
def test_invalid_rl_settings_are_one_line_naming_the_field(settings: dict, words: list[str]) -> None:
    from pydantic import ValidationError

    from metabridge.config import describe_validation_error
    from metabridge.rl.commands import RLTrainConfig

    with pytest.raises(ValidationError) as err:
        RLTrainConfig(**settings)
    text = describe_validation_error(err.value)
    assert "\n" not in text and "pydantic" not in text and all(w in text for w in words), text


def test_invalid_rl_settings_from_a_preset_are_one_line() -> None:
    with pytest.raises(ValueError) as err:
        preset_config("navigation-finn", eval_lrs=[-0.5])
    assert "eval_lrs" in str(err.value) and "\n" not in str(err.value) and "pydantic" not in str(err.value)


def test_cli_rl_train_refuses_an_unknown_algorithm_in_one_line(tmp_path: Path) -> None:
    from cli_runner import run_cli

    res = run_cli(["rl", "train", "--algorithm", "pearl", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert "pearl" in res.output and "maml-trpo" in res.output and "errors.pydantic.dev" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    res = run_cli(["rl", "train", "--meta-batch", "-3", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "meta_batch" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_cli_rl_train_then_eval_naming_the_run_positionally(tmp_path: Path) -> None:
    from cli_runner import run_cli

    res = run_cli(
        [
            "rl",
            "train",
            "--preset",
            "navigation-finn",
            "--algorithm",
            "drs-trpo",
            "--env-kwargs",
            "horizon=8",
            "--hidden",
            "8",
            "--meta-batch",
            "3",
            "--rollouts",
            "3",
            "--iterations",
            "2",
            "--eval-every",
            "2",
            "--eval-tasks",
            "3",
            "--eval-rollouts",
            "2",
            "--eval-updates",
            "1",
            "--checkpoint-every",
            "2",
            "--no-progress",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["env_kwargs"] == {"action_scale": 0.1, "horizon": 8}  # added to the preset's
    assert saved["hidden"] == [8] and saved["algorithm"] == "drs-trpo" and saved["iterations"] == 2
    res = run_cli(["rl", "eval", str(tmp_path / "r"), "--updates", "1", "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert len(json.loads((tmp_path / "e" / "eval.json").read_text())["returns_ci95"]) == 2
    res = run_cli(["rl", "eval", str(tmp_path / "none"), "--out", str(tmp_path / "e")])
    assert res.exit_code != 0 and f"no run in {tmp_path / 'none'}" in res.output
    # a plain --resume continues the run from its own saved settings (the command's options never replace them)
    res = run_cli(["rl", "train", "--resume", "--iterations", "3", "--no-progress", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    resumed = json.loads((tmp_path / "r" / "config.json").read_text())
    assert resumed["hidden"] == [8] and resumed["algorithm"] == "drs-trpo" and resumed["iterations"] == 3


def test_user_environment_plugs_in(tmp_path: Path) -> None:
    class Line(MetaEnv):
        """1-D: reach a goal g ~ U(-1, 1); reward -|x - g|."""

        name, obs_dim, action_dim, task_dim, horizon = "line", 1, 1, 1, 5

        def sample_tasks(self, n, generator, split="train"):  # type: ignore[no-untyped-def]
            return torch.rand(n, 1, generator=generator) * 2 - 1

        def reset(self, tasks, rollouts, generator):  # type: ignore[no-untyped-def]
            self.goal = tasks[:, None, :].expand(-1, rollouts, -1)
            self.x = torch.zeros_like(self.goal)
            return self.x.clone()

        def step(self, actions):  # type: ignore[no-untyped-def]
            self._check_actions(actions, tuple(self.x.shape[:2]))
            self.x = self.x + actions.clamp(-0.2, 0.2)
            r = -(self.x - self.goal).abs().squeeze(-1)
            return StepResult(self.x.clone(), r, torch.zeros_like(r, dtype=torch.bool))

    register_env("line-test", Line, replace=True)
    result = train_rl(tiny(env="line-test", env_kwargs={}, iterations=2), tmp_path, progress=False)
    assert len(result.final["returns"]) == 2
