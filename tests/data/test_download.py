"""Downloads (checksums, resume, retries, HTML pages) and extraction (atomic, path-safe)
against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from metabridge.data import download as dl
from metabridge.data.download import (
    ChecksumError,
    DownloadError,
    HTMLPageError,
    RemoteFile,
    UnsafeArchiveError,
    ensure_file,
    extract_archive,
    fetch,
    fetch_and_extract,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from fewshot_server import FileServer  # noqa: E402

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB + 4 bytes: several read chunks


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def server():
    s = FileServer(files={"data.bin": PAYLOAD}).start()
    yield s
    s.stop()


def remote(server: FileServer, path: str = "data.bin", **kw) -> RemoteFile:
    kw.setdefault("sha256", sha(PAYLOAD))
    return RemoteFile("data.bin", (server.url(path),), **kw)


def test_fetch_downloads_verifies_and_places_file(server, tmp_path):
    seen: list[int] = []
    out = fetch(remote(server, size=len(PAYLOAD)), tmp_path, backoff=0, progress=seen.append)
    assert out == tmp_path / "data.bin" and out.read_bytes() == PAYLOAD
    assert len(seen) >= 2 and seen[-1] == len(PAYLOAD)  # progress reported per chunk
    assert not (tmp_path / "data.bin.part").exists()
    n = len(server.requests)
    assert fetch(remote(server), tmp_path) == out  # present and valid: no new request
    assert len(server.requests) == n


def test_dropped_connection_is_resumed_with_range(server, tmp_path):
    server.modes["data.bin"] = "drop"
    out = fetch(remote(server), tmp_path, retries=2, backoff=0)
    assert out.read_bytes() == PAYLOAD
    assert len(server.requests) == 2
    first, second = server.requests
    assert first[1] is None and second[1] == f"bytes={len(PAYLOAD) // 2}-"
    assert server.bytes_sent == len(PAYLOAD)  # resumed, not restarted


def test_partial_file_from_earlier_run_is_resumed(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:1000])
    fetch(remote(server), tmp_path, backoff=0)
    assert server.requests == [("data.bin", "bytes=1000-")]
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.modes["data.bin"] = "norange"
    (tmp_path / "data.bin.part").write_bytes(b"x" * 1000)
    out = fetch(remote(server), tmp_path, backoff=0)
    assert out.read_bytes() == PAYLOAD


def test_complete_part_with_known_size_needs_no_request(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    fetch(remote(server, size=len(PAYLOAD)), tmp_path)
    assert server.requests == []


def test_checksum_mismatch_is_a_clear_error_and_leaves_nothing(server, tmp_path):
    with pytest.raises(ChecksumError) as e:
        fetch(remote(server, sha256="0" * 64), tmp_path, backoff=0)
    msg = str(e.value)
    assert "sha256" in msg and "0" * 64 in msg and sha(PAYLOAD) in msg
    assert str(tmp_path / "data.bin") in msg and "download=True" in msg
    assert list(tmp_path.iterdir()) == []  # no bad file kept, no .part to resume


def test_md5_only_registry_entry_is_checked(server, tmp_path):
    good = hashlib.md5(PAYLOAD).hexdigest()
    fetch(remote(server, sha256=None, md5=good), tmp_path)
    (tmp_path / "data.bin").unlink()
    with pytest.raises(ChecksumError, match="md5"):
        fetch(remote(server, sha256=None, md5="f" * 32), tmp_path)


def test_existing_truncated_file_is_reported(tmp_path, server):
    (tmp_path / "data.bin").write_bytes(PAYLOAD[:10])
    with pytest.raises(ChecksumError, match="truncated: 10 bytes"):
        fetch(remote(server, size=len(PAYLOAD)), tmp_path)
    with pytest.raises(ChecksumError, match="corrupt"):
        fetch(remote(server), tmp_path)


@pytest.mark.parametrize("mode", ["html", "html_body"])
def test_html_page_instead_of_data(server, tmp_path, mode):
    server.modes["data.bin"] = mode
    with pytest.raises(HTMLPageError) as e:
        fetch(remote(server), tmp_path, backoff=0)
    msg = str(e.value)
    assert server.url("data.bin") in msg and str(tmp_path / "data.bin") in msg and "place" in msg
    assert len(server.requests) == 1  # not retried: it will not fix itself
    assert not any(tmp_path.iterdir())


def test_not_found_is_not_retried_and_names_the_fix(server, tmp_path):
    with pytest.raises(DownloadError) as e:
        fetch(remote(server, "missing.bin"), tmp_path, retries=3, backoff=0)
    assert "404" in str(e.value) and server.url("missing.bin") in str(e.value)
    assert f"place it at {tmp_path / 'data.bin'}" in str(e.value)
    assert len(server.requests) == 1


def test_server_errors_are_retried_then_reported(server, tmp_path):
    server.modes["data.bin"] = "status:503"
    with pytest.raises(DownloadError, match="4 attempts per URL"):
        fetch(remote(server), tmp_path, retries=3, backoff=0)
    assert len(server.requests) == 4


def test_second_mirror_is_used_when_first_fails(server, tmp_path):
    r = RemoteFile("data.bin", (server.url("gone.bin"), server.url("data.bin")), sha256=sha(PAYLOAD))
    assert fetch(r, tmp_path, backoff=0).read_bytes() == PAYLOAD


def test_unreachable_host_keeps_nothing_and_explains(tmp_path):
    r = RemoteFile("data.bin", ("http://127.0.0.1:9/data.bin",), sha256=sha(PAYLOAD))
    with pytest.raises(DownloadError, match="place it at"):
        fetch(r, tmp_path, retries=1, backoff=0, timeout=2)


def test_file_without_checksum_needs_explicit_opt_in(server, tmp_path):
    with pytest.raises(ChecksumError, match="No checksum"):
        fetch(remote(server, sha256=None), tmp_path)
    out = fetch(remote(server, sha256=None, unverified_ok=True), tmp_path)
    assert (tmp_path / "data.bin.sha256").read_text().strip() == sha(PAYLOAD)
    assert out.read_bytes() == PAYLOAD


# ------------------------------------------------------------------------ extraction

FILES = {"top/a.txt": b"alpha", "top/sub/b.bin": b"\x00\x01" * 50, "top/sub/c.txt": b"gamma"}


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_extract_archive_formats(tmp_path, kind):
    arch = tmp_path / f"a.{kind}"
    make_zip(arch, FILES) if kind == "zip" else make_tar(arch, FILES, "w" if kind == "tar" else "w:gz")
    out = extract_archive(arch, tmp_path / "data" / "top", top="top")
    assert (out / "a.txt").read_bytes() == b"alpha" and (out / "sub" / "b.bin").read_bytes() == FILES["top/sub/b.bin"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["top"]  # no temp dir left


@pytest.mark.parametrize("bad", ["../evil.txt", "/tmp/evil_abs.txt", "top/../../evil.txt"])
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_path_traversal_is_refused(tmp_path, bad, kind):
    files = {"top/ok.txt": b"ok", bad: b"pwned"}
    arch = tmp_path / f"evil.{kind}"
    make_zip(arch, files) if kind == "zip" else make_tar(arch, files)
    (tmp_path / "x").mkdir()
    with pytest.raises(UnsafeArchiveError, match="outside the extraction directory"):
        extract_archive(arch, tmp_path / "x" / "top", top="top")
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil_abs.txt").exists()
    assert list((tmp_path / "x").iterdir()) == []


def test_tar_symlink_is_refused(tmp_path):
    arch = tmp_path / "link.tar"
    with tarfile.open(arch, "w") as tf:
        info = tarfile.TarInfo("top/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="link"):
        extract_archive(arch, tmp_path / "out" / "top", top="top")
    assert not (tmp_path / "out" / "top").exists()


def test_failed_extraction_leaves_nothing(tmp_path, monkeypatch):
    arch = make_tar(tmp_path / "a.tar.gz", FILES)
    calls = {"n": 0}
    real = dl._copy_member

    def flaky(src, target):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # e.g. Ctrl-C mid-extraction
        real(src, target)

    monkeypatch.setattr(dl, "_copy_member", flaky)
    (tmp_path / "d").mkdir()
    with pytest.raises(KeyboardInterrupt):
        extract_archive(arch, tmp_path / "d" / "top", top="top")
    assert list((tmp_path / "d").iterdir()) == []


def test_killed_extraction_leaves_no_target_and_is_cleaned_next_time(tmp_path):
    arch = make_tar(tmp_path / "a.tar.gz", FILES)
    target = tmp_path / "d" / "top"
    script = textwrap.dedent(
        f"""
        import os, signal
        from metabridge.data import download as dl
        real, n = dl._copy_member, [0]
        def killer(src, target):
            n[0] += 1
            if n[0] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, target)
        dl._copy_member = killer
        dl.extract_archive({str(arch)!r}, {str(target)!r}, top="top")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    assert not target.exists()  # never half there
    leftovers = list((tmp_path / "d").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".top.extracting-")
    extract_archive(arch, target, top="top")  # the dead run's temp dir is removed
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["top"]
    assert (target / "sub" / "c.txt").read_bytes() == b"gamma"


