"""``python -m metabridge.multitask._worker SPEC.json OUT.json``: one :func:`runner.run` in its own process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..atomic import atomic_write_text
from .runner import run


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    atomic_write_text(argv[1], json.dumps(run(spec)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
