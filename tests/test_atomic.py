"""Atomic writes (metabridge.atomic): the target is the old file or the whole new one, never
a mix, and no temporary file outlives a failed write."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from metabridge import atomic
from metabridge.atomic import atomic_open, atomic_replace, atomic_write_bytes, atomic_write_text


def listing(d):
    return sorted(p.name for p in d.iterdir())


def test_bytes_and_text_are_written_and_no_temp_is_left(tmp_path):
    out = atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01payload")
    assert out == tmp_path / "a.bin" and out.read_bytes() == b"\x00\x01payload"
    atomic_write_text(tmp_path / "b.txt", "héllo\n", encoding="latin-1")
    assert (tmp_path / "b.txt").read_bytes() == "héllo\n".encode("latin-1")
    atomic_write_text(tmp_path / "b.txt", "second")  # replaces, UTF-8 by default
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "second"
    with atomic_open(tmp_path / "c.txt", "w") as f:
        f.write("ünïcode")
    assert (tmp_path / "c.txt").read_bytes() == "ünïcode".encode()
    assert listing(tmp_path) == ["a.bin", "b.txt", "c.txt"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_write_that_raises_midway_keeps_the_old_file(tmp_path, error):
    target = tmp_path / "state.json"
    target.write_text("old content")
    with pytest.raises(error):
        with atomic_open(target, "w") as f:
            f.write("half of the new cont")
            f.flush()
            raise error("killed midway")
    assert target.read_text() == "old content"
    assert listing(tmp_path) == ["state.json"]  # the temporary file is gone


def test_a_failed_write_of_a_new_file_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_open(tmp_path / "new.bin") as f:
            f.write(b"x" * 1000)
            raise ValueError("encoder failed")
    assert listing(tmp_path) == []


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temp(tmp_path, monkeypatch):
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and listing(tmp_path) == ["t.bin"]


def test_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    atomic_write_bytes(tmp_path / "d.bin", b"data")
    assert events[:2] == ["fsync", "replace"]  # file synced, then renamed (then the directory, best effort)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_permissions_are_kept_or_follow_the_umask(tmp_path):
    target = tmp_path / "secret"
    target.write_bytes(b"old")
    target.chmod(0o600)
    atomic_write_bytes(target, b"new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "fresh", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o640  # not mkstemp's 0o600


def test_bad_modes_are_refused(tmp_path):
    for mode in ("ab", "r", "w+b"):
        with pytest.raises(ValueError, match="mode"):
            with atomic_open(tmp_path / "x", mode):
                pass
    with pytest.raises(ValueError, match="text mode"):
        with atomic_open(tmp_path / "x", "wb", encoding="utf-8"):
            pass
    assert listing(tmp_path) == []


def test_atomic_replace_moves_a_finished_file(tmp_path):
    part = tmp_path / "f.part"
    part.write_bytes(b"complete")
    (tmp_path / "f").write_bytes(b"stale")
    assert atomic_replace(part, tmp_path / "f") == tmp_path / "f"
    assert (tmp_path / "f").read_bytes() == b"complete" and listing(tmp_path) == ["f"]
