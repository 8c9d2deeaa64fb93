"""Training loop: exact resume, NaN handling, metrics, config round trip and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from metabridge_toys import Killed, kill_at, params_vector, toy_builder, toy_config

from metabridge.checkpoint import load_checkpoint
from metabridge.config import ExperimentConfig
from metabridge.train import NonFiniteLossError, Trainer, read_metrics, resume_config


@pytest.mark.parametrize(
    "optimizer,schedule", [("adam", "constant"), ("sgd", "cosine"), ("adam", "step"), ("adam", "plateau")]
)
def test_resume_is_bit_identical(tmp_path, optimizer, schedule):
    cfg = dict(optimizer=optimizer, lr_schedule=schedule, steps=12, checkpoint_every=4, eval_every=3)
    full = Trainer(toy_config(tmp_path / "full", **cfg), builder=toy_builder(), progress=False)
    full_result = full.run()
    reference = params_vector(full.experiment.algorithm)

    # killed at step 7, after the checkpoint of step 4 (or 6, when validation at 6 was the best);
    # the steps after it are lost and redone
    killed = Trainer(toy_config(tmp_path / "cut", **cfg), builder=toy_builder(), progress=False, on_step=kill_at(7))
    with pytest.raises(Killed):
        killed.run()
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] in (4, 6)
    resumed = Trainer(toy_config(tmp_path / "cut", **cfg), builder=toy_builder(), progress=False, resume=True)
    result = resumed.run()

    assert result.step == 12
    assert torch.equal(params_vector(resumed.experiment.algorithm), reference)
    # the optimizer state and the validation history match too
    a = full.optimizer.state_dict()["state"]
    b = resumed.optimizer.state_dict()["state"]
    for k in a:
        for name, v in a[k].items():
            if torch.is_tensor(v):
                assert torch.equal(v, b[k][name])
    assert result.best == full_result.best
    # metrics: records of the lost steps were dropped, so each step appears once
    steps = [r["step"] for r in read_metrics(tmp_path / "cut") if r["kind"] == "train"]
    assert steps == sorted(set(steps)) == [r["step"] for r in read_metrics(tmp_path / "full") if r["kind"] == "train"]


def test_different_seed_gives_different_parameters(tmp_path):
    """Guards the resume test against a trainer that ignores its inputs."""
    a = Trainer(toy_config(tmp_path / "a", steps=3, seed=1), builder=toy_builder(), progress=False)
    b = Trainer(toy_config(tmp_path / "b", steps=3, seed=2), builder=toy_builder(), progress=False)
    a.run(), b.run()
    assert not torch.equal(params_vector(a.experiment.algorithm), params_vector(b.experiment.algorithm))


def test_validation_does_not_change_the_training_trajectory(tmp_path):
    a = Trainer(toy_config(tmp_path / "a", steps=6, eval_every=0), builder=toy_builder(), progress=False)
    b = Trainer(toy_config(tmp_path / "b", steps=6, eval_every=1), builder=toy_builder(), progress=False)
    a.run(), b.run()
    assert torch.equal(params_vector(a.experiment.algorithm), params_vector(b.experiment.algorithm))


def test_nan_loss_stops_names_step_and_keeps_last_good_checkpoint(tmp_path):
    cfg = toy_config(tmp_path, steps=20, checkpoint_every=5, eval_every=0, lr=0.05)
    trainer = Trainer(cfg, builder=toy_builder(nan_at_call=8), progress=False)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.run()
    err = info.value
    assert err.step == 8
    message = str(err)
    assert "step 8" in message and "--lr" in message and "last.pt" in message and "step 5" in message
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 5
    assert all(torch.isfinite(t).all() for t in ckpt["algorithm"].values())
    errors = [r for r in read_metrics(tmp_path) if r["kind"] == "error"]
    assert len(errors) == 1 and errors[0]["step"] == 8


def test_divergence_from_a_huge_learning_rate_is_caught(tmp_path):
    cfg = toy_config(tmp_path, steps=200, checkpoint_every=1, eval_every=0, optimizer="sgd", momentum=0.0, lr=1e6)
    with pytest.raises(NonFiniteLossError) as info:
        Trainer(cfg, builder=toy_builder(), progress=False).run()
    assert f"step {info.value.step}" in str(info.value)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] < info.value.step
    assert all(torch.isfinite(t).all() for t in ckpt["algorithm"].values())


def test_diverged_validation_names_the_step(tmp_path):
    cfg = toy_config(tmp_path, steps=10, eval_every=3, checkpoint_every=2)
    with pytest.raises(NonFiniteLossError, match="validation score became nan at step 3") as info:
        Trainer(cfg, builder=toy_builder(nan_in_eval=True), progress=False).run()
    assert info.value.checkpoint_step == 2
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    assert [r["step"] for r in read_metrics(tmp_path) if r["kind"] == "error"] == [3]


def test_metrics_jsonl_and_best_checkpoint(tmp_path):
    result = Trainer(
        toy_config(tmp_path, steps=8, eval_every=4, log_every=2), builder=toy_builder(), progress=False
    ).run()
    records = read_metrics(tmp_path)
    train = [r for r in records if r["kind"] == "train"]
    val = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in train] == [2, 4, 6, 8]
    assert all({"loss", "wall_time", "it_s", "grad_norm", "lr"} <= set(r) for r in train)
    assert [r["step"] for r in val] == [4, 8]
    assert all(r["val_n"] == 20 and r["val_ci95"] > 0 for r in val)
    best = min(val, key=lambda r: r["val_mean"])  # regression: lower MSE is better
    assert result.best["step"] == best["step"]
    assert load_checkpoint(tmp_path / "best.pt")["step"] == best["step"]
    assert ExperimentConfig.load(tmp_path / "config.json") == toy_config(tmp_path, steps=8, eval_every=4, log_every=2)


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    Trainer(toy_config(tmp_path, steps=2), builder=toy_builder(), progress=False).run()
    with pytest.raises(ValueError, match="--resume"):
        Trainer(toy_config(tmp_path, steps=2), builder=toy_builder(), progress=False).run()
    Trainer(toy_config(tmp_path, steps=2), builder=toy_builder(), progress=False, overwrite=True).run()


def test_resume_rejects_a_changed_config(tmp_path):
    Trainer(toy_config(tmp_path, steps=4), builder=toy_builder(), progress=False).run()
    with pytest.raises(ValueError, match="lr"):
        Trainer(toy_config(tmp_path, steps=8, lr=0.5), builder=toy_builder(), progress=False, resume=True).run()
    with pytest.raises(ValueError, match="cannot change"):
        resume_config(tmp_path, seed=4)
    # raising --steps is allowed and continues from step 4
    result = Trainer(resume_config(tmp_path, steps=6), builder=toy_builder(), progress=False, resume=True).run()
    assert result.step == 6


def test_a_cosine_schedule_cannot_be_stretched_on_resume(tmp_path):
    Trainer(toy_config(tmp_path, steps=2, lr_schedule="cosine"), builder=toy_builder(), progress=False).run()
    with pytest.raises(ValueError, match="cosine learning-rate schedule"):
        Trainer(resume_config(tmp_path, steps=4), builder=toy_builder(), progress=False, resume=True).run()


def test_the_step_schedule_cuts_the_rate_once_after_80_percent_of_the_steps(tmp_path):
    t = Trainer(toy_config(tmp_path, steps=10, lr=0.5, lr_schedule="step", plateau_factor=0.1), builder=toy_builder())
    t.progress = False
    t.run()
    lrs = [r["lr"] for r in read_metrics(tmp_path) if r["kind"] == "train"]
    steps = [r["step"] for r in read_metrics(tmp_path) if r["kind"] == "train"]
    expected = [0.5 if s < 8 else 0.05 for s in steps]  # the rate logged after step s; cut after step 8
    assert lrs == pytest.approx(expected)
    with pytest.raises(ValueError, match="step learning-rate schedule"):
        Trainer(resume_config(tmp_path, steps=20), builder=toy_builder(), progress=False, resume=True).run()


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="without --resume"):
        Trainer(toy_config(tmp_path), builder=toy_builder(), progress=False, resume=True).run()


def test_gradient_clipping_bounds_the_update(tmp_path):
    clip = 1e-3
    t = Trainer(
        toy_config(tmp_path, steps=1, eval_every=0, optimizer="sgd", momentum=0.0, lr=1.0, grad_clip=clip),
        builder=toy_builder(dropout=0.0),
        progress=False,
    )
    t.setup()
    before = params_vector(t.experiment.algorithm)
    t.train_step(1)
    moved = (params_vector(t.experiment.algorithm) - before).norm()
    assert moved <= clip * 1.0001


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("steps", 0, "steps: must be >= 1 .*--steps"),
        ("steps", -5, "steps: must be >= 1"),
        ("lr", 0.0, "lr: must be > 0.0 .*--lr"),
        ("lr", -1e-3, "lr: must be > 0"),
        ("lr", float("nan"), "lr: must be a finite number"),
        ("meta_batch_size", 0, "meta_batch_size.*--meta-batch-size"),
        ("k_shot", 0, "k_shot"),
        ("n_way", 1, "n_way"),
        ("grad_clip", 0.0, "grad_clip"),
        ("optimizer", "adagrad", "'adam'"),
        ("device", "tpu", "device"),
    ],
)
def test_bad_config_values_name_the_fix(field, value, needle):
    with pytest.raises(ValueError, match=needle):
        ExperimentConfig.from_dict({field: value, "task": "omniglot" if field == "n_way" else "sinusoid"})


def test_bad_hyperparameter_values_are_refused_before_training(tmp_path):
    """Types are checked with the config, value ranges by the algorithm's constructor when
    the run is built, before any step."""
    with pytest.raises(ValueError, match="inner_steps"):
        ExperimentConfig(hparams={"inner_steps": "five"}).validate()
    cfg = ExperimentConfig(hparams={"inner_lr": -0.1}, out_dir=str(tmp_path / "r"), device="cpu")
    with pytest.raises(ValueError, match="inner_lr"):
        Trainer(cfg, progress=False).run()
    assert not (tmp_path / "r" / "last.pt").exists()


def test_config_json_round_trip_and_unknown_keys(tmp_path):
    cfg = ExperimentConfig(
        task="omniglot",
        n_way=20,
        k_shot=1,
        hparams={"inner_steps": 5, "first_order": True},
        grad_clip=10.0,
        eval_k_shot=5,
    )
    assert ExperimentConfig.from_json(cfg.to_json()) == cfg
    assert ExperimentConfig.load(cfg.save(tmp_path / "c.json")) == cfg
    data = json.loads(cfg.to_json())
    data["learning_rate"] = 0.1
    with pytest.raises(ValueError, match="learning_rate"):
        ExperimentConfig.from_dict(data)


def test_experiment_surfaces_episode_shape_errors(monkeypatch):
    """N-way beyond the classes, and K+Q beyond a class's images, fail with the sampler's message."""
    import metabridge.experiment as experiment
    from metabridge.data.class_dataset import ClassDataset

    ds = ClassDataset(
        torch.zeros(12, 1, 4, 4, dtype=torch.uint8), torch.arange(3).repeat_interleave(4), ["a", "b", "c"], name="tiny"
    )
    monkeypatch.setattr(experiment, "load_split", lambda config, split: ds)
    with pytest.raises(ValueError, match="fewer than n_way=5"):
        experiment.build_task_sources(ExperimentConfig(task="tiny", n_way=5, k_shot=1, q_query=1))
    with pytest.raises(ValueError, match="k_shot \\+ q_query = 5"):
        experiment.build_task_sources(ExperimentConfig(task="tiny", n_way=3, k_shot=2, q_query=3))


def test_training_time_budget_stops_early_and_validates_by_time(tmp_path, monkeypatch):
    """max_train_seconds stops the run; eval_every_seconds validates as training time passes.
    A fake clock makes every training step take exactly one second."""
    import metabridge.train as train_mod

    clock = {"t": 0.0}
    real_step = Trainer.train_step

    def slow_step(self, step):
        clock["t"] += 1.0
        return real_step(self, step)

    monkeypatch.setattr(train_mod.time, "perf_counter", lambda: clock["t"])
    monkeypatch.setattr(Trainer, "train_step", slow_step)
    cfg = toy_config(tmp_path / "budget", steps=100, eval_every=0, eval_every_seconds=4.0, max_train_seconds=10.0)
    result = Trainer(cfg, builder=toy_builder(), progress=False).run()
    assert result.step == 10
    vals = [r for r in read_metrics(tmp_path / "budget") if r["kind"] == "val"]
    assert [r["step"] for r in vals] == [4, 8, 10]
    assert [r["train_seconds"] for r in vals] == [4.0, 8.0, 10.0]
    assert load_checkpoint(tmp_path / "budget" / "last.pt")["step"] == 10
