"""The metabridge command line: help texts, train/eval/resume round trip, bench dispatch, bad input."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch
import typer
from typer.testing import CliRunner

import metabridge.algorithms.registry as algo_registry
import metabridge.cli as cli
from metabridge_toys import ToyANIL
from metabridge.checkpoint import load_checkpoint
from metabridge.cli import app
from metabridge.data.class_dataset import ClassDataset

runner = CliRunner()
FAST = ["--k-shot", "5", "--q-query", "5", "--meta-batch-size", "4", "--val-episodes", "10",
        "--test-episodes", "10", "--eval-batch-size", "10", "--device", "cpu", "--no-progress"]


def _run(*args: str):
    return runner.invoke(app, list(args))


def _assert_clean_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.fixture
def toy_registry():
    """The toy algorithm is registered as ``toy_anil`` by metabridge_toys (a user's own
    algorithm, through the public register_algorithm)."""
    assert "toy_anil" in algo_registry.ALGORITHMS


@pytest.fixture
def tiny_dataset(monkeypatch):
    """A registered 3-class dataset with 4 images per class."""
    from metabridge.data import registry

    def load(root, split, download=False, **kw):
        return ClassDataset(torch.zeros(12, 1, 4, 4, dtype=torch.uint8), torch.arange(3).repeat_interleave(4),
                            ["a", "b", "c"], name="tiny")

    monkeypatch.setitem(registry._CUSTOM, "tiny", load)


# ------------------------------------------------------------------------ help
@pytest.mark.parametrize("command,options", [
    ([], ["train", "eval", "bench"]),
    (["train"], ["--task", "--n-way", "--k-shot", "--algorithm", "--hp", "--lr", "--steps", "--resume",
                 "--grad-clip", "--device", "--out", "--checkpoint-every", "--eval-every", "--seed"]),
    (["eval"], ["--checkpoint", "--split", "--episodes", "--seed", "--device", "--output"]),
    (["bench"], ["NAME", "metabridge bench"]),
])
def test_help_exits_zero_and_lists_options(command, options):
    result = _run(*command, "--help")
    assert result.exit_code == 0, result.output
    for opt in options:
        assert opt in result.output


def test_every_option_has_a_help_text():
    group = typer.main.get_command(app)
    for name in ("train", "eval"):
        for param in group.commands[name].params:
            assert getattr(param, "help", None), f"{name} {param.name} has no help text"


# -------------------------------------------------------------- train / eval
def test_train_eval_resume_round_trip(tmp_path, toy_registry):
    out = tmp_path / "run"
    r = _run("train", *FAST, "--algorithm", "toy_anil", "--steps", "4", "--eval-every", "2", "--checkpoint-every", "2",
             "--out", str(out), "--hp", "inner_lr=0.02")
    assert r.exit_code == 0, r.output
    assert "step 4" in r.output and "metabridge eval" in r.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hparams"] == {"inner_lr": 0.02} and cfg["steps"] == 4
    assert load_checkpoint(out / "last.pt")["step"] == 4

    r = _run("eval", str(out), "--episodes", "10", "--no-progress", "--device", "cpu",
             "--output", str(tmp_path / "res.json"))
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "res.json").read_text())
    assert res["n"] == 10 and res["metric"] == "mse" and res["ci95"] > 0 and res["seed"] == cfg["test_seed"]

    # starting over by accident is refused; resuming with a changed lr too; raising --steps works
    _assert_clean_error(_run("train", *FAST, "--steps", "4", "--out", str(out)), "--resume")
    _assert_clean_error(_run("train", "--resume", "--lr", "0.5", "--out", str(out)), "--lr")
    r = _run("train", "--resume", "--steps", "6", "--out", str(out), "--no-progress")
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out / "last.pt")["step"] == 6


def test_config_file_with_overrides(tmp_path, toy_registry):
    from metabridge.config import ExperimentConfig

    path = ExperimentConfig(steps=2, k_shot=3, q_query=3, meta_batch_size=2, eval_every=0, device="cpu",
                            out_dir=str(tmp_path / "a")).save(tmp_path / "c.json")
    r = _run("train", "--config", str(path), "--seed", "9", "--no-progress")
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["seed"] == 9 and saved["k_shot"] == 3 and saved["steps"] == 2


def test_nan_loss_is_reported_with_its_step(tmp_path, toy_registry):
    out = tmp_path / "nan"
    r = _run("train", *FAST, "--steps", "10", "--checkpoint-every", "2", "--eval-every", "0", "--out", str(out),
             "--algorithm", "toy_anil", "--hp", "nan_at_call=5")
    _assert_clean_error(r, "step 5", "--lr", "last.pt")
    assert load_checkpoint(out / "last.pt")["step"] == 4


@pytest.mark.parametrize("args,needles", [
    (["--steps", "0"], ["--steps"]),
    (["--steps", "-3"], ["steps: must be >= 1 (got -3)"]),
    (["--lr", "0"], ["lr: must be > 0", "--lr"]),
    (["--lr", "-0.1"], ["lr: must be > 0"]),
    (["--meta-batch-size", "0"], ["meta_batch_size"]),
    (["--hp", "inner_lr"], ["KEY=VALUE"]),
    (["--hp", "inner_lr=-1"], ["inner_lr"]),
    (["--device", "tpu"], ["device"]),
    (["--task", "no_such_dataset"], ["unknown dataset", "omniglot"]),
])
def test_bad_train_input_is_one_clean_error(tmp_path, args, needles):
    _assert_clean_error(_run("train", "--no-progress", "--out", str(tmp_path / "x"), *args), "Error:", *needles)


def test_episode_shapes_the_data_cannot_supply(tmp_path, tiny_dataset, toy_registry):
    base = ["train", "--task", "tiny", "--no-progress", "--out", str(tmp_path / "x")]
    _assert_clean_error(_run(*base, "--n-way", "5", "--k-shot", "1", "--q-query", "1"),
                        "3 classes, fewer than n_way=5")
    _assert_clean_error(_run(*base, "--n-way", "3", "--k-shot", "2", "--q-query", "3"),
                        "k_shot + q_query = 5")


def test_eval_bad_input(tmp_path):
    _assert_clean_error(_run("eval", str(tmp_path / "missing")), "neither a run directory")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"\x00garbage")
    _assert_clean_error(_run("eval", str(tmp_path / "run")), "corrupt or truncated")
    _assert_clean_error(_run("eval", str(tmp_path / "run"), "--split", "train"), "--split")


# ---------------------------------------------------------------------- bench
def test_bench_dispatches_to_a_module_main(monkeypatch):
    module = types.ModuleType("metabridge.benchmarks.toybench")

    def main(shots: int = typer.Option(5, help="Support points per task."), steps: int = 1) -> None:
        """A toy benchmark.

        Args:
            shots: ignored here (the typer.Option's help wins).
            steps: inner steps per task,
                counted per episode.
        """
        if shots < 1:
            raise ValueError("shots must be >= 1; pass --shots 5.")
        typer.echo(f"toybench shots={shots} steps={steps}")

    module.main = main
    monkeypatch.setitem(sys.modules, "metabridge.benchmarks.toybench", module)
    monkeypatch.setattr(cli, "available_benchmarks", lambda: ["toybench"])

    r = _run("bench", "toybench", "--shots", "10")
    assert r.exit_code == 0, r.output
    assert "toybench shots=10 steps=1" in r.output
    r = _run("bench", "toybench", "--help")
    assert r.exit_code == 0 and "--shots" in r.output and "Support points per task." in r.output
    assert "inner steps per task, counted per episode." in r.output  # from the docstring's Args
    assert "Args:" not in r.output
    assert "toybench" in _run("bench", "--help").output
    _assert_clean_error(_run("bench", "toybench", "--shots", "0"), "pass --shots 5")
    _assert_clean_error(_run("bench", "nosuch"), "unknown benchmark 'nosuch'", "toybench")


@pytest.mark.parametrize("name", cli.available_benchmarks())
def test_every_installed_benchmark_explains_its_options(name):
    r = _run("bench", name, "--help")
    assert r.exit_code == 0, r.output
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    command = group.commands["bench"].get_command(ctx, name)
    for param in command.params:
        assert getattr(param, "help", None), f"bench {name}: option {param.name} has no help text"


@pytest.mark.parametrize("command,options", [
    (["compare"], ["--methods", "--k-shot", "--test-shots", "--plugin", "--budget"]),
    (["theory", "linreg"], ["--dim", "--alphas"]),
    (["theory", "closeness"], ["--widths", "--depths"]),
    (["export"], ["--out", "--checkpoint"]),
    (["list"], ["--plugin"]),
])
def test_every_command_is_mounted_the_same_way(command, options):
    result = _run(*command, "--help")
    assert result.exit_code == 0, result.output
    for opt in options:
        assert opt in result.output, (command, opt)


def test_list_shows_each_algorithms_hyperparameters():
    r = _run("list", "algorithms")
    assert r.exit_code == 0, r.output
    maml = next(line for line in r.output.splitlines() if line.startswith("maml:"))
    assert "inner_lr=0.01" in maml and "inner_steps=1" in maml and "model=" not in maml
    assert "toy_anil:" in r.output  # a registered algorithm of one's own is listed like the built-ins


# --------------------------------------------------------- with the real registry
def test_train_and_eval_a_real_algorithm(tmp_path):
    out = tmp_path / "maml"
    r = _run("train", *FAST, "--algorithm", "maml", "--steps", "3", "--eval-every", "3", "--out", str(out),
             "--hp", "inner_steps=1", "--hp", "inner_lr=0.01")
    assert r.exit_code == 0, r.output
    r = _run("eval", str(out), "--episodes", "10", "--no-progress", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "MSE" in r.output and "10 episodes" in r.output


def test_eval_overrides_a_test_time_hyperparameter(tmp_path):
    out = tmp_path / "maml"
    r = _run("train", *FAST, "--algorithm", "maml", "--steps", "2", "--eval-every", "0", "--out", str(out),
             "--hp", "inner_steps=1", "--hp", "inner_lr=0.05")
    assert r.exit_code == 0, r.output
    means = {}
    for steps in (1, 8):
        record = tmp_path / f"eval{steps}.json"
        r = _run("eval", str(out), "--episodes", "10", "--no-progress", "--device", "cpu",
                 "--hp", f"eval_steps={steps}", "--output", str(record))
        assert r.exit_code == 0, r.output
        assert f"eval_steps={steps}" in r.output
        saved = json.loads(record.read_text())
        assert saved["hparam_overrides"] == {"eval_steps": steps}
        means[steps] = saved["mean"]
    assert means[8] < means[1]  # more test-time steps on the same 10 tasks: a lower MSE
    _assert_clean_error(_run("eval", str(out), "--no-progress", "--hp", "eval_stpes=3"),
                        "no hyperparameter 'eval_stpes'", "eval_steps")


def test_train_refuses_an_unknown_hyperparameter(tmp_path):
    _assert_clean_error(_run("train", *FAST, "--algorithm", "anil", "--out", str(tmp_path / "x"),
                             "--hp", "inner_lrr=0.1"), "no hyperparameter 'inner_lrr'", "inner_lr")
