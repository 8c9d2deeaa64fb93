"""The metabridge command line: help texts, train/eval/resume round trip, --config for every
command, bench dispatch, one-line errors."""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import metabridge_toys  # noqa: F401  (registers the toy algorithm toy_anil, as a plugin would)
import pytest
import torch
from cli_runner import run_cli
from pydantic import Field

import metabridge.algorithms.registry as algo_registry
import metabridge.cli._commands as commands
from metabridge.checkpoint import load_checkpoint
from metabridge.cli._parse import merge_repeated, multi_value_options, split_config_option
from metabridge.config import CommandConfig, hparams_model, validate_hparams
from metabridge.data.class_dataset import ClassDataset

FAST = [
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
]


def _assert_clean_error(result, *needles: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "errors.pydantic.dev" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


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
        return ClassDataset(
            torch.zeros(12, 1, 4, 4, dtype=torch.uint8),
            torch.arange(3).repeat_interleave(4),
            ["a", "b", "c"],
            name="tiny",
        )

    monkeypatch.setitem(registry._CUSTOM, "tiny", load)


@pytest.fixture
def tiny16(monkeypatch):
    """A registered 3-class dataset with 4 random 16x16 images per class (Conv-4's smallest input)."""
    from metabridge.data import registry

    def load(root, split, download=False, **kw):
        images = torch.randint(0, 256, (12, 1, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        return ClassDataset(images, torch.arange(3).repeat_interleave(4), ["a", "b", "c"], name="tiny16")

    monkeypatch.setitem(registry._CUSTOM, "tiny16", load)


# ------------------------------------------------------------------------ help
@pytest.mark.parametrize(
    "command,options",
    [
        ([], ["train", "eval", "export", "list", "compare", "multitask", "theory", "rl", "bench", "--config"]),
        (
            ["train"],
            [
                "--task",
                "--n-way",
                "--k-shot",
                "--algorithm",
                "--hp",
                "--lr",
                "--steps",
                "--resume",
                "--overwrite",
                "--grad-clip",
                "--device",
                "--out",
                "--checkpoint-every",
                "--eval-every",
                "--seed",
                "--plugin",
                "--config",
            ],
        ),
        (
            ["eval"],
            [
                "RUN",
                "--which",
                "--split",
                "--episodes",
                "--k-shot",
                "--q-query",
                "--seed",
                "--device",
                "--out",
                "--hp",
                "percent",
            ],
        ),
        (["export"], ["RUN", "--out", "--which"]),
        (["list"], ["KIND", "--plugin"]),
        (["bench"], ["NAME", "metabridge bench"]),
    ],
)
def test_help_exits_zero_and_lists_options(command, options):
    result = run_cli([*command, "--help"])
    assert result.exit_code == 0, result.output
    for opt in options:
        assert opt in result.stdout, (command, opt)


def test_help_does_not_import_plotting_or_benchmarks():
    code = (
        "import sys; from metabridge.cli import main; main(['--help']); "
        "bad = [m for m in sys.modules if m.startswith(('matplotlib', 'metabridge.benchmarks'))]; "
        "sys.exit(1 if bad else 0)"
    )
    import subprocess

    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def _all_models() -> list[type]:
    from metabridge.cli._fewshot import TrainCommand

    models = [TrainCommand]
    for command in [*commands.COMMANDS.values(), *(c for _, g in commands.GROUPS.values() for c in g.values())]:
        module, attr = command.config.split(":")
        try:
            models.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):  # an optional extra's command
            continue
    return models


@pytest.mark.parametrize("model", _all_models(), ids=lambda m: m.__name__)
def test_every_option_has_a_help_text(model):
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no description (its --help text)"


# -------------------------------------------------------------- the mechanism
def test_repeated_and_multi_valued_options_merge():
    assert merge_repeated(["RUN", "--hp", "a=1", "--lr", "2", "--hp", "b=2"], {"--hp"}) == [
        "RUN",
        "--hp",
        "a=1",
        "b=2",
        "--lr",
        "2",
    ]
    assert merge_repeated(["--m=x", "--m", "y", "z"], {"--m"}) == ["--m", "x", "y", "z"]
    assert split_config_option(["a", "--config", "f.toml", "--x"]) == (Path("f.toml"), ["a", "--x"])
    from metabridge.cli._fewshot import TrainCommand

    assert {"--hp", "--model-arg", "--plugin"} <= multi_value_options(TrainCommand)


# -------------------------------------------------------------- train / eval
def test_train_eval_resume_round_trip(tmp_path, toy_registry):
    out = tmp_path / "run"
    r = run_cli(
        [
            "train",
            *FAST,
            "--algorithm",
            "toy_anil",
            "--steps",
            "4",
            "--eval-every",
            "2",
            "--checkpoint-every",
            "2",
            "--out",
            str(out),
            "--hp",
            "inner_lr=0.02",
        ]
    )
    assert r.exit_code == 0, r.output
    assert "step 4" in r.stdout and "metabridge eval" in r.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hparams"] == {"inner_lr": 0.02} and cfg["steps"] == 4
    assert load_checkpoint(out / "last.pt")["step"] == 4

    r = run_cli(
        ["eval", str(out), "--episodes", "10", "--no-progress", "--device", "cpu", "--out", str(tmp_path / "ev")]
    )
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert res["n"] == 10 and res["metric"] == "mse" and res["ci95"] > 0 and res["seed"] == cfg["test_seed"]
    assert json.loads((tmp_path / "ev" / "config.json").read_text())["episodes"] == 10  # the resolved settings

    # starting over by accident is refused; resuming with a changed lr too; raising --steps works
    _assert_clean_error(run_cli(["train", *FAST, "--steps", "4", "--out", str(out)]), "--resume", code=1)
    _assert_clean_error(run_cli(["train", "--resume", "--lr", "0.5", "--out", str(out)]), "--lr")
    _assert_clean_error(run_cli(["train", "--resume", "--overwrite", "--out", str(out)]), "--resume", "--overwrite")
    r = run_cli(["train", "--resume", "--steps", "6", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out / "last.pt")["step"] == 6


def test_config_file_with_overrides(tmp_path, toy_registry):
    from metabridge.config import ExperimentConfig

    path = ExperimentConfig(
        steps=2,
        k_shot=3,
        q_query=3,
        meta_batch_size=2,
        eval_every=0,
        device="cpu",
        hparams={"inner_lr": 0.02},
        out_dir=str(tmp_path / "a"),
    ).save(tmp_path / "c.json")
    r = run_cli(["train", "--config", str(path), "--seed", "9", "--hp", "inner_steps=2", "--no-progress"])
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["seed"] == 9 and saved["k_shot"] == 3 and saved["steps"] == 2
    assert saved["hparams"] == {"inner_lr": 0.02, "inner_steps": 2}  # given pairs join the file's
    r = run_cli(
        [
            "train",
            "--config",
            str(path),
            "--seed",
            "9",
            "--hp",
            "inner_steps=2",
            "--steps",
            "3",
            "--resume",
            "--no-progress",
        ]
    )  # the original command plus --resume (and more steps) continues the run
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "a" / "last.pt")["step"] == 3
    _assert_clean_error(run_cli(["train", "--config", str(path), "--resume"]), "--seed 9 -> 0", "--hp inner_steps")
    plateau = tmp_path / "plateau.toml"  # a check across fields is made once the options are in
    plateau.write_text('lr_schedule = "plateau"\neval_every = 0\n')
    _assert_clean_error(run_cli(["train", "--config", str(plateau), "--out", str(tmp_path / "p")]), "--eval-every N")
    r = run_cli(["train", "--config", str(plateau), "--eval-every", "1", "--help"])
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad.toml"
    bad.write_text("stpes = 3\n")
    _assert_clean_error(run_cli(["train", "--config", str(bad)]), "stpes")


def test_nan_loss_is_reported_with_its_step(tmp_path, toy_registry):
    out = tmp_path / "nan"
    r = run_cli(
        [
            "train",
            *FAST,
            "--steps",
            "10",
            "--checkpoint-every",
            "2",
            "--eval-every",
            "0",
            "--out",
            str(out),
            "--algorithm",
            "toy_anil",
            "--hp",
            "nan_at_call=5",
        ]
    )
    _assert_clean_error(r, "step 5", "--lr", "last.pt", code=1)
    assert load_checkpoint(out / "last.pt")["step"] == 4


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--steps", "0"], ["--steps"]),
        (["--steps", "-3"], ["steps: must be >= 1 (got -3)"]),
        (["--lr", "0"], ["lr: must be > 0", "--lr"]),
        (["--meta-batch-size", "0"], ["meta_batch_size"]),
        (["--hp", "inner_lr"], ["KEY=VALUE"]),
        (["--hp", "inner_lrr=1"], ["no hyperparameter 'inner_lrr'", "inner_lr"]),
        (["--hp", "inner_lr=nan"], ["--hp inner_lr: must be a finite number"]),
        (["--hp", "inner_lr=-inf"], ["--hp inner_lr: must be a finite number"]),
        (["--device", "tpu"], ["device"]),
        (["--optimizer", "adagrad"], ["optimizer", "adam"]),
        (["--bogus", "1"], ["--bogus", "metabridge train --help"]),
    ],
)
def test_bad_train_input_is_one_clean_error(tmp_path, args, needles):
    _assert_clean_error(
        run_cli(["train", "--algorithm", "maml", "--no-progress", "--out", str(tmp_path / "x"), *args]), *needles
    )
    assert not (tmp_path / "x").exists()