def test_truncated_archive_is_a_clear_error(tmp_path):
    arch = make_tar(tmp_path / "a.tar.gz", {"top/big.bin": os.urandom(50_000)})
    arch.write_bytes(arch.read_bytes()[:20_000])
    (tmp_path / "d").mkdir()
    with pytest.raises(DownloadError, match="corrupt or truncated"):
        extract_archive(arch, tmp_path / "d" / "top", top="top")
    assert list((tmp_path / "d").iterdir()) == []


def test_archive_without_expected_top_folder(tmp_path):
    arch = make_zip(tmp_path / "a.zip", {"other/a.txt": b"a"})
    with pytest.raises(DownloadError, match="does not contain the folder 'top'"):
        extract_archive(arch, tmp_path / "d" / "top", top="top")
    assert not (tmp_path / "d" / "top").exists()


# ------------------------------------------------------- download -> verify -> extract


def test_ensure_file_uses_a_good_copy_downloads_when_allowed_and_otherwise_names_the_fix(server, tmp_path):
    r = remote(server)
    with pytest.raises(FileNotFoundError) as e:
        ensure_file(r, tmp_path, download=False, what="Toy set", alternative=", or place other.npz in X")
    msg = str(e.value)
    assert msg.startswith("Toy set not found: call with download=True") and server.url("data.bin") in msg
    assert str(tmp_path / "data.bin") in msg and msg.endswith(", or place other.npz in X.")
    assert server.requests == [] and list(tmp_path.iterdir()) == []
    assert ensure_file(r, tmp_path, download=True, what="Toy set").read_bytes() == PAYLOAD
    assert ensure_file(r, tmp_path, download=False, what="Toy set") == tmp_path / "data.bin"
    assert len(server.requests) == 1  # the verified copy is used, not fetched again
    (tmp_path / "data.bin").write_bytes(PAYLOAD[:-1] + b"!")
    for download in (False, True):  # a bad copy is reported, never silently replaced
        with pytest.raises(ChecksumError, match="corrupt"):
            ensure_file(r, tmp_path, download=download, what="Toy set")


def test_fetch_and_extract_downloads_verifies_extracts_once(tmp_path):
    arch = make_tar(tmp_path / "src.tar.gz", FILES)
    data = arch.read_bytes()
    s = FileServer(files={"a.tar.gz": data}).start()
    try:
        r = RemoteFile("a.tar.gz", (s.url("a.tar.gz"),), sha256=sha(data), size=len(data))
        base = tmp_path / "base"
        with pytest.raises(FileNotFoundError, match="download=True"):
            fetch_and_extract(r, base, base / "top", download=False, what="Toy", top="top")
        out = fetch_and_extract(r, base, base / "top", download=True, what="Toy", top="top")
        assert out == base / "top" and (out / "sub" / "c.txt").read_bytes() == b"gamma"
        (base / "a.tar.gz").unlink()  # the extracted folder is enough from now on
        assert fetch_and_extract(r, base, base / "top", download=False, what="Toy", top="top") == out
        assert len(s.requests) == 1
        s.modes["a.tar.gz"] = "html"
        with pytest.raises(HTMLPageError):
            fetch_and_extract(r, tmp_path / "other", tmp_path / "other" / "top", download=True, what="Toy", top="top")
        assert not (tmp_path / "other" / "top").exists()
    finally:
        s.stop()
