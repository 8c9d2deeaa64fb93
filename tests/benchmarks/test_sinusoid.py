"""``metabridge bench sinusoid`` end to end on a tiny budget, and re-scoring without training."""

from __future__ import annotations

import json

import pytest
import torch

from metabridge.benchmarks.sinusoid import SinusoidConfig, format_table, run


def test_trains_scores_best_and_final_weights_and_rescores_identically(tmp_path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _trains_and_rescores(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _trains_and_rescores(tmp_path) -> None:
    kw = dict(
        methods=["maml", "mtl"],
        steps=40,
        test_tasks=20,
        query_points=10,
        num_train_tasks=20,
        out=tmp_path / "res",
        progress=False,
    )
    first = run(SinusoidConfig(**kw))
    saved = json.loads((tmp_path / "res" / "sinusoid.json").read_text())
    assert (tmp_path / "res" / "sinusoid.png").stat().st_size > 0
    assert (tmp_path / "res" / "runs" / "maml" / "metrics.jsonl").exists()
    assert json.loads((tmp_path / "res" / "config.json").read_text())["methods"] == ["maml", "mtl"]
    for method in ("maml", "mtl"):
        res = saved["methods"][method]
        assert [r["steps"] for r in res["test"]] == [1, 5, 10]
        assert all(r["n"] == 20 and r["mean"] > 0 for r in res["test"] + res["test_final"])
        assert res["step_final"] == 40 and 1 <= res["step"] <= 40
    # MAML's MSE moves with the number of test-time steps; MTL's closed-form refit does not
    maml = [r["mean"] for r in first["methods"]["maml"]["test_final"]]
    assert len(set(maml)) == 3
    assert len({r["mean"] for r in first["methods"]["mtl"]["test"]}) == 1
    again = run(SinusoidConfig(**kw, train=False))
    assert again["methods"] == first["methods"]
    assert "Finn et al. 2017" in format_table(again)


def test_rescoring_without_a_run_names_the_fix(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="without --no-train"):
        run(SinusoidConfig(methods=["drs"], steps=5, out=tmp_path, progress=False, train=False))
    with pytest.raises(ValueError, match="did you mean 'maml'"):
        SinusoidConfig(methods=["mamll"])
