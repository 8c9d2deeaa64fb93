"""The benchmark commands from the command line: every setting is an option spelt after its
field (``--out`` everywhere), lists take several values, mappings take KEY=VALUE, and a bad
value is one line naming the fix."""

from __future__ import annotations

import importlib
import json
import pkgutil

import pytest
from cli_runner import run_cli

import metabridge.benchmarks

BENCHMARKS = sorted(m.name for m in pkgutil.iter_modules(metabridge.benchmarks.__path__) if not m.name.startswith("_"))


def _command(name: str) -> list[str]:
    return ["compare"] if name == "compare" else ["bench", name]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_setting_is_an_option_in_the_help(name: str) -> None:
    config = importlib.import_module(f"metabridge.benchmarks.{name}").CONFIG
    result = run_cli([*_command(name), "--help"])
    assert result.exit_code == 0, result.output
    for field in config.model_fields:
        option = "--plugin" if field == "plugins" else "--" + field.replace("_", "-")
        assert option in result.output, f"{name}: {option} missing from --help"
    assert "--results-dir" not in result.output and "--out-dir" not in result.output


def test_a_benchmark_runs_from_the_command_line_with_list_options(tmp_path) -> None:
    out = tmp_path / "heads"
    result = run_cli(
        [
            "bench",
            "mtl_heads",
            "--dims",
            "8",
            "16",
            "--tasks",
            "2",
            "--per-task",
            "10",
            "--classes",
            "10",
            "--repeats",
            "1",
            "--out",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["dims"] == [8, 16]
    assert [r["dim"] for r in json.loads((out / "mtl_heads.json").read_text())["rows"]] == [8, 16]


def _report(method: str) -> dict:
    """A ``compare.json`` of one method with default settings."""
    from metabridge.benchmarks._compare_report import summarize
    from metabridge.benchmarks.compare import CompareConfig

    curve = [
        {"train_seconds": t, "step": i, "val_mean": a, "val_ci95": 0.01}
        for i, (t, a) in enumerate([(5, 0.7), (10, 0.9)])
    ]
    runs = {
        method: {
            "curve": curve,
            "test": {"1": {"mean": 0.9, "ci95": 0.01}, "5": {"mean": 0.95, "ci95": 0.01}},
            "train_seconds": 10,
            "steps": 10,
            "seconds_per_iteration": 1.0,
            "peak_memory_mb": 100.0,
        }
    }
    return {
        "benchmark": "compare",
        "settings": dict(CompareConfig().report_settings(), methods=[method]),
        "machine": {"device": "CPU (2 cores)"},
        "total_seconds": 10.0,
        "methods": runs,
        "summary": summarize(runs),
    }


def test_compare_merges_from_the_command_line(tmp_path) -> None:
    for name, method in (("a", "mtl"), ("b", "maml")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "compare.json").write_text(json.dumps(_report(method)))
    out = tmp_path / "merged"
    result = run_cli(["compare", "--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "compare.json").read_text())["settings"]["methods"] == ["mtl", "maml"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "--methods", "mtl", "protonett"], "did you mean 'protonet'"),
        (["compare", "--test-shots", "1", "5", "--test-queries", "10"], "one --test-queries per --test-shots"),
        (["compare", "--budget-steps", "10", "--budget-seconds", "5"], "--budget-steps or --budget-seconds, not both"),
        (["compare", "--eval-every-seconds", "5"], "--eval-every-seconds needs --budget-seconds"),
        (["compare", "--budget-seconds", "5", "--eval-every-steps", "2"], "--eval-every-steps needs a step budget"),
        (["bench", "cost", "--methods", "mtl", "--hparams", 'anil={"C": 3.0}'], "not among --methods"),
        (["bench", "peers", "--libs", "metabridge", "tensorflow"], "unknown library"),
    ],
)
def test_a_bad_option_is_one_line_naming_the_fix(args, message, tmp_path) -> None:
    result = run_cli([*args, "--out", str(tmp_path / "never")])
    assert result.exit_code != 0
    assert message in result.stderr and "Traceback" not in result.output, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "never").exists()
