"""The results pages under docs/results/ are generated from the experiments' JSON and never disagree with it;
every experiment folder holds what a reader needs to re-create its results."""

from __future__ import annotations

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
# The one experiment whose results are not measured yet: its page says so instead of showing figures.
NOT_MEASURED_YET = {"gpu_check"}
WORK_ITEM = re.compile(r"issue[\s_-]*\d+|work item|\bsession\b|this machine", re.IGNORECASE)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_results", ROOT / "docs" / "gen_results.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_results", module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


gen = _generator()
FOLDERS = gen.experiment_folders()


def test_there_are_experiments():
    assert FOLDERS, "experiments/ holds no experiment folder"


def test_every_page_agrees_with_its_json():
    problems = gen.check()
    assert not problems, "\n".join(problems + ["regenerate with: python docs/gen_results.py"])


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_every_experiment_has_readme_report_and_results(folder: Path):
    assert (folder / "README.md").is_file(), f"{folder.name}: no README.md"
    assert (folder / "report.py").is_file(), f"{folder.name}: no report.py"
    assert (folder / "run.sh").is_file() or (folder / "config.toml").is_file(), f"{folder.name}: no run.sh/config"
    results = sorted((folder / "results").rglob("*.json")) if (folder / "results").is_dir() else []
    if folder.name in NOT_MEASURED_YET:
        return
    assert results, f"{folder.name}: no results/*.json"
    for path in results:
        json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_nothing_names_a_work_item(folder: Path):
    for path in [folder, *folder.rglob("*")]:
        assert not WORK_ITEM.search(path.name), f"{path.relative_to(ROOT)}: the name refers to a work item"
    for path in [*folder.glob("*.md"), *folder.glob("*.py"), *folder.glob("*.sh"), *folder.glob("*.toml")]:
        match = WORK_ITEM.search(path.read_text(encoding="utf-8"))
        assert not match, f"{path.relative_to(ROOT)} says {match.group(0)!r}"


def test_pages_are_computed_from_the_json(tmp_path, monkeypatch):
    """Changing a measured number in a copy of an experiment's JSON changes its page: the figures are not typed."""
    folder = EXPERIMENTS / "sinusoid_finn_table2"
    copy = tmp_path / "experiments" / folder.name
    shutil.copytree(folder, copy)
    shutil.copy(EXPERIMENTS / "_pagekit.py", tmp_path / "experiments" / "_pagekit.py")
    before = gen.render_page(gen.Experiment(folder.name, folder, gen.load_report(folder)))
    for path in sorted((copy / "results").rglob("*.json")):
        path.write_text(re.sub(r"(\d+\.\d{3,})", "12345.678", path.read_text(encoding="utf-8")), encoding="utf-8")
    monkeypatch.setattr(gen, "EXPERIMENTS", tmp_path / "experiments")
    after = gen.render_page(gen.Experiment(folder.name, copy, gen.load_report(copy)))
    assert after != before and "12345.678" in after


def test_check_names_a_page_that_differs(tmp_path, monkeypatch):
    """``--check`` fails, naming the page, when a committed page was edited by hand."""
    pages = tmp_path / "docs" / "results"
    shutil.copytree(gen.RESULTS_DOCS, pages)
    monkeypatch.setattr(gen, "RESULTS_DOCS", pages)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    monkeypatch.setattr(gen, "README", tmp_path / "README.md")
    folder = EXPERIMENTS / "sinusoid_finn_table2"
    page = pages / f"{folder.name}.md"
    page.write_text(page.read_text(encoding="utf-8") + "\n| typed by hand | 99.9 |\n", encoding="utf-8")
    problems = gen.check()
    assert f"docs/results/{folder.name}.md: differs from its experiment's JSON" in problems
    assert gen.main(["--check"]) == 1


def test_headline_block_is_filled_between_the_markers():
    text = f"intro\n{gen.START}\nplaceholder\n{gen.END}\nrest\n"
    filled = gen.fill_readme(text, "| a | b |")
    assert filled == f"intro\n{gen.START}\n| a | b |\n{gen.END}\nrest\n"
    assert gen.fill_readme("no markers here", "| a |") is None


def test_pages_apply_the_compare_convergence_rule():
    """The pages recompute ``metabridge compare``'s convergence rule from the stored curves: it must stay the same."""
    from metabridge.benchmarks._compare_report import convergence

    sys.path.insert(0, str(EXPERIMENTS))
    try:
        import _pagekit
    finally:
        sys.path.remove(str(EXPERIMENTS))
    curves = []
    for path in sorted(EXPERIMENTS.glob("*/results/**/*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("benchmark") == "compare":
            curves += [(r["curve"], _pagekit.axis(data)) for r in data["methods"].values()]
    assert curves
    for curve, axis in curves:
        assert _pagekit.convergence(curve, axis=axis) == convergence(curve, axis=axis)


def test_a_broken_report_is_named_and_the_others_still_render(tmp_path, monkeypatch):
    experiments = tmp_path / "experiments"
    shutil.copytree(EXPERIMENTS / "sinusoid_finn_table2", experiments / "sinusoid_finn_table2")
    (experiments / "broken").mkdir()
    (experiments / "broken" / "report.py").write_text("def render(folder):\n    return 'unterminated\n")
    monkeypatch.setattr(gen, "RESULTS_DOCS", tmp_path / "docs" / "results")
    monkeypatch.setattr(gen, "README", tmp_path / "README.md")
    errors: list[str] = []
    written = gen.write(experiments, errors)
    assert (tmp_path / "docs" / "results" / "sinusoid_finn_table2.md") in written
    assert len(errors) == 1 and "broken" in errors[0] and "cannot be imported: SyntaxError" in errors[0]
    assert any("broken" in line and "SyntaxError" in line for line in gen.check(experiments))


def _page_commands() -> list[tuple[str, str]]:
    """Every ``metabridge ...`` line of a bash block on a results page (loops and brace expansions left out)."""
    found = []
    for page in sorted(gen.RESULTS_DOCS.glob("*.md")):
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S):
            for line in block.splitlines():
                line = line.split("#")[0].strip()
                if line.startswith("metabridge ") and not any(c in line for c in "${}|;&"):
                    found.append((page.stem, line))
    return found


@pytest.mark.slow
def test_every_command_on_a_results_page_parses_with_the_cli(monkeypatch, tmp_path):
    """The commands the pages print are today's option spelling (parsed by the command's settings, not run)."""
    import shlex

    import metabridge.cli as cli
    import metabridge.cli._commands as commands
    from metabridge.cli._parse import parse

    parsed: list[str] = []

    def parse_only(command, argv, prog):
        parse(commands._load(command.config), argv, prog)
        parsed.append(prog)
        return 0

    monkeypatch.setattr(commands, "run_command", parse_only)
    monkeypatch.chdir(ROOT)
    lines = _page_commands()
    assert len(lines) > 20
    bad = [f"{page}: {line}" for page, line in lines if cli.main(shlex.split(line)[1:]) != 0]
    assert not bad, "\n".join(bad)
    assert len(parsed) == len(lines)


def test_no_results_page_names_a_work_item_or_a_run_date():
    for page in sorted(gen.RESULTS_DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        match = WORK_ITEM.search(text) or re.search(r"\b20\d\d-\d\d-\d\d\b", text)
        assert not match, f"{page.relative_to(ROOT)} says {match.group(0)!r}"