def test_unknown_dataset_stops_the_run(tmp_path):
    _assert_clean_error(
        run_cli(["train", "--task", "no_such_dataset", "--no-progress", "--out", str(tmp_path / "x")]),
        "no_such_dataset",
        code=1,
    )


def _float_hparams() -> list[tuple[str, str]]:
    out = []
    for name in sorted(algo_registry.ALGORITHMS):
        for key, field in hparams_model(name).model_fields.items():
            if field.annotation in (float, float | None):
                out.append((name, key))
    return out


@pytest.mark.parametrize("value", ["nan", float("nan"), float("inf"), "-inf"])
def test_every_float_hyperparameter_refuses_non_finite_values(value):
    pairs = _float_hparams()
    assert ("maml", "inner_lr") in pairs and len(pairs) > 5
    for algorithm, key in pairs:
        with pytest.raises(ValueError, match=f"--hp {key}: must be a finite number"):
            validate_hparams(algorithm, {key: value})


def test_hyperparameters_reach_the_algorithm_parsed():
    assert validate_hparams("maml", {"inner_lr": "0.5", "inner_steps": "3"}) == {"inner_lr": 0.5, "inner_steps": 3}


def test_episode_shapes_the_data_cannot_supply(tmp_path, tiny_dataset, toy_registry):
    base = ["train", "--task", "tiny", "--no-progress", "--out", str(tmp_path / "x")]
    _assert_clean_error(
        run_cli([*base, "--n-way", "5", "--k-shot", "1", "--q-query", "1"]), "3 classes, fewer than n_way=5", code=1
    )
    _assert_clean_error(
        run_cli([*base, "--n-way", "3", "--k-shot", "2", "--q-query", "3"]), "k_shot + q_query = 5", code=1
    )


