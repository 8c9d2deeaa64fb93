"""The README as a new user meets it: its Python blocks run as written (each in a fresh
namespace, in an empty working directory), it stays short, its two commands are the ones CI
and the main job use, its table keeps the markers the results generator fills, and every
link in it points to a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TWO_COMMANDS = (
    "bash scripts/setup.sh && .venv/bin/metabridge compare",
    "bash scripts/setup.sh && .venv/bin/python -m pytest -q",
)
START, END = "<!-- headline-table:start -->", "<!-- headline-table:end -->"


def _text() -> str:
    return README.read_text(encoding="utf-8")


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", _text(), flags=re.S)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    # one intra-op thread: the snippets' tensors are tiny, and on a shared CPU several threads
    # per process oversubscribe the cores (a meta-RL iteration then takes ten times longer)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METABRIDGE_CACHE", str(tmp_path / "cache"))
    yield tmp_path
    torch.set_num_threads(threads)


def _run(block: str) -> None:
    exec(compile(block, str(README), "exec"), {"__name__": "readme"})


def test_there_are_three_snippets() -> None:
    assert len(_python_blocks()) == 3


def test_few_shot_snippet(user_dir, capsys) -> None:
    _run(_python_blocks()[0])
    out = capsys.readouterr().out
    for name in ("maml", "mtl"):
        assert re.search(rf"^{name} \d+(\.\d+)? ± \d", out, flags=re.M), out
    assert re.search(r"^tensor\(\[\d", out, flags=re.M), out  # the predicted labels of one task


def test_multitask_weighting_snippet(user_dir, capsys) -> None:
    _run(_python_blocks()[1])
    out = capsys.readouterr().out
    for method in ("equal", "uw", "pcgrad", "nash_mtl"):
        match = re.search(rf"^{method} \[(\d+\.\d+), (\d+\.\d+)\] \[(-?\d+\.\d+), (-?\d+\.\d+)\]$", out, flags=re.M)
        assert match, out
        # 40 steps on this easy problem bring the regression loss well below its starting value (~5)
        assert float(match.group(2)) < 1.0, out


def test_meta_rl_preset_snippet(user_dir, capsys) -> None:
    _run(_python_blocks()[2])
    out = capsys.readouterr().out
    returns = re.search(r"^\[(-\d+\.\d+), (-\d+\.\d+)\]$", out, flags=re.M)
    assert returns, out
    assert (user_dir / "runs" / "rl" / "nav").is_dir()


def test_readme_is_at_most_250_lines() -> None:
    assert len(_text().splitlines()) <= 250


def test_the_two_commands_come_first_and_exactly() -> None:
    text = _text()
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S)
    assert first_block is not None
    for command in TWO_COMMANDS:
        assert command in first_block.group(1).splitlines()


def test_headline_table_sits_between_the_generator_markers() -> None:
    text = _text()
    assert text.count(START) == 1 and text.count(END) == 1
    table = text[text.index(START) + len(START) : text.index(END)]
    assert table.strip().startswith("| method | paper |"), table[:200]


def test_links_point_inside_the_repository() -> None:
    text = _text()
    assert "../" not in text
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # links live in the prose, not in code
    targets = re.findall(r"\]\(([^)\s]+)\)", prose)
    assert targets
    for target in targets:
        assert not re.match(r"[a-z]+://", target), f"README links outside the repository: {target}"
        path = ROOT / target.split("#")[0]
        assert path.exists(), f"README links to a missing file: {target}"


def test_no_work_items_or_machine_stories() -> None:
    text = _text().lower()
    for phrase in (r"\bissue \d", "this machine", r"\bsession", r"20\d\d-\d\d-\d\d"):
        assert not re.search(phrase, text), phrase


def _cli_lines() -> list[list[str]]:
    block = re.search(r"## Command line at a glance\n+```text\n(.*?)```", _text(), flags=re.S)
    assert block is not None, "the README shows the command line at a glance"
    return [line.split("#")[0].split() for line in block.group(1).splitlines() if line.startswith("metabridge ")]


def test_cli_at_a_glance_names_real_commands_and_options() -> None:
    from cli_runner import run_cli

    lines = _cli_lines()
    assert len(lines) >= 10
    for words in lines:
        group = words[1] in ("rl", "theory")
        commands = [[words[1], sub] for sub in words[2].split("|")] if group else [[words[1]]]
        options = {re.sub(r"[\[\]]", "", w) for w in words if w.lstrip("[").startswith("--")}
        for command in commands:
            r = run_cli([*command, "--help"])
            assert r.exit_code == 0, (command, r.output)
            for option in options:
                assert option in r.output, f"metabridge {' '.join(command)} has no option {option}"
