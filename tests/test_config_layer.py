"""The one settings layer: typed config fields, generated CLI options, config files,
hyperparameters checked against each algorithm's constructor, resume with the original
command, data-derived metrics, corrupt-checkpoint messages, construction records."""

from __future__ import annotations

import json
import re

import pytest
import torch
from cli_runner import run_cli
from metabridge_toys import toy_config

from metabridge.checkpoint import load_checkpoint
from metabridge.config import ExperimentConfig, hparams_model, option_name, validate_hparams
from metabridge.experiment import Experiment, RegressionSource
from metabridge.tasks.batch import TaskBatch
from metabridge.train import Trainer, read_metrics, task_metric

SIN = [
    "--task",
    "sinusoid",
    "--algorithm",
    "maml",
    "--k-shot",
    "5",
    "--q-query",
    "5",
    "--meta-batch-size",
    "4",
    "--val-episodes",
    "10",
    "--test-episodes",
    "10",
    "--eval-batch-size",
    "10",
    "--device",
    "cpu",
    "--no-progress",
    "--hp",
    "inner_steps=1",
    "--hp",
    "inner_lr=0.01",
]


def _squeezed(text: str) -> str:
    """Help text without its frame and line breaks (tyro wraps long descriptions)."""
    return re.sub(r"[\s│╭╮╰╯─]+", "", text)


# ------------------------------------------------------------- one source of truth
def test_every_config_field_is_reachable_from_the_cli():
    result = run_cli(["train", "--help"])
    assert result.exit_code == 0, result.output
    for name in ExperimentConfig.model_fields:
        assert re.search(rf"{re.escape(option_name(name))}\b", result.stdout), f"config field {name} has no option"


def test_every_train_option_help_is_its_field_description():
    text = _squeezed(run_cli(["train", "--help"]).stdout)
    for name, field in ExperimentConfig.model_fields.items():
        assert field.description, f"{name} has no description"
        assert _squeezed(field.description) in text, name


def test_cli_options_set_the_fields_they_name(tmp_path):
    """Each scalar option, given a non-default value, lands in the saved config."""
    out = tmp_path / "r"
    r = run_cli(
        [
            "train",
            *SIN,
            "--steps",
            "1",
            "--eval-every",
            "0",
            "--max-train-seconds",
            "30",
            "--eval-every-seconds",
            "12.5",
            "--lr-schedule",
            "cosine",
            "--optimizer",
            "sgd",
            "--momentum",
            "0.5",
            "--grad-clip",
            "2",
            "--model-arg",
            "hidden=[8,8]",
            "--out",
            str(out),
        ]
    )
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["max_train_seconds"] == 30 and saved["eval_every_seconds"] == 12.5
    assert saved["lr_schedule"] == "cosine" and saved["optimizer"] == "sgd" and saved["momentum"] == 0.5
    assert saved["model_kwargs"] == {"hidden": [8, 8]} and saved["grad_clip"] == 2
    # the backbone argument reached the model: two hidden layers of width 8
    weights = load_checkpoint(out / "last.pt")["algorithm"]
    shapes = sorted(tuple(v.shape) for k, v in weights.items() if k.endswith("weight"))
    assert (8, 8) in shapes and all(max(s) <= 8 for s in shapes)


def test_recipe_options_set_their_fields(tmp_path):
    out = tmp_path / "r"
    r = run_cli(
        [
            "train",
            *SIN,
            "--steps",
            "2",
            "--eval-every",
            "1",
            "--lr-schedule",
            "plateau",
            "--plateau-factor",
            "0.5",
            "--plateau-patience",
            "2",
            "--early-stopping-patience",
            "7",
            "--out",
            str(out),
        ]
    )
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["lr_schedule"], saved["plateau_factor"], saved["plateau_patience"]) == ("plateau", 0.5, 2)
    assert saved["early_stopping_patience"] == 7 and saved["augment"] is None
    r = run_cli(
        ["train", *SIN, "--steps", "2", "--eval-every", "0", "--lr-schedule", "plateau", "--out", str(tmp_path / "s")]
    )
    assert r.exit_code == 2 and "--eval-every N" in r.output, r.output


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_config_files_in_three_formats(tmp_path, suffix):
    text = {
        ".toml": 'task = "sinusoid"\nsteps = 7\nk_shot = 3\n[hparams]\ninner_lr = 0.02\n',
        ".yaml": "task: sinusoid\nsteps: 7\nk_shot: 3\nhparams:\n  inner_lr: 0.02\n",
        ".json": json.dumps({"task": "sinusoid", "steps": 7, "k_shot": 3, "hparams": {"inner_lr": 0.02}}),
    }[suffix]
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    cfg = ExperimentConfig.load(path)
    assert (cfg.steps, cfg.k_shot, cfg.hparams) == (7, 3, {"inner_lr": 0.02})
    bad = tmp_path / f"bad{suffix}"
    bad.write_text(text.replace("steps", "stpes"))
    with pytest.raises(ValueError, match="stpes"):
        ExperimentConfig.load(bad)


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("k_shot", 0, "--k-shot"),
        ("lr", float("nan"), "--lr"),
        ("optimizer", "adagrad", "'adam'"),
        ("device", "tpu", "--device"),
        ("momentum", 1.0, "--momentum"),
        ("eval_every", -1, "--eval-every"),
    ],
)
def test_field_constraints_name_the_option(field, value, needle):
    with pytest.raises(ValueError, match=needle):
        ExperimentConfig.from_dict({field: value})


