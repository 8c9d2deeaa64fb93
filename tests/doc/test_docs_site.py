"""The documentation site's structure: the nav names only pages that exist, every method page
follows one order of sections, every test file a page cites exists, nothing names a work item
or one machine, and (when mkdocs is installed) the site builds with warnings as errors."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SECTIONS = ["Use it", "What is computed", "Options", "Tested against", "Results", "References"]


def _nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [p for item in node for p in _nav_pages(item)]
    if isinstance(node, dict):
        return [p for value in node.values() for p in _nav_pages(value)]
    return []


def _config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def _hand_written_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "results" not in p.relative_to(DOCS).parts)


def _method_pages() -> list[Path]:
    pages = [p for p in (DOCS / "algorithms").glob("*.md") if p.name != "index.md"]
    pages += [DOCS / "weighting" / name for name in ("loss_based.md", "gradient_based.md")]
    pages += [DOCS / "rl" / name for name in ("maml_trpo.md", "drs_trpo.md", "drs_ppo.md")]
    return sorted(pages)


def test_nav_names_only_pages_that_exist() -> None:
    pages = _nav_pages(_config()["nav"])
    assert "index.md" in pages and "api.md" in pages and "results/index.md" in pages
    missing = [p for p in pages if not (DOCS / p).is_file()]
    assert not missing, f"mkdocs.yml's nav names missing pages: {missing}"


def test_every_hand_written_page_is_in_the_nav() -> None:
    pages = set(_nav_pages(_config()["nav"]))
    orphans = [p.relative_to(DOCS).as_posix() for p in _hand_written_pages()]
    orphans = [p for p in orphans if p not in pages]
    assert not orphans, f"pages that no reader can reach from the nav: {orphans}"


@pytest.mark.parametrize("page", _method_pages(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_method_pages_follow_one_order(page: Path) -> None:
    headings = re.findall(r"^## (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
    found = [h for h in headings if h in SECTIONS]
    assert found == SECTIONS, f"{page.name}: sections {found}, expected {SECTIONS} in this order"


def test_cited_source_paths_exist() -> None:
    cited = {
        m
        for p in _hand_written_pages()
        for m in re.findall(r"`(src/metabridge/[\w/]*(?:\.py)?)`", p.read_text("utf-8"))
    }
    assert cited, "the method pages should say where their code lives"
    missing = sorted(c for c in cited if not (ROOT / c).exists())
    assert not missing, f"pages cite source paths that do not exist: {missing}"


def test_cited_test_files_exist() -> None:
    cited = {m for p in _hand_written_pages() for m in re.findall(r"`(tests/[\w/]+\.py)`", p.read_text("utf-8"))}
    assert cited, "the pages should name the tests that check what they describe"
    missing = sorted(c for c in cited if not (ROOT / c).is_file())
    assert not missing, f"pages cite test files that do not exist: {missing}"


def test_no_work_items_dates_or_machine_stories() -> None:
    patterns = [r"\bissue \d", r"\bissue #\d", "this machine", r"\bsession\b", r"\b20\d\d-\d\d-\d\d\b"]
    for page in [*_hand_written_pages(), ROOT / "mkdocs.yml"]:
        text = page.read_text(encoding="utf-8").lower()
        for pattern in patterns:
            assert not re.search(pattern, text), f"{page.relative_to(ROOT)} matches {pattern!r}"


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="mkdocs and mkdocstrings[python] are not installed",
)
def test_site_builds_with_warnings_as_errors(tmp_path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=None,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def _command_lines() -> list[tuple[str, list[str]]]:
    """Every ``metabridge ...`` line of the pages' bash blocks (continuations joined), with its page."""
    found = []
    for page in _hand_written_pages():
        for block in re.findall(r"^```bash\n(.*?)^```", page.read_text("utf-8"), flags=re.S | re.M):
            for line in block.replace("\\\n", " ").splitlines():
                if line.startswith("metabridge "):
                    found.append((page.relative_to(DOCS).as_posix(), line.split("#")[0].split()))
    return found


def test_command_lines_name_real_commands_and_options() -> None:
    from cli_runner import run_cli

    lines = _command_lines()
    assert len(lines) >= 10
    helps: dict[tuple[str, ...], str] = {}
    for page, words in lines:
        command = tuple(words[1:3] if words[1] in ("rl", "theory") else words[1:2])
        if command not in helps:
            r = run_cli([*command, "--help"])
            assert r.exit_code == 0, (page, command, r.output)
            helps[command] = r.output
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in helps[command], f"{page}: metabridge {' '.join(command)} has no option {option}"
