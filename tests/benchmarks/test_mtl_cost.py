"""``metabridge bench mtl_cost`` at toy sizes: the processes run, the table and the files are
written, the ratios are computed, and bad options are refused before anything runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from metabridge.benchmarks import mtl_cost
from metabridge.benchmarks.mtl_cost import MtlCostConfig, run

TOY = dict(tasks=[2], repeats=1, warmup=0, steps=1, in_dim=8, hidden=[8], out_dim=8, batch=8, threads=1)


def test_mtl_cost_runs_at_toy_size_without_libmtl(tmp_path, capsys) -> None:
    res = run(MtlCostConfig(methods=["mgda"], libmtl=False, out=tmp_path, **TOY))
    rows = {r["method"]: r for r in res["rows"]}
    assert list(rows) == ["equal", "mgda"]  # equal is always run, first: the reference
    assert rows["equal"]["ratio_to_equal"] == 1.0
    assert rows["mgda"]["metabridge"]["status"] == "ok" and rows["mgda"]["gradient_method"]
    assert "libmtl" not in rows["mgda"]
    assert res["protocol"]["shared_params"] == 8 * 8 + 8 + 8 * 8 + 8
    saved = json.loads((tmp_path / "mtl_cost.json").read_text())
    assert saved["libmtl"] is None and (tmp_path / "mtl_cost.png").exists()
    assert json.loads((tmp_path / "config.json").read_text())["methods"] == ["mgda"]
    out = capsys.readouterr().out
    assert "LibMTL skipped" in out and "| mgda |" in out


@pytest.mark.peers
@pytest.mark.skipif(
    os.environ.get("METABRIDGE_PEER_TESTS") != "1",
    reason="peer comparison, not CI: opt in with METABRIDGE_PEER_TESTS=1",
)
@pytest.mark.skipif(not mtl_cost.DEFAULT_LIBMTL_PYTHON.exists(), reason="LibMTL's python is not installed here")
def test_mtl_cost_runs_libmtl_side_by_side(tmp_path) -> None:
    res = run(MtlCostConfig(methods=["cagrad"], out=tmp_path, **TOY))
    rows = {r["method"]: r for r in res["rows"]}
    assert rows["equal"]["libmtl"]["status"] == "ok" and rows["equal"]["speedup_over_libmtl"] > 0
    assert rows["equal"]["libmtl_ratio_to_ew"] == 1.0
    assert "cannot reshape" in rows["cagrad"]["libmtl"]["status"]  # LibMTL 1.1.5's CAGrad takes K = 3 only
    assert res["libmtl"]["libmtl"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"methods": ["equal", "nope"]}, "unknown weighting"),
        ({"methods": []}, "at least 1 item"),
        ({"tasks": [2, "x"]}, "tasks"),
        ({"tasks": [0]}, "positive"),
        ({"repeats": 0}, "repeats"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(kwargs, message, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        run(MtlCostConfig(out=tmp_path / "never", libmtl=False, **kwargs))
    assert not (tmp_path / "never").exists()