def test_eval_q_query_fits_episodes_to_a_small_dataset(tmp_path, tiny16):
    out = tmp_path / "tiny"
    r = run_cli(
        [
            "train",
            "--task",
            "tiny16",
            "--algorithm",
            "protonet",
            "--n-way",
            "3",
            "--k-shot",
            "1",
            "--q-query",
            "3",
            "--steps",
            "1",
            "--eval-every",
            "0",
            "--meta-batch-size",
            "2",
            "--device",
            "cpu",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert r.exit_code == 0, r.output
    ev = ["eval", str(out), "--episodes", "4", "--no-progress", "--device", "cpu", "--k-shot", "2"]
    _assert_clean_error(run_cli(ev), "k_shot + q_query = 5", code=1)
    r = run_cli([*ev, "--q-query", "2"])
    assert r.exit_code == 0, r.output
    record = json.loads((out / "eval" / "eval.json").read_text())
    assert record["unit"] == "percent" and 0 <= record["mean"] <= 100 and "%" in r.stdout


def test_eval_takes_a_config_file(tmp_path, toy_registry):
    out = tmp_path / "run"
    r = run_cli(["train", *FAST, "--algorithm", "toy_anil", "--steps", "1", "--eval-every", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    (tmp_path / "ev.toml").write_text(f'run = "{out}"\nepisodes = 7\nprogress = false\n')
    r = run_cli(["eval", "--config", str(tmp_path / "ev.toml"), "--episodes", "5"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "eval" / "eval.json").read_text())["n"] == 5  # the option beside the file wins


def test_eval_bad_input(tmp_path):
    _assert_clean_error(run_cli(["eval", str(tmp_path / "missing")]), "neither a run directory", code=1)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"\x00garbage")
    _assert_clean_error(run_cli(["eval", str(tmp_path / "run")]), "corrupt or truncated", code=1)
    _assert_clean_error(run_cli(["eval", str(tmp_path / "run"), "--split", "train"]), "--split")
    _assert_clean_error(run_cli(["eval"]), "RUN")


# ---------------------------------------------------------------------- bench
class ToyBenchConfig(CommandConfig):
    """A toy benchmark."""

    shots: int = Field(5, ge=1, description="Support points per task.")
    widths: list[int] = Field([16, 64], description="Widths, given once each.")


def test_bench_runs_a_module_config_and_run(monkeypatch, tmp_path):
    module = types.ModuleType("metabridge.benchmarks.toybench")
    seen = []

    def run(config: ToyBenchConfig) -> None:
        seen.append(config)
        print(f"toybench shots={config.shots} widths={config.widths}")

    module.CONFIG, module.run, module.__doc__ = ToyBenchConfig, run, "A toy benchmark."
    monkeypatch.setitem(sys.modules, "metabridge.benchmarks.toybench", module)
    monkeypatch.setattr(commands, "available_benchmarks", lambda: ["toybench"])

    r = run_cli(["bench", "toybench", "--shots", "10", "--widths", "8", "--widths", "9", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "toybench shots=10 widths=[8, 9]" in r.stdout
    assert json.loads((tmp_path / "config.json").read_text())["widths"] == [8, 9]
    r = run_cli(["bench", "toybench", "--help"])
    assert r.exit_code == 0 and "--shots" in r.stdout and "Support points per task." in r.stdout
    assert "toybench" in run_cli(["bench", "--help"]).stdout
    _assert_clean_error(run_cli(["bench", "toybench", "--shots", "0"]), "shots: must be >= 1", "--shots")
    _assert_clean_error(run_cli(["bench", "toybnch"]), "unknown benchmark 'toybnch'", "toybench")


def test_unknown_command_suggests_the_close_one():
    _assert_clean_error(run_cli(["trian"]), "unknown command 'trian'", "train")
    import metabridge

    assert run_cli(["--version"]).stdout == f"metabridge {metabridge.__version__}\n"


# ----------------------------------------------------------------------- list
def test_list_shows_each_algorithms_hyperparameters():
    r = run_cli(["list", "algorithms"])
    assert r.exit_code == 0, r.output
    maml = next(line for line in r.stdout.splitlines() if line.startswith("maml:"))
    assert "inner_lr=0.01" in maml and "inner_steps=1" in maml and "model=" not in maml
    assert "toy_anil:" in r.stdout  # a registered algorithm of one's own is listed like the built-ins
    assert "conv4" in run_cli(["list", "models"]).stdout
    _assert_clean_error(run_cli(["list", "algoritms"]), "algorithms")


# --------------------------------------------------------- with the real registry
def test_train_and_eval_a_real_algorithm(tmp_path):
    out = tmp_path / "maml"
    r = run_cli(
        [
            "train",
            *FAST,
            "--algorithm",
            "maml",
            "--steps",
            "3",
            "--eval-every",
            "3",
            "--out",
            str(out),
            "--hp",
            "inner_steps=1",
            "--hp",
            "inner_lr=0.01",
        ]
    )
    assert r.exit_code == 0, r.output
    r = run_cli(["eval", str(out), "--episodes", "10", "--no-progress", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "MSE" in r.stdout and "10 episodes" in r.stdout


def test_eval_overrides_a_test_time_hyperparameter(tmp_path):
    out = tmp_path / "maml"
    r = run_cli(
        [
            "train",
            *FAST,
            "--algorithm",
            "maml",
            "--steps",
            "2",
            "--eval-every",
            "0",
            "--out",
            str(out),
            "--hp",
            "inner_steps=1",
            "--hp",
            "inner_lr=0.05",
        ]
    )
    assert r.exit_code == 0, r.output
    means = {}
    for steps in (1, 8):
        r = run_cli(
            [
                "eval",
                str(out),
                "--episodes",
                "10",
                "--no-progress",
                "--device",
                "cpu",
                "--hp",
                f"eval_steps={steps}",
                "--out",
                str(tmp_path / f"eval{steps}"),
            ]
        )
        assert r.exit_code == 0, r.output
        assert f"eval_steps={steps}" in r.stdout
        saved = json.loads((tmp_path / f"eval{steps}" / "eval.json").read_text())
        assert saved["hparam_overrides"] == {"eval_steps": steps}
        means[steps] = saved["mean"]
    assert means[8] < means[1]  # more test-time steps on the same 10 tasks: a lower MSE
    _assert_clean_error(
        run_cli(["eval", str(out), "--no-progress", "--hp", "eval_stpes=3"]),
        "no hyperparameter 'eval_stpes'",
        "eval_steps",
        code=1,
    )


# ------------------------------------------------------------ every command
def _table() -> list[tuple[str, commands.Command]]:
    rows = [(name, c) for name, c in commands.COMMANDS.items()]
    rows += [(f"{group} {name}", c) for group, (_, sub) in commands.GROUPS.items() for name, c in sub.items()]
    rows += [
        (
            f"bench {name}",
            commands.Command(f"metabridge.benchmarks.{name}:CONFIG", f"metabridge.benchmarks.{name}:run", ""),
        )
        for name in commands.available_benchmarks()
    ]
    return rows


@pytest.mark.parametrize("name,command", _table(), ids=[name for name, _ in _table()])
def test_every_command_takes_its_settings_from_a_config_file(tmp_path, name, command):
    """Each row of the command table: a settings model, a run function, --help, and --config FILE
    whose values the options beside it override."""
    from metabridge.cli._parse import parse

    model = commands._load(command.config)
    assert callable(commands._load(command.run))
    r = run_cli([*name.split(), "--help"])
    assert r.exit_code == 0 and "--config" in r.stdout, r.output
    path = tmp_path / "settings.json"
    if "out" not in model.model_fields:  # list writes nothing
        path.write_text(json.dumps({"kind": "models"}))
        assert parse(model, ["--config", str(path)], "metabridge list").kind == "models"
        assert parse(model, ["--config", str(path), "datasets"], "metabridge list").kind == "datasets"
        return
    data = {field: str(tmp_path) for field, info in model.model_fields.items() if info.is_required()}
    path.write_text(json.dumps({**data, "out": str(tmp_path / "from_file")}))
    config = parse(model, ["--config", str(path)], f"metabridge {name}")
    assert Path(config.out) == tmp_path / "from_file"
    config = parse(model, ["--config", str(path), "--out", str(tmp_path / "given")], f"metabridge {name}")
    assert Path(config.out) == tmp_path / "given"
    resolved = config.write_resolved()  # into the folder (export: beside the file) named by --out
    assert str(resolved).startswith(str(tmp_path / "given")) and json.loads(resolved.read_text())["out"]


def test_the_old_multitask_name_warns_once_and_runs_it():
    r = run_cli(["mtl", "--help"])
    assert r.exit_code == 0, r.output
    assert "usage: metabridge multitask" in r.stdout
    assert [line for line in r.stderr.splitlines() if line.strip()] == [
        "metabridge: 'mtl' is now 'metabridge multitask'; the old name will be removed."
    ]


def test_the_deprecated_typer_app_forwards_to_main_with_a_warning():
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from metabridge.cli import app

    with pytest.warns(DeprecationWarning, match=r"metabridge.cli.main\(argv\)"):
        result = CliRunner().invoke(app, ["list", "models"])
    assert result.exit_code == 0 and "conv4" in result.output
