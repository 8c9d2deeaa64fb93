"""Training-recipe features for every method: the plateau schedule and early stopping
(Wang et al.'s official MTL code), augmentation of training episodes drawn from the
task generator, and the training-progress hook; each survives an exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from metabridge_toys import Killed, ToyANIL, kill_at, params_vector, toy_builder, toy_config
from torch import nn

import metabridge as mb
import metabridge.experiment as experiment
from metabridge.checkpoint import load_checkpoint
from metabridge.config import ExperimentConfig
from metabridge.data.class_dataset import ClassDataset
from metabridge.stats import MeanCI
from metabridge.tasks.episodes import EpisodeSampler
from metabridge.train import Trainer, read_metrics, resume_config


def _run(cfg: ExperimentConfig, builder=None, **kw) -> tuple[Trainer, mb.TrainResult]:
    trainer = Trainer(cfg, builder=builder or toy_builder(), progress=False, tensorboard=False, **kw)
    return trainer, trainer.run()


def _assert_same_tensors(a: dict, b: dict) -> None:
    for k, v in a.items():
        if torch.is_tensor(v):
            assert torch.equal(v, b[k]), k
        elif isinstance(v, dict):
            _assert_same_tensors(v, b[k])


# ------------------------------------------------- plateau schedule and early stopping
#: a toy run (MSE, lower is better) whose validation stalls twice: the rate is cut at
#: steps 18, 52 and 56, and early stopping (patience 4) ends it at step 56 of 60
PLATEAU = dict(
    steps=60,
    eval_every=2,
    checkpoint_every=3,
    lr=3e-2,
    lr_schedule="plateau",
    plateau_patience=1,
    early_stopping_patience=4,
)


def _scripted_validation(monkeypatch, scores: list[float], metric: str) -> None:
    """Validation returns ``scores`` in turn; the task metric is ``metric``."""
    import metabridge.train as train_mod

    it = iter(scores)
    monkeypatch.setattr(train_mod, "task_metric", lambda source: metric)
    monkeypatch.setattr(Trainer, "validate", lambda self: MeanCI(next(it), 0.01, 10))


@pytest.mark.parametrize("metric", ["accuracy", "mse"])
def test_plateau_and_early_stopping_semantics(tmp_path, monkeypatch, metric):
    """torch's ReduceLROnPlateau: cut after ``patience`` non-improving validations, at the next
    one; early stopping: stop at the ``patience``-th validation without a new best. The
    direction follows the metric."""
    quality = [1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3]
    scores = [q / 10 if metric == "accuracy" else 1.0 - q / 10 for q in quality]
    _scripted_validation(monkeypatch, scores, metric)
    cfg = toy_config(
        tmp_path,
        steps=20,
        eval_every=1,
        checkpoint_every=0,
        lr=0.01,
        lr_schedule="plateau",
        plateau_factor=0.5,
        plateau_patience=1,
        early_stopping_patience=3,
    )
    trainer, result = _run(cfg)
    records = read_metrics(tmp_path)
    vals = [r for r in records if r["kind"] == "val"]
    assert [r["lr"] for r in vals] == pytest.approx([0.01, 0.01, 0.01, 0.005, 0.005, 0.005, 0.0025, 0.0025])
    assert [r["validations_since_best"] for r in vals] == [0, 0, 1, 2, 0, 1, 2, 3]
    assert result.step == 8 and result.stopped_early and trainer.stopped_early
    assert result.best["step"] == 5
    stops = [r for r in records if r["kind"] == "early_stop"]
    assert len(stops) == 1 and stops[0]["step"] == 8 and stops[0]["best_step"] == 5
    assert stops[0]["patience"] == 3 and stops[0]["metric"] == metric
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 8  # the final checkpoint is at the stop
    # the rate is stepped on validations only: the train records between them keep the rate
    train_lrs = {r["step"]: r["lr"] for r in records if r["kind"] == "train"}
    assert train_lrs[2] == 0.01 and train_lrs[6] == pytest.approx(0.005)


def test_patience_used_up_at_the_last_step_is_not_an_early_stop(tmp_path, monkeypatch):
    _scripted_validation(monkeypatch, [0.5, 0.4, 0.4], "accuracy")
    cfg = toy_config(tmp_path, steps=3, eval_every=1, early_stopping_patience=2)
    _, result = _run(cfg)
    assert result.step == 3 and not result.stopped_early
    assert not [r for r in read_metrics(tmp_path) if r["kind"] == "early_stop"]


@pytest.mark.parametrize("die_at", [20, 53])
def test_plateau_and_early_stopping_resume_is_bit_identical(tmp_path, die_at):
    """Killed after the cut at step 18 (checkpoint 18) or between two bad validations
    (checkpoint 51): the resumed run cuts the rate and stops where the uninterrupted one did."""
    full, full_result = _run(toy_config(tmp_path / "full", **PLATEAU))
    assert full_result.stopped_early and full_result.step == 56  # the scenario the test is about
    lrs = [r["lr"] for r in read_metrics(tmp_path / "full") if r["kind"] == "val"]
    assert len(set(lrs)) >= 3  # the rate was cut at least twice

    with pytest.raises(Killed):
        _run(toy_config(tmp_path / "cut", **PLATEAU), on_step=kill_at(die_at))
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == die_at - 2
    resumed, result = _run(toy_config(tmp_path / "cut", **PLATEAU), resume=True)

    assert result.step == full_result.step and result.stopped_early
    assert torch.equal(params_vector(resumed.experiment.algorithm), params_vector(full.experiment.algorithm))
    assert resumed.scheduler.state_dict() == full.scheduler.state_dict()
    _assert_same_tensors(full.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"])
    assert result.best == full_result.best

    def observed(run: str) -> list[dict]:  # validation and early-stop records, less their clock times
        return [
            {k: v for k, v in r.items() if k not in ("wall_time", "train_seconds")}
            for r in read_metrics(tmp_path / run)
            if r["kind"] != "train"
        ]

    assert observed("cut") == observed("full")  # the same validations, rates and one early_stop record


def test_resuming_an_early_stopped_run_and_raising_its_patience(tmp_path):
    _run(toy_config(tmp_path / "a", **PLATEAU))
    # resumed as it is: it stopped, so nothing more happens
    _, same = _run(toy_config(tmp_path / "a", **PLATEAU), resume=True)
    assert same.step == 56 and same.stopped_early
    assert len([r for r in read_metrics(tmp_path / "a") if r["kind"] == "early_stop"]) == 1
    # a larger patience (a resumable setting) continues it exactly as a run started with it
    longer = {**PLATEAU, "early_stopping_patience": 6}
    cont, result = _run(resume_config(tmp_path / "a", early_stopping_patience=6), resume=True)
    ref, ref_result = _run(toy_config(tmp_path / "b", **longer))
    assert result.step == ref_result.step == 60 and not result.stopped_early and not ref_result.stopped_early
    assert torch.equal(params_vector(cont.experiment.algorithm), params_vector(ref.experiment.algorithm))


def test_plateau_and_early_stopping_need_validation():
    with pytest.raises(ValueError, match="--lr-schedule plateau acts on validation.*--eval-every N"):
        ExperimentConfig.from_dict({"lr_schedule": "plateau", "eval_every": 0})
    with pytest.raises(ValueError, match="--early-stopping-patience acts on validation.*--eval-every-seconds"):
        ExperimentConfig.from_dict({"early_stopping_patience": 3, "eval_every": 0})
    ExperimentConfig.from_dict({"lr_schedule": "plateau", "eval_every": 0, "eval_every_seconds": 10.0})
    with pytest.raises(ValueError, match="--plateau-factor"):
        ExperimentConfig.from_dict({"plateau_factor": 1.0})
    with pytest.raises(ValueError, match="--early-stopping-patience"):
        ExperimentConfig.from_dict({"early_stopping_patience": 0})


def test_resume_keeps_the_validation_that_steers_training(tmp_path):
    _run(toy_config(tmp_path / "p", steps=4, lr_schedule="plateau"))
    with pytest.raises(ValueError, match="steer its training.*eval_every: 4 -> 2"):
        _run(resume_config(tmp_path / "p", steps=6, eval_every=2), resume=True)
    _, result = _run(resume_config(tmp_path / "p", steps=6), resume=True)  # a longer plateau run is fine
    assert result.step == 6
    # without a plateau schedule or early stopping, validation is only an observer
    _run(toy_config(tmp_path / "c", steps=4))
    _, result = _run(resume_config(tmp_path / "c", steps=6, eval_every=2), resume=True)
    assert result.step == 6


# ----------------------------------------------------------------- the progress hook
class ProgressRecorder(nn.Module):
    """A submodule that records every training-progress fraction it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def set_training_progress(self, fraction: float) -> None:
        self.seen.append(fraction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # a pass-through layer, as DropBlock is in eval
        return x


def _recording_builder(recorders: list[ProgressRecorder]):
    def build(config: ExperimentConfig) -> experiment.Experiment:
        config.validate()
        train, val, test, _ = experiment.build_task_sources(config)
        algo = ToyANIL()
        algo.body.add_module("recorder", ProgressRecorder())  # a layer deep inside the algorithm
        recorders.append(algo.body.recorder)
        return experiment.Experiment(config, algo, train, val, test)

    return build


def test_progress_hook_gets_step_over_steps_before_each_step_and_survives_resume(tmp_path):
    seen: list[ProgressRecorder] = []
    cfg = toy_config(tmp_path / "full", steps=8, eval_every=2, checkpoint_every=4)
    full, _ = _run(cfg, builder=_recording_builder(seen))
    assert seen[0].seen == [s / 8 for s in range(1, 9)]  # once per step, never during validation

    seen.clear()
    with pytest.raises(Killed):
        _run(
            toy_config(tmp_path / "cut", steps=8, eval_every=2, checkpoint_every=4),
            builder=_recording_builder(seen),
            on_step=kill_at(6),
        )
    kept = load_checkpoint(tmp_path / "cut" / "last.pt")["step"]  # 4, or 6 when validation 6 was the best
    resumed, _ = _run(
        toy_config(tmp_path / "cut", steps=8, eval_every=2, checkpoint_every=4),
        builder=_recording_builder(seen),
        resume=True,
    )
    assert seen[0].seen == [s / 8 for s in range(1, 7)] and seen[1].seen == [s / 8 for s in range(kept + 1, 9)]
    assert torch.equal(params_vector(resumed.experiment.algorithm), params_vector(full.experiment.algorithm))


def test_progress_hook_follows_the_time_budget(tmp_path, monkeypatch):
    """With max_train_seconds the fraction is the larger of step/steps and the training time
    used; a fake clock makes each step take one second."""
    import metabridge.train as train_mod

    clock = {"t": 0.0}
    real_step = Trainer.train_step

    def slow_step(self, step):
        out = real_step(self, step)
        clock["t"] += 1.0
        return out

    monkeypatch.setattr(train_mod.time, "perf_counter", lambda: clock["t"])
    monkeypatch.setattr(Trainer, "train_step", slow_step)
    seen: list[ProgressRecorder] = []
    cfg = toy_config(tmp_path, steps=100, eval_every=0, max_train_seconds=10.0)
    _, result = _run(cfg, builder=_recording_builder(seen))
    assert result.step == 10
    assert seen[0].seen == pytest.approx([max(s / 100, (s - 1) / 10) for s in range(1, 11)])


def test_progress_hook_warns_when_resumed_with_other_steps(tmp_path):
    seen: list[ProgressRecorder] = []
    _run(toy_config(tmp_path, steps=4), builder=_recording_builder(seen))
    with pytest.warns(UserWarning, match="ProgressRecorder.*--steps 6 instead of 4"):
        _run(resume_config(tmp_path, steps=6), builder=_recording_builder(seen), resume=True)


# ---------------------------------------------------------------- augmentation
def _colour_dataset(classes: int = 10, per_class: int = 8, size: int = 12) -> ClassDataset:
    g = torch.Generator().manual_seed(0)
    protos = torch.randint(0, 256, (classes, 3, size, size), generator=g)
    noise = torch.randint(-30, 31, (classes, per_class, 3, size, size), generator=g)
    images = (protos[:, None] + noise).clamp(0, 255).to(torch.uint8).flatten(0, 1)
    return ClassDataset(
        images, torch.arange(classes).repeat_interleave(per_class), [f"c{i}" for i in range(classes)], name="tiny"
    )


def _image_builder(config: ExperimentConfig) -> experiment.Experiment:
    """The real task sources (experiment.build_task_sources) with a small ProtoNet."""
    config.validate()
    train, val, test, _ = experiment.build_task_sources(config)
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    return experiment.Experiment(config, mb.ProtoNet(body), train, val, test)


def _image_config(out, **kw) -> ExperimentConfig:
    base = dict(
        task="tiny",
        algorithm="protonet",
        n_way=3,
        k_shot=1,
        q_query=2,
        meta_batch_size=2,
        steps=8,
        eval_every=3,
        checkpoint_every=3,
        val_episodes=4,
        test_episodes=4,
        eval_batch_size=4,
        device="cpu",
        out_dir=str(out),
        augment="auto",
        seed=1,
    )
    base.update(kw)
    return ExperimentConfig(**base)


@pytest.fixture
def tiny_images(monkeypatch) -> ClassDataset:
    ds = _colour_dataset()
    monkeypatch.setattr(experiment, "load_split", lambda config, split: ds)
    return ds


def test_only_training_episodes_are_augmented(tiny_images):
    cfg = _image_config("unused")
    train, val, test, _ = experiment.build_task_sources(cfg)
    # a dataset without a preset, in colour: crop (padding 4 at 32 px -> 2 at 12 px) + jitter, no flip
    assert train.augment == mb.data.Augment(crop_padding=2, brightness=0.4, contrast=0.4, saturation=0.4)
    assert val.augment is None and test.augment is None
    plain = EpisodeSampler(tiny_images, 3, 1, 2)
    a = train.sample(4, torch.Generator().manual_seed(7))
    b = plain.sample(4, torch.Generator().manual_seed(7))
    assert torch.equal(a.class_ids, b.class_ids) and torch.equal(a.query_y, b.query_y)  # same episodes ...
    assert not torch.equal(a.support_x, b.support_x)  # ... with other pixels
    assert float(a.support_x.min()) >= 0 and float(a.support_x.max()) <= 1
    # the training source's fixed episodes (and the validation ones) are the images as loaded
    for x, y in zip(train.fixed_episodes(4, 3, 2), plain.fixed_episodes(4, 3, 2)):
        assert torch.equal(x.support_x, y.support_x) and torch.equal(x.query_x, y.query_x)


def test_augmentation_is_drawn_from_the_task_generator(tiny_images):
    train = experiment.build_task_source(_image_config("unused"), "train")
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    state = torch.get_rng_state()
    a, b = train.sample(3, g1), train.sample(3, g2)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not touched
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
    assert torch.equal(g1.get_state(), g2.get_state())
    g3 = torch.Generator().manual_seed(5)
    EpisodeSampler(tiny_images, 3, 1, 2).sample(3, g3)
    assert not torch.equal(g1.get_state(), g3.get_state())  # augmentation drew from it too


def test_augmented_runs_repeat_and_resume_bit_identically(tmp_path, tiny_images):
    full, _ = _run(_image_config(tmp_path / "full"), builder=_image_builder)
    reference = params_vector(full.experiment.algorithm)
    twin, _ = _run(_image_config(tmp_path / "twin"), builder=_image_builder)
    assert torch.equal(params_vector(twin.experiment.algorithm), reference)
    plain, _ = _run(_image_config(tmp_path / "plain", augment=None), builder=_image_builder)
    assert not torch.equal(params_vector(plain.experiment.algorithm), reference)  # augmentation did something

    with pytest.raises(Killed):
        _run(_image_config(tmp_path / "cut"), builder=_image_builder, on_step=kill_at(5))
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 3
    resumed, result = _run(_image_config(tmp_path / "cut"), builder=_image_builder, resume=True)
    assert result.step == 8
    assert torch.equal(params_vector(resumed.experiment.algorithm), reference)


def test_augment_is_refused_for_regression_and_resume_cannot_change_it(tmp_path, tiny_images):
    with pytest.raises(ValueError, match="--augment auto transforms images; the sinusoid task"):
        ExperimentConfig.from_dict({"task": "sinusoid", "augment": "auto"})
    with pytest.raises(ValueError, match="unknown augmentation 'sharpen'.*mini-imagenet"):
        ExperimentConfig.from_dict({"task": "glyphs", "augment": "sharpen"})
    assert ExperimentConfig(task="glyphs", augment="Mini_ImageNet").augment == "mini-imagenet"
    _run(_image_config(tmp_path, steps=2), builder=_image_builder)
    with pytest.raises(ValueError, match="augment: 'auto' -> None"):
        _run(_image_config(tmp_path, steps=4, augment=None), builder=_image_builder, resume=True)


# ----------------------------------------------------------- CLI and config files
def _write_npz(path, classes: int = 25, per_class: int = 4, size: int = 16) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (classes * per_class, 3, size, size), dtype=np.uint8)
    np.savez(path, images=images, labels=np.repeat(np.arange(classes), per_class))


