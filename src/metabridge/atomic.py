"""Atomic file writes: a file is either its old content or its complete new content.

Every writer in metabridge that replaces a file (dataset caches, downloads, rendered
glyphs; later configs and checkpoints) goes through these helpers instead of
hand-rolling the pattern:

1. write to a temporary file in the *same directory* as the target (so the final
   rename never crosses a file system),
2. flush and ``fsync`` it, so its bytes are on disk before it gets the real name,
3. ``os.replace`` it onto the target (atomic on POSIX and Windows),
4. ``fsync`` the directory, so the rename itself survives a power cut (best effort:
   not every platform or file system allows opening a directory),

and on any exception (``KeyboardInterrupt`` included) remove the temporary file and
leave the target untouched. A process killed by SIGKILL can leave a temporary
``.<name>.<random>.tmp`` beside the target, never a truncated target.

The new file gets the permissions of the file it replaces, or the usual
``0o666 & ~umask`` for a new file (not ``tempfile.mkstemp``'s private ``0o600``). A
symbolic link at ``path`` is replaced by a regular file, not followed.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_replace", "atomic_write_bytes", "atomic_write_text", "fsync_directory"]

_MODES = {"w": "w", "wt": "w", "wb": "wb"}


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """``fsync`` a directory so that renames inside it are durable (best effort, never raises)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:  # e.g. Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create ``.<name>.<random>.tmp`` beside ``path`` exclusively; return its descriptor and path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp  # the umask applies, as for open(path, "w")
        except FileExistsError:
            continue
    raise FileExistsError(
        f"could not create a temporary file beside {path} (100 names taken); remove stale .tmp files there."
    )


@contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None, newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing so that it is replaced atomically when the block ends.

    Yields a file object on a temporary file beside ``path``; on a normal exit it is
    flushed, fsynced and renamed onto ``path`` and the directory is fsynced; if the
    block raises, the temporary file is removed and ``path`` keeps its old content
    (or stays absent). ``mode`` is ``"wb"`` (default), ``"w"`` or ``"wt"``; text
    modes take ``encoding`` (default UTF-8) and ``newline`` as :func:`open` does.
    The directory of ``path`` must exist.

    Example::

        with atomic_open("model.pt") as f:
            torch.save(state, f)
    """
    if mode not in _MODES:
        raise ValueError(
            f"atomic_open: mode must be one of {sorted(_MODES)} (got {mode!r}); append/read modes cannot be atomic."
        )
    binary = "b" in mode
    if binary and (encoding is not None or newline is not None):
        raise ValueError("atomic_open: encoding and newline apply to text mode only; use mode='w'.")
    path = Path(path)
    fd, tmp = _create_temp(path)
    try:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            pass
        else:
            try:
                os.chmod(tmp, stat.S_IMODE(st.st_mode))
            except OSError:
                pass
        if binary:
            f = os.fdopen(fd, _MODES[mode])
        else:
            f = os.fdopen(fd, _MODES[mode], encoding=encoding or "utf-8", newline=newline)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> Path:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_open`); return the path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``text`` atomically (see :func:`atomic_open`); return the path."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def atomic_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Durably rename a finished file ``src`` onto ``dst`` (same directory or file system).

    For files written in place under a temporary name by other means (a resumable
    ``.part`` download): ``src`` is fsynced, renamed with ``os.replace`` and the
    directory of ``dst`` is fsynced.
    """
    src, dst = Path(src), Path(dst)
    with open(src, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(src, dst)
    fsync_directory(dst.parent)
    return dst
