"""Cache keys of :mod:`metabridge.data.image_folder`: the fingerprint of a folder's files, the cache
file name derived from the source path, the load options and that fingerprint, and the removal of
caches that the files have since outdated."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any


def folder_fingerprint(names: list[str], files: list[list[Path]]) -> list[list[Any]]:
    """One ``[class, file name, size, mtime_ns]`` row per image: what the cache key hashes."""
    out: list[list[Any]] = []
    for name, paths in zip(names, files):
        for p in paths:
            st = p.stat()
            out.append([name, p.name, st.st_size, st.st_mtime_ns])
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)[:40].strip("_") or "images"


def cache_path(source: Path, options: dict[str, Any], fingerprint: Any, cache_dir: Path) -> Path:
    """``<name>-<hash of path and options>-<hash of the files>.pt`` in ``cache_dir``."""
    where = hashlib.sha256(json.dumps([str(source), options], sort_keys=True).encode()).hexdigest()[:12]
    what = hashlib.sha256(json.dumps(fingerprint).encode()).hexdigest()[:16]
    return cache_dir / f"{_slug(source.name)}-{where}-{what}.pt"


def remove_outdated(current: Path) -> None:
    """Delete caches of the same source and options whose files have since changed."""
    stem = current.name.rsplit("-", 1)[0]
    for old in current.parent.glob(f"{stem}-*.pt"):
        if old != current and old.name.rsplit("-", 1)[0] == stem:
            old.unlink(missing_ok=True)