def test_train_help_lists_the_recipe_options():
    r = run_cli(["train", "--help"])
    assert r.exit_code == 0
    for option in ("--plateau-factor", "--plateau-patience", "--early-stopping-patience", "--augment"):
        assert option in r.output, option
    assert "plateau" in r.output


def test_toml_config_with_the_recipe_fields_trains_and_reports_an_early_stop(tmp_path):
    out = tmp_path / "run"
    path = tmp_path / "run.toml"
    path.write_text(f'''
task = "sinusoid"
algorithm = "maml"
k_shot = 5
q_query = 5
meta_batch_size = 2
steps = 200
eval_every = 1
val_episodes = 10
eval_batch_size = 10
lr = 0.5
lr_schedule = "plateau"
plateau_factor = 0.5
plateau_patience = 0
early_stopping_patience = 2
device = "cpu"
out_dir = "{out}"
[hparams]
inner_steps = 1
inner_lr = 0.01
''')
    cfg = ExperimentConfig.load(path)
    assert (cfg.lr_schedule, cfg.plateau_factor, cfg.plateau_patience, cfg.early_stopping_patience) == (
        "plateau",
        0.5,
        0,
        2,
    )
    r = run_cli(["train", "--config", str(path), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "stopped early at step" in r.output and "--early-stopping-patience 2" in r.output, r.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["lr_schedule"] == "plateau" and saved["early_stopping_patience"] == 2
    stop = [x for x in read_metrics(out) if x["kind"] == "early_stop"]
    assert len(stop) == 1 and stop[0]["step"] < 200


def test_cli_augment_of_own_images_from_a_toml_file(tmp_path, monkeypatch):
    monkeypatch.setenv("METABRIDGE_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "mine.npz"
    _write_npz(data)
    out = tmp_path / "aug"
    path = tmp_path / "aug.toml"
    path.write_text(
        f'task = "{data}"\nalgorithm = "protonet"\nmodel = "conv4"\nn_way = 3\nk_shot = 1\n'
        f'q_query = 1\nmeta_batch_size = 2\nsteps = 2\neval_every = 0\naugment = "auto"\n'
        f'device = "cpu"\nout_dir = "{out}"\n[model_kwargs]\nhidden = 4\n'
    )
    r = run_cli(["train", "--config", str(path), "--no-progress", "--test-episodes", "3"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["augment"] == "auto"
    r = run_cli(["train", "--config", str(path), "--no-progress", "--augment", "flipflop", "--overwrite"])
    assert r.exit_code == 2 and "unknown augmentation 'flipflop'" in r.output and "--augment" in r.output
