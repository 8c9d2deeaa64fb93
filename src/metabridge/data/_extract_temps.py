"""Clean-up of the temporary directories that :func:`metabridge.data.download.extract_archive` leaves
beside its target when its process is killed midway (``.<target>.extracting-<pid>-*``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(parent: Path, stem: str) -> None:
    """Remove temp directories left by extractions whose process has died."""
    prefix = f".{stem}.extracting-"
    for p in parent.glob(prefix + "*"):
        try:
            pid = int(p.name[len(prefix) :].split("-", 1)[0])
        except ValueError:
            continue
        if p.is_dir() and not pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)
