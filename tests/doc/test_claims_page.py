"""The claims page (docs/claims.md) is generated from the experiments' JSON: it is up to date, every verdict is one
of the four words, and a changed figure in the JSON changes the page and the verdict its rule gives."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
MAIN_JOB = "fewshot_glyphs_main_job"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_results", ROOT / "docs" / "gen_results.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_results", module)
    spec.loader.exec_module(module)
    return module


gen = _generator()


@pytest.fixture()
def claims(monkeypatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    return importlib.import_module("_claims")


@pytest.fixture()
def copy(tmp_path) -> Path:
    """A copy of the experiments folder (JSON and code) to edit."""
    target = tmp_path / "experiments"
    shutil.copytree(EXPERIMENTS, target, ignore=shutil.ignore_patterns("*.png", "__pycache__"))
    return target


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _main_job_rows(claims: ModuleType, root: Path) -> list:
    (c,) = [c for c in claims.collect(root) if c.key == "W-c"]
    return [r for r in c.rows if r.experiment == MAIN_JOB]


def test_the_page_agrees_with_the_json() -> None:
    page = gen.CLAIMS.read_text(encoding="utf-8")
    assert page == gen.render_claims(), "docs/claims.md is stale: regenerate with python docs/gen_results.py"


def test_every_verdict_is_one_of_four_words(claims) -> None:
    found = claims.collect()
    assert {c.key[0] for c in found} == {"W", "L", "G"}
    for claim in found:
        assert claim.rows, claim.key
        assert claim.verdict in claims.VERDICTS, (claim.key, claim.verdict)
        for row in claim.rows:
            assert row.verdict in claims.VERDICTS, (claim.key, row.title, row.verdict)
    page = gen.CLAIMS.read_text(encoding="utf-8")
    stated = re.findall(r"^(?:- )?Verdict(?: \(any row\))?: \*\*([^*]+)\*\*", page, flags=re.M)
    assert len(stated) == len(found) + sum(len(c.rows) for c in found)
    assert set(stated) <= set(claims.VERDICTS)


def _set_mtl(value: float):
    def change(data: dict) -> None:
        for test in data["methods"]["mtl"]["test"].values():
            test["mean"] = value

    return change


def test_a_changed_accuracy_changes_the_verdict(claims, copy) -> None:
    before = claims.render(copy)
    tested = sorted((copy / MAIN_JOB / "results").glob("*.json"))
    files = [p for p in tested if "test" in json.loads(p.read_text())["methods"].get("mtl", {})]  # not curves only
    assert files
    for path in files:
        _edit(path, _set_mtl(0.5))
    (low,) = _main_job_rows(claims, copy)
    assert low.verdict == "not reproduced"
    assert "50.00" in claims.render(copy) and claims.render(copy) != before
    for path in files:
        _edit(path, _set_mtl(0.9999))
    (high,) = _main_job_rows(claims, copy)
    assert high.verdict == "reproduced"


def test_a_changed_check_changes_the_verdict(claims, copy) -> None:
    def spoil(data: dict) -> None:
        data["monte_carlo_check"]["rows"][0]["z"] = 7.5

    _edit(copy / "theory_linreg_tradeoff" / "results" / "kappa0.json", spoil)
    (g1,) = [c for c in claims.collect(copy) if c.key == "G-1"]
    assert g1.rows[0].verdict == "not reproduced"
    assert "7.50" in claims.render(copy)


def test_seed_files_are_picked_up(claims, copy) -> None:
    """A part's seed files count as seeds: the page then gives the interval over seeds."""
    results = copy / "fewshot_glyphs_mtl_vs_maml" / "results"
    single = json.loads((results / "augment_1000steps_mtl_vs_maml.json").read_text(encoding="utf-8"))
    for seed, shift in ((1, 0.01), (2, -0.01)):
        single["settings"]["seed"] = seed
        for test in single["methods"]["mtl"]["test"].values():
            test["mean"] += shift
        (results / f"augment_1000steps_mtl_vs_maml_seed{seed}.json").write_text(json.dumps(single), encoding="utf-8")
    (c,) = [c for c in claims.collect(copy) if c.key == "W-c"]
    (row,) = [r for r in c.rows if "augmentation" in r.title]
    assert "seeds 0, 1, 2 (3 seeds)" in row.seeds
    assert "(3 seeds)" in row.ours[0]
