"""``python -m metabridge.multitask._worker SPEC.json OUT.json [RUN_DIR]``: one :func:`runner.run` in its own
process (checkpointing into RUN_DIR when given)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..atomic import atomic_write_text
from .runner import run


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    atomic_write_text(argv[1], json.dumps(run(spec, run_dir=argv[2] if len(argv) > 2 else None)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
