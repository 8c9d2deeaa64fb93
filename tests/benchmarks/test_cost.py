"""metabridge bench cost: the JSON it writes, the ratios to MTL, the episode sizes it takes
from each paper, its refusal of bad options, and the too-slow guard (toy sizes throughout:
Conv-4 with 4 filters, one timed step)."""

from __future__ import annotations

import json
import sys

import pytest

from metabridge.benchmarks import _cost_episodes, _cost_measure, _cost_report
from metabridge.benchmarks.cost import CostConfig, run

TOY = dict(backbones=["conv4@28"], conv4_hidden=4, shots=[1], episodes="common", steps=1, warmup=0)


def _run(tmp_path, **kw) -> dict:
    return run(CostConfig(**{**TOY, "out": tmp_path, **kw}))


def test_json_structure_ratios_and_files(tmp_path, capsys) -> None:
    res = _run(tmp_path, isolate=False)
    assert CostConfig.model_validate_json((tmp_path / "config.json").read_text()).conv4_hidden == 4
    saved = json.loads((tmp_path / "cost_cpu.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(res["rows"]))
    assert {"settings", "machine", "rows"} <= set(saved)
    assert saved["machine"]["cores"] >= 1 and saved["settings"]["episodes"] == "common"
    assert (tmp_path / "cost_cpu.png").stat().st_size > 0
    rows = saved["rows"]
    assert [r["method"] for r in rows] == ["mtl", "protonet", "metaoptnet", "maml-1", "maml-5", "fomaml-5"]
    mtl = rows[0]
    for r in rows:
        assert r["status"] == "ok", r
        ep = r["episode"]
        assert (ep["way"], ep["shot"], ep["query"], ep["meta_batch"]) == (5, 1, 15, 4)
        assert r["images_per_step"] == 4 * 5 * 16
        assert len(r["times_s"]) == 1 and r["s_per_step"] == pytest.approx(r["times_s"][0])
        assert r["s_per_task"] == pytest.approx(r["s_per_step"] / 4)
        assert r["x_mtl_step"] == pytest.approx(r["s_per_step"] / mtl["s_per_step"])
        assert r["x_mtl_task"] == pytest.approx(r["s_per_task"] / mtl["s_per_task"])
        assert r["tasks_run"] == 4 and not r["extrapolated"]
        assert "peak_mib" in r and r["parameters"] > 0
    assert mtl["x_mtl_step"] == 1.0
    assert [r["inner_steps"] for r in rows[3:]] == [1, 5, 5]
    out = capsys.readouterr().out
    assert "| conv4@28 | 1 | MAML (5 steps) | 4 x (5 x (1+15)) |" in out
    assert (tmp_path / "cost_cpu.md").read_text().count("| conv4@28 |") == 6


def test_ratios_are_per_backbone_and_shot() -> None:
    def row(bb, k, m, s, status="ok", mb=1):
        return {
            "backbone": bb,
            "shots": k,
            "method": m,
            "status": status,
            "s_per_step": s,
            "s_per_task": None if s is None else s / mb,
        }

    rows = [
        row("a", 1, "mtl", 2.0, mb=2),
        row("a", 1, "maml-5", 10.0, mb=4),
        row("a", 5, "mtl", 4.0),
        row("a", 5, "maml-5", 2.0),
        row("b", 1, "maml-5", 3.0),
        row("a", 5, "protonet", None, "skipped: too slow"),
    ]
    _cost_report.add_ratios(rows)
    assert [r["x_mtl_step"] for r in rows] == [1.0, 5.0, 1.0, 0.5, None, None]
    assert rows[1]["x_mtl_task"] == pytest.approx((10 / 4) / (2 / 2))
    assert rows[4]["x_mtl_task"] is None  # no MTL row on that backbone


def test_each_method_gets_its_papers_episode_sizes() -> None:
    methods = {m: _cost_episodes.parse_method(m) for m in ("mtl", "protonet", "metaoptnet", "maml-5", "fomaml-5")}
    omni, cifar, mini = (_cost_episodes.parse_backbone(b) for b in ("conv4@28", "resnet12@32", "resnet12@84"))
    assert (omni.channels, cifar.channels, mini.regime) == (1, 3, "miniimagenet")

    def sizes(m, bb, k, mode="paper"):
        ep = _cost_episodes.episode(methods[m], bb, k, mode)
        return ep["way"], ep["shot"], ep["query"], ep["meta_batch"]

    assert sizes("maml-5", omni, 1) == (5, 1, 1, 32)  # Finn et al.: Omniglot, query = K
    assert sizes("maml-5", mini, 1) == (5, 1, 15, 4) and sizes("maml-5", mini, 5) == (5, 5, 15, 2)
    assert sizes("fomaml-5", mini, 5) == sizes("maml-5", mini, 5)
    assert sizes("metaoptnet", mini, 1) == sizes("metaoptnet", mini, 5) == (5, 15, 6, 8)
    assert sizes("mtl", mini, 1) == (5, 5, 5, 6) and sizes("mtl", mini, 5) == (5, 5, 5, 2)
    assert sizes("mtl", cifar, 1) == (5, 5, 15, 2) and sizes("mtl", cifar, 5) == (5, 5, 5, 6)
    assert sizes("protonet", omni, 5) == (5, 5, 5, 1) and sizes("protonet", omni, 5, "paper-way") == (60, 5, 5, 1)
    assert sizes("protonet", mini, 1, "paper-way")[0] == 30 and sizes("protonet", mini, 5, "paper-way")[0] == 20
    assert sizes("maml-5", omni, 5, "common") == (5, 5, 15, 4)
    assert "note" in _cost_episodes.episode(methods["metaoptnet"], omni, 1, "paper")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"methods": ["mtl", "reptile"]}, "unknown method 'reptile'"),
        ({"methods": ["maml-0"]}, "maml-K"),
        ({"methods": []}, "at least 1 item"),
        ({"methods": ["mtl", "mtl"]}, "twice"),
        ({"backbones": ["conv4"]}, "NAME@SIZE"),
        ({"backbones": ["vgg@32"]}, "unknown backbone 'vgg'"),
        ({"backbones": ["conv4@8"]}, "at least 16 px"),
        ({"backbones": ["resnet12@84"], "quick": True}, "--quick leaves out"),
        ({"shots": [1, "x"]}, "shots"),
        ({"shots": [20]}, "images per class"),
        ({"episodes": "mine"}, "'paper', 'paper-way' or 'common'"),
        ({"steps": 0}, "steps"),
        ({"warmup": -1}, "warmup"),
        ({"max_seconds_per_config": -1}, "max_seconds_per_config"),
        ({"max_tasks": 0}, "max_tasks"),
        ({"resnet12_widths": [64, 160]}, "at least 4 items"),
        ({"hparams": {"mtl": 3}}, "hparams"),
        ({"hparams": {"anil": {}}}, "not among --methods"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(kwargs, message, tmp_path) -> None:
    with pytest.raises(ValueError, match=message):
        _run(tmp_path / "never", **kwargs)
    assert not (tmp_path / "never").exists()


def test_a_too_slow_configuration_is_skipped(tmp_path) -> None:
    res = _run(tmp_path, methods=["mtl", "maml-1"], max_seconds_per_config=1e-9, isolate=False)
    for r in res["rows"]:
        assert r["status"].startswith("skipped: too slow (first step"), r["status"]
        assert "s_per_step" not in r and r["x_mtl_step"] is None and r["first_step_s"] > 0
    assert "skipped: too slow" in (tmp_path / "cost_cpu.md").read_text()


def test_fewer_tasks_than_the_meta_batch_are_scaled_up(tmp_path) -> None:
    (r,) = _run(tmp_path, methods=["maml-1"], max_tasks=2, isolate=False)["rows"]
    assert (r["tasks_run"], r["extrapolated"]) == (2, True)
    assert r["s_per_task"] == pytest.approx(r["times_s"][0] / 2)
    assert r["s_per_step"] == pytest.approx(4 * r["s_per_task"])
    md = _cost_report.table([r])
    assert f"{r['s_per_step']:.3f}*" in md and "(2 tasks)" in md and "--max-tasks" in md


def test_isolated_configuration_reports_fresh_process_memory(tmp_path) -> None:
    (r,) = _run(tmp_path, methods=["mtl"])["rows"]
    assert r["status"] == "ok" and r["s_per_step"] > 0
    assert isinstance(r["peak_mib"], float) and "fresh process" in r["memory"]["how"]


def test_isolated_child_stuck_in_its_first_step_is_stopped(monkeypatch, tmp_path) -> None:
    stuck = f'print({_cost_measure._EVENT!r} + \'{{"event": "ready"}}\', flush=True); import time; time.sleep(60)'
    monkeypatch.setattr(_cost_measure, "_child_command", lambda cfg: [sys.executable, "-c", stuck])
    (r,) = _run(tmp_path, methods=["mtl"], max_seconds_per_config=0.5)["rows"]
    assert r["status"] == "skipped: too slow (first step > 0.5 s, stopped)"
    assert r["wall_s"] < 30
    broken = "import sys; sys.exit('boom: no such thing')"
    monkeypatch.setattr(_cost_measure, "_child_command", lambda cfg: [sys.executable, "-c", broken])
    (r,) = _run(tmp_path, methods=["mtl"])["rows"]
    assert r["status"] == "error: boom: no such thing"
