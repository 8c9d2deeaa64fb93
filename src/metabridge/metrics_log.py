"""Append-only JSONL metrics of a run (``metrics.jsonl``), truncated on resume, with optional TensorBoard.

Shared by every trainer (few-shot, multi-task, meta-RL): one JSON object per line, each
with a ``step``; a resumed run first drops the records a killed run wrote after the
checkpoint it resumes from, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Append-only JSONL metrics, plus TensorBoard scalars when ``torch.utils.tensorboard`` imports."""

    def __init__(self, run_dir: Path, resume_step: int | None, tensorboard: bool = True) -> None:
        self.path = run_dir / METRICS_FILE
        if resume_step is not None:
            self._truncate_after(resume_step)
        elif self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "a", encoding="utf-8")
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                return
            kw = {"purge_step": resume_step + 1} if resume_step is not None else {}
            self._tb = SummaryWriter(log_dir=str(run_dir / "tb"), **kw)

    def _truncate_after(self, step: int) -> None:
        """Drop records a killed run wrote after the checkpoint we resume from."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the kill
            if isinstance(rec, dict) and rec.get("step", 0) <= step:
                kept.append(line)
        atomic_write_text(self.path, "".join(f"{k}\n" for k in kept))

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            kind = record.get("kind", "train")
            for k, v in record.items():
                if k not in ("kind", "step") and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(f"{kind}/{k}", v, record["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a run's ``metrics.jsonl``."""
    path = Path(run_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
