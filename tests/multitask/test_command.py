"""The multi-task trainer, the run spec and ``metabridge multitask`` end to end on a generated benchmark."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
import mtl_toy_benchmark  # noqa: E402,F401  (registers "toy_mtl")

from metabridge.multitask.data import load_mtl_benchmark, register_mtl_benchmark  # noqa: E402
from metabridge.multitask.diagnostics import delta_m  # noqa: E402
from metabridge.multitask.models.registry import build_mtl_model  # noqa: E402
from metabridge.multitask.runner import run  # noqa: E402
from metabridge.multitask.trainer import evaluate_split, train_multitask  # noqa: E402
from metabridge.multitask.weighting import build_weighting  # noqa: E402

PLUGIN = ["mtl_toy_benchmark"]
SMALL = {"encoder_hidden": [32], "encoder_out_dim": 16}  # a small encoder keeps every run well under a second


def _model(bench, seed=0):
    torch.manual_seed(seed)
    return build_mtl_model(
        "hard_sharing", input_kind="vector", input_shape=(8,), out_dims=[t.out_dim for t in bench.tasks], **SMALL
    )


def test_training_improves_every_task_and_metrics_are_in_original_units():
    bench = load_mtl_benchmark("toy_mtl")
    model = _model(bench)
    before = evaluate_split(model, bench.test)
    result = train_multitask(model, build_weighting("equal", 3), bench, steps=150, batch_size=64, lr=1e-2)
    after = evaluate_split(model, bench.test)
    assert after["metric"][0] > before["metric"][0] + 20  # accuracy in %
    assert after["metric"][1] < before["metric"][1] and after["metric"][2] < before["metric"][2]  # MAE
    # MAE in original units: a constant prediction of the mean has MAE ~ E|y - mean| (reg2's std is 3.4 * 2 = 6.8)
    y = bench.test.targets[:, 2]
    assert before["metric"][2] > 0.5 * (y - y.mean()).abs().mean()
    assert result.test_metric == result.curve[-1]["test_metric"]


def test_a_run_is_reproducible_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    spec = {
        "benchmark": "toy_mtl",
        "method": "pcgrad",
        "steps": 30,
        "batch_size": 32,
        "seed": 3,
        "plugins": PLUGIN,
        "model_kwargs": SMALL,
    }
    a, b = run(spec), run(spec)
    assert a["test_metric"] == b["test_metric"] and a["train_losses"] == b["train_losses"]
    assert torch.equal(state, torch.random.get_rng_state())
    c = run({**spec, "seed": 4})
    assert c["train_losses"] != a["train_losses"]


def test_task_subset_trains_a_single_task_model():
    rec = run(
        {"benchmark": "toy_mtl", "tasks": [1], "steps": 10, "batch_size": 32, "plugins": PLUGIN, "model_kwargs": SMALL}
    )
    assert rec["tasks"] == ["reg"] and len(rec["test_metric"]) == 1


def test_unknown_spec_keys_and_mismatched_methods_are_refused():
    with pytest.raises(ValueError, match="unknown run spec keys"):
        run({"benchmark": "toy_mtl", "stepz": 3})
    bench = load_mtl_benchmark("toy_mtl")
    with pytest.raises(ValueError, match="built for 2 tasks"):
        train_multitask(_model(bench), build_weighting("equal", 2), bench, steps=2)


def test_diagnostics_record_conflict_affinity_and_a_grouping():
    rec = run(
        {
            "benchmark": "toy_mtl",
            "steps": 20,
            "batch_size": 32,
            "diagnostics_every": 5,
            "plugins": PLUGIN,
            "model_kwargs": SMALL,
        }
    )
    diag = rec["diagnostics"]
    assert sorted(diag["gradient_conflict"]["steps"]) == ["0", "10", "15", "5"]
    assert diag["affinity"]["steps"] == 4
    z = torch.tensor(diag["affinity"]["mean"])
    assert z.shape == (3, 3) and torch.isfinite(z).all()
    assert sorted(i for g in diag["grouping"]["groups"] for i in g) >= [0, 1, 2]


def test_multitask_command_reports_delta_m_against_stl_and_resumes(tmp_path, capsys):
    from metabridge.multitask.commands import MultitaskConfig
    from metabridge.multitask.commands import run as run_multitask

    out = tmp_path / "report"
    config = MultitaskConfig(
        benchmark="toy_mtl",
        methods=["equal", "mgda"],
        seeds=[0, 1],
        steps=40,
        batch_size=32,
        lr=3e-3,
        eval_every=20,
        plugins=PLUGIN,
        isolate=False,
        model_kwargs=SMALL,
        out=out,
    )
    report = run_multitask(config)
    printed = capsys.readouterr().out
    assert "Delta_m %" in printed and "STL" in printed and "mgda" in printed
    saved = json.loads((out / "report.json").read_text())
    assert set(saved["methods"]) == {"equal", "mgda"}
    assert MultitaskConfig.from_file(out / "config.json") == config  # the resolved settings reproduce the run
    markdown = (out / "table.md").read_text().splitlines()
    assert markdown[0].startswith("| method | cls (%) | reg | reg2 | Delta_m %") and markdown[2].startswith("| STL |")
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(records) == 2 * (3 + 2)  # seeds x (STL per task + methods)
    stl = [sum(r["test_metric"][0] for r in records if r["spec"]["tasks"] == [t]) / 2 for t in range(3)]
    mgda = [r for r in records if r["spec"]["method"] == "mgda"]
    expected = sum(delta_m(r["test_metric"], stl, [True, False, False]) for r in mgda) / 2
    assert report["methods"]["mgda"]["delta_m"] == pytest.approx(expected)
    assert report["methods"]["equal"]["time_ratio"] == pytest.approx(1.0)
    assert {p.name for p in out.glob("*.png")} >= {"delta_m.png", "loss_trajectories.png", "weight_trajectories.png"}
    mtime = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    run_multitask(config)  # every run is reused, none retrained
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == mtime


def test_isolated_runs_report_their_own_peak_memory(tmp_path, monkeypatch):
    from metabridge.multitask.commands import MultitaskConfig
    from metabridge.multitask.commands import run as run_multitask

    # the worker imports the toy plugin
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1] / "support"))
    report = run_multitask(
        MultitaskConfig(
            benchmark="toy_mtl",
            methods=["equal"],
            steps=5,
            batch_size=16,
            stl=False,
            model_kwargs=SMALL,
            plugins=PLUGIN,
            out=tmp_path,
        )
    )
    peak = report["methods"]["equal"]["peak_mib"]
    assert peak is not None and 0 <= peak < 500


@register_mtl_benchmark("toy_mtl_unitless", replace=True)
def _toy_without_units(root=None):
    """toy_mtl whose classification task declares no unit (a user's benchmark may leave it empty)."""
    bench = load_mtl_benchmark("toy_mtl")
    tasks = [dataclasses.replace(t, unit="") for t in bench.tasks]
    splits = [dataclasses.replace(d, tasks=tasks) for d in (bench.train, bench.val, bench.test)]
    return dataclasses.replace(bench, name="toy_mtl_unitless", train=splits[0], val=splits[1], test=splits[2])


def test_multitask_accuracy_is_in_percent_whatever_the_benchmark_declares(tmp_path, capsys):
    from metabridge.multitask.commands import MultitaskConfig
    from metabridge.multitask.commands import run as run_multitask

    report = run_multitask(
        MultitaskConfig(
            benchmark="toy_mtl_unitless",
            methods=["equal"],
            steps=60,
            batch_size=64,
            lr=1e-2,
            stl=False,
            isolate=False,
            model_kwargs=SMALL,
            out=tmp_path,
        )
    )
    assert report["units"][0] == "%" and 30 < report["methods"]["equal"]["test_metric"][0] <= 100
    assert "cls (%)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"methods": ["equal", "nope"]}, ["methods", "unknown weighting", "'nope'"]),
        ({"seeds": []}, ["seeds"]),
        ({"lr": float("nan")}, ["lr"]),
        ({"steps": 0}, ["steps: must be > 0"]),
        ({"methods": ["equal"], "method_kwargs": {"cagrad": {"c": 0.4}}}, ["--method-kwargs names cagrad"]),
    ],
)
def test_multitask_settings_refuse_bad_values_in_one_line(settings, words):
    from pydantic import ValidationError

    from metabridge.config import describe_validation_error
    from metabridge.multitask.commands import MultitaskConfig

    with pytest.raises(ValidationError) as err:
        MultitaskConfig(benchmark="toy_mtl", plugins=PLUGIN, **settings)
    text = describe_validation_error(err.value)
    assert "\n" not in text and all(w in text for w in words), text


