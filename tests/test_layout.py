"""The house rules that keep the package navigable, checked on the code itself: no source file over 500
lines and no function over 80 (except those listed, each with its reason, on the contributing page), and
no product text naming a work item."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "src" / "metabridge").rglob("*.py"))
MAX_FILE, MAX_FUNCTION = 500, 80


def exceptions() -> set[str]:
    """The rows of the contributing page's table "Exceptions to the size limits" (first column, unquoted)."""
    text = (ROOT / "docs" / "contributing.md").read_text(encoding="utf-8")
    section = text.split("## Exceptions to the size limits", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1].strip().strip("`") for line in section.splitlines() if line.startswith("| ")]
    return {row for row in rows if row and row not in ("file or function", "---")}


def oversized() -> list[str]:
    found = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT).as_posix()
        if text.count("\n") > MAX_FILE:
            found.append(rel)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno is not None and node.end_lineno - node.lineno + 1 > MAX_FUNCTION:
                    found.append(f"{rel}:{node.name}")
    return found


def test_no_file_or_function_over_the_limits_unless_listed_with_a_reason() -> None:
    listed = exceptions()
    unlisted = [item for item in oversized() if item not in listed]
    assert not unlisted, (
        f"over {MAX_FILE} lines (file) or {MAX_FUNCTION} (function), not in docs/contributing.md: {unlisted}"
    )
    stale = listed - set(oversized())
    assert not stale, f"docs/contributing.md lists exceptions that are within the limits now: {sorted(stale)}"


def test_product_text_names_no_work_item() -> None:
    pattern = re.compile(r"\bissue ?#?\d+\b|\bissue\d+_", re.IGNORECASE)
    places = [ROOT / "README.md", *SOURCES, *(ROOT / "docs").rglob("*.md"), *(ROOT / "scripts").iterdir()]
    hits = [p.relative_to(ROOT).as_posix() for p in places if p.is_file() and pattern.search(p.read_text("utf-8"))]
    assert not hits, f"work items named in: {hits}"
