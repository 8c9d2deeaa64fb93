"""Small helpers shared by the experiments' ``report.py`` files (imported as ``import _pagekit``).

They only format what the JSON holds: a results page never carries a number typed by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def load(folder: Path, name: str) -> Any:
    """The JSON file ``folder/results/<name>``."""
    return json.loads((folder / "results" / name).read_text(encoding="utf-8"))


def num(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals (scientific notation from 1e6 on); an em dash for a missing value."""
    if value is None:
        return "—"
    if abs(value) >= 1e6:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def pm(mean: float | None, ci: float | None, digits: int = 2) -> str:
    """``mean ± ci`` with ``digits`` decimals (the 95% interval as the JSON holds it)."""
    if mean is None:
        return "—"
    if ci is None:
        return num(mean, digits)
    return f"{num(mean, digits)} ± {num(ci, digits)}"


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction in [0, 1] written as a percentage with ``digits`` decimals."""
    return "—" if value is None else f"{100 * value:.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def command(*lines: str) -> str:
    """A fenced bash block holding the command(s) that re-create the results."""
    return "```bash\n" + "\n".join(lines) + "\n```"


def machine(record: Any, torch: str | None = None, threads: int | None = None) -> str:
    """One line naming the machine and software of a run, from its JSON machine record.

    Accepts the records the project's commands write: a mapping with ``cpu``/``cores``/``torch``/``python``
    (benchmarks), a mapping with ``device``/``platform``/``torch``/``threads`` (``compare``), or a bare
    architecture string plus ``torch`` and ``threads`` given separately (``bench sinusoid``). The date of the run
    is not repeated on the page.
    """
    if record is None:
        return "Machine: the JSON holds no machine record for this run."
    if isinstance(record, str):
        parts = [f"architecture {record}"]
        if torch:
            parts.append(f"torch {torch}")
        if threads is not None:
            parts.append(f"{threads} torch thread(s)")
        return "Machine (from the JSON): " + ", ".join(parts) + "."
    parts = []
    if record.get("cpu"):
        cores = record.get("cores")
        parts.append(f"{record['cpu']}" + (f", {cores} cores" if cores else ""))
    if record.get("device"):
        parts.append(str(record["device"]))
    if record.get("platform"):
        parts.append(str(record["platform"]))
    thread_count = record.get("torch_threads", record.get("threads", threads))
    if thread_count is not None:
        parts.append(f"{thread_count} torch thread(s)")
    if record.get("torch") or torch:
        parts.append(f"torch {record.get('torch') or torch}")
    if record.get("python"):
        parts.append(f"Python {record['python']}")
    return "Machine (from the JSON): " + ", ".join(parts) + "."


def image(name: str, path: str, alt: str) -> str:
    """A markdown image of ``experiments/<name>/<path>`` as ``docs/gen_results.py`` copies it."""
    return f"![{alt}](img/{name}/{path})"