def test_benchmark_defaults_fill_what_is_not_given():
    from metabridge.multitask.commands import BENCHMARK_DEFAULTS, GENERIC_DEFAULTS, MultitaskConfig

    spec = MultitaskConfig(benchmark="qm9").run_settings()
    assert {k: spec[k] for k in BENCHMARK_DEFAULTS["qm9"]} == BENCHMARK_DEFAULTS["qm9"]
    spec = MultitaskConfig(
        benchmark="toy_mtl", plugins=PLUGIN, steps=7, eval_every=0, isolate=False, threads=1
    ).run_settings()
    assert spec["steps"] == 7 and spec["eval_every"] == 0 and spec["lr"] == GENERIC_DEFAULTS["lr"]
    assert spec["threads"] == 0  # only an isolated run sets its own thread count


def test_cli_multitask_spelling_and_the_deprecated_mtl_alias(tmp_path):
    from cli_runner import run_cli

    args = [
        "--benchmark",
        "toy_mtl",
        "--plugin",
        "mtl_toy_benchmark",
        "--methods",
        "equal",
        "--no-stl",
        "--no-isolate",
        "--steps",
        "5",
        "--batch-size",
        "16",
        "--model-kwargs",
        "encoder_hidden=[32]",
        "encoder_out_dim=16",
        "--method-kwargs",
        'equal={"reduction": "mean"}',
    ]
    res = run_cli(["multitask", *args, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["model_kwargs"] == SMALL and saved["method_kwargs"] == {"equal": {"reduction": "mean"}}
    assert json.loads((tmp_path / "a" / "report.json").read_text())["units"][0] == "%"
    res = run_cli(["mtl", *args, "--out", str(tmp_path / "b")])
    assert res.exit_code == 0 and "multitask" in res.stderr  # the old name still runs, and says the new one


def test_list_names_the_multitask_methods_with_what_they_read():
    from cli_runner import run_cli

    out = run_cli(["list", "weightings"]).output
    lines = {line.split(" ")[0].rstrip(":"): line for line in out.splitlines() if line.strip()}
    assert "param_grads" in lines["nash_mtl"] and "update_every=1" in lines["nash_mtl"]  # what it reads, its keywords
    assert "losses" in lines["mean"] and "reduction='mean'" in lines["mean"]
    assert "feature_grads" in lines["mgda_ub"]
    assert "film" in run_cli(["list", "multitask-models"]).output
    assert "qm9" in run_cli(["list", "multitask-benchmarks"]).output


def test_every_multitask_setting_is_described():
    from metabridge.multitask.commands import MultitaskConfig

    assert all(info.description for info in MultitaskConfig.model_fields.values())
    assert str(MultitaskConfig.model_fields["out"].default) == "runs/multitask"


@pytest.mark.slow
def test_ctrl_c_checkpoints_the_run_in_progress_and_the_same_command_continues_it(tmp_path):
    import os
    import signal
    import subprocess
    import time

    from signals import default_sigint

    out = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "metabridge",
        "multitask",
        "--benchmark",
        "toy_mtl",
        "--methods",
        "equal",
        "--no-stl",
        "--steps",
        "3000",
        "--batch-size",
        "16",
        "--plugin",
        *PLUGIN,
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "support")}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=default_sigint
    )
    deadline, logged = time.time() + 120, []
    while time.time() < deadline and sum(p.stat().st_size for p in logged) < 2000 and proc.poll() is None:
        time.sleep(0.1)
        logged = list((out / "runs").glob("*/metrics.jsonl"))
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "run the same command again to continue" in output, output
    (run_dir,) = [p for p in (out / "runs").iterdir() if p.is_dir()]
    stopped_at = torch.load(run_dir / "last.pt", weights_only=False)["step"]
    assert 0 < stopped_at < 3000
    assert not list((out / "runs").glob("*.json"))  # not recorded as finished
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr  # resumed (a fresh start would refuse the folder)
    (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert record["spec"]["steps"] == 3000
    assert torch.load(run_dir / "last.pt", weights_only=False)["step"] == 3000