def test_hyperparameters_are_checked_against_the_constructor():
    fields = hparams_model("maml").model_fields
    assert {"inner_lr", "inner_steps", "first_order", "eval_steps"} <= set(fields)
    assert "model" not in fields
    validate_hparams("maml", {"inner_lr": 0.1, "first_order": True})
    with pytest.raises(ValueError, match="no hyperparameter 'inner_lrr'.*inner_lr"):
        validate_hparams("maml", {"inner_lrr": 0.1})
    with pytest.raises(ValueError, match="inner_steps"):
        validate_hparams("maml", {"inner_steps": "many"})
    # a hyperparameter *named* like a rate is no longer checked by its name: only by its type
    with pytest.raises(ValueError, match="learn_inner_lr"):
        validate_hparams("maml", {"learn_inner_lr": "per_epoch"})


# ----------------------------------------------------------------- defect 5: resume
def test_resume_with_the_original_command_works(tmp_path):
    out = tmp_path / "sin"
    cmd = ["train", *SIN, "--steps", "2", "--eval-every", "0", "--checkpoint-every", "1", "--out", str(out)]
    r = run_cli(cmd)
    assert r.exit_code == 0, r.output
    r = run_cli([*cmd, "--resume"])  # the same command plus --resume: nothing changed
    assert r.exit_code == 0, r.output
    r = run_cli([*cmd[:-2], "--steps", "3", "--out", str(out), "--resume"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out / "last.pt")["step"] == 3
    changed = [a if a != "inner_lr=0.01" else "inner_lr=0.5" for a in cmd]
    r = run_cli([*changed, "--resume"])
    assert r.exit_code == 2 and "--hp inner_lr" in r.output and "0.5" in r.output, r.output
    r = run_cli([*cmd, "--k-shot", "4", "--resume"])
    assert r.exit_code == 2 and "--k-shot" in r.output, r.output


# ---------------------------------------------------- defect 2: metric from the data
class _ShrinkingRegression:
    """A custom regression source whose validation MSE falls as training goes on."""

    def __init__(self) -> None:
        self.inner = RegressionSource(__import__("metabridge").SinusoidFamily(), 5, 5)

    def sample(self, num_tasks, generator):
        return self.inner.sample(num_tasks, generator)

    def fixed_episodes(self, num_episodes, seed, batch_size=32):
        return self.inner.fixed_episodes(num_episodes, seed, batch_size)


def test_best_checkpoint_of_a_custom_regression_task_is_the_lowest_mse(tmp_path):
    from metabridge_toys import ToyANIL

    def build(config):
        src = _ShrinkingRegression()
        return Experiment(config, ToyANIL(), src, src, src)

    cfg = toy_config(tmp_path / "r", task="my_regression", steps=40, eval_every=10, checkpoint_every=10, lr=3e-2)
    trainer = Trainer(cfg, builder=build, progress=False)
    result = trainer.run()
    vals = [r["val_mean"] for r in read_metrics(tmp_path / "r") if r["kind"] == "val"]
    assert len(vals) == 4 and min(vals) < vals[0]
    assert result.best["metric"] == "mse" and result.best["mean"] == min(vals)


def test_task_metric_comes_from_the_labels():
    x = torch.zeros(1, 2, 3)
    cls = TaskBatch(x, torch.zeros(1, 2, dtype=torch.long), x, torch.zeros(1, 2, dtype=torch.long))
    reg = TaskBatch(x, torch.zeros(1, 2, 1), x, torch.zeros(1, 2, 1))

    class Src:
        def __init__(self, b):
            self.b = b

        def fixed_episodes(self, n, seed, bs=1):
            yield self.b

    assert task_metric(Src(cls)) == "accuracy" and task_metric(Src(reg)) == "mse"


# --------------------------------------------------------- defect 6: corrupt last.pt
class _NotAllowed:
    pass


@pytest.mark.parametrize("damage", ["garbage", "truncated", "unpicklable"])
def test_corrupt_last_checkpoint_is_one_line_and_falls_back(tmp_path, damage):
    out = tmp_path / "sin"
    r = run_cli(["train", *SIN, "--steps", "2", "--eval-every", "0", "--checkpoint-every", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    last = out / "last.pt"
    if damage == "garbage":
        last.write_bytes(b"\x00garbage")
    elif damage == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    else:
        torch.save({"x": _NotAllowed()}, last)  # weights_only refuses it with a long torch message
    r = run_cli(["eval", str(out), "--which", "last", "--episodes", "10", "--no-progress"])
    assert r.exit_code == 0, r.output
    notes = [line for line in r.output.splitlines() if "is corrupt" in line]
    assert len(notes) == 1 and "last.pt" in notes[0] and "last.prev.pt" in notes[0], r.output
    assert "Please file an issue" not in r.output and "operand" not in r.output
    r = run_cli(["train", *SIN, "--steps", "3", "--out", str(out), "--resume"])
    assert r.exit_code == 0, r.output
    notes = [line for line in r.output.splitlines() if "is corrupt" in line]
    assert len(notes) == 1 and notes[0].startswith("metabridge: ") and "last.prev.pt (step 1)" in notes[0]
    # with no good checkpoint left at all: one clean error naming the file and the fix
    for p in out.glob("*.pt"):
        p.write_bytes(b"\x00garbage")
    r = run_cli(["eval", str(out), "--no-progress"])
    assert r.exit_code == 1 and "corrupt" in r.output and "--overwrite" in r.output
    assert len([line for line in r.output.splitlines() if line.strip()]) == 1, r.output


# ------------------------------------------------- construction record and export
def test_eval_rebuilds_without_the_training_split(tmp_path, monkeypatch):
    out = tmp_path / "sin"
    r = run_cli(["train", *SIN, "--steps", "1", "--eval-every", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    record = load_checkpoint(out / "last.pt")["build"]
    assert record["algorithm"] == "maml" and record["hparams"] == {"inner_steps": 1, "inner_lr": 0.01}
    import metabridge.experiment as experiment

    loaded = []
    real = experiment.build_task_source
    monkeypatch.setattr(
        experiment, "build_task_source", lambda cfg, split, *device: loaded.append(split) or real(cfg, split, *device)
    )
    r = run_cli(["eval", str(out), "--episodes", "10", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert loaded == ["test"]


def test_safetensors_export_round_trip(tmp_path):
    import metabridge

    out = tmp_path / "sin"
    r = run_cli(["train", *SIN, "--steps", "2", "--eval-every", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    path = tmp_path / "maml.safetensors"
    r = run_cli(["export", str(out), "--out", str(path)])
    assert r.exit_code == 0, r.output
    algo = metabridge.load_pretrained(path)
    state = load_checkpoint(out / "last.pt")["algorithm"]
    for k, v in algo.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle


def test_a_written_config_json_is_a_valid_config_file(tmp_path):
    """The config.json a run writes can start another run through --config."""
    out = tmp_path / "sin"
    r = run_cli(["train", *SIN, "--steps", "1", "--eval-every", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = run_cli(["train", "--config", str(out / "config.json"), "--out", str(tmp_path / "again"), "--no-progress"])
    assert r.exit_code == 0, r.output
    first, again = (json.loads((d / "config.json").read_text()) for d in (out, tmp_path / "again"))
    assert {k: v for k, v in first.items() if k != "out_dir"} == {k: v for k, v in again.items() if k != "out_dir"}


def test_validation_messages_name_the_model_they_are_about():
    from pydantic import BaseModel, ConfigDict, ValidationError

    from metabridge.config import describe_validation_error

    with pytest.raises(ValueError, match=r"unknown field 'stpes' \(did you mean steps\?\)"):
        ExperimentConfig.from_dict({"stpes": 3})

    class Other(BaseModel):
        model_config = ConfigDict(extra="forbid")
        rollouts: int = 1

    with pytest.raises(ValidationError) as info:
        Other(rollout=2)
    text = describe_validation_error(info.value)  # not ExperimentConfig's: no option names, no field listing
    assert "unknown field 'rollout'" in text and "k_shot" not in text and "\n" not in text
    assert "(did you mean rollouts?)" in describe_validation_error(info.value, model=Other)
