"""Checked downloads and safe, atomic archive extraction (standard library only).

``fetch`` streams a URL to ``<dest>.part`` (resuming it with an HTTP ``Range``
request after a dropped connection), retries transient failures, refuses an HTML
page served in place of data, verifies the checksums the registry knows (sha256,
and md5 where that is all the host publishes), and only then renames the file into
place. ``extract_archive`` unpacks zip / tar / tar.gz into a temporary directory
next to the target, rejects members that would escape it, and renames the result
into place, so a killed extraction never leaves a half-filled cache behind.

``fetch_and_extract`` (and ``ensure_file`` for a file used as it is) is the one
download -> verify -> extract step every dataset module calls: use the file that is
there if it verifies, else download it when allowed, else say where to put it.

Every error names the URL or file, what went wrong, and how to fix it (usually:
download the file yourself and place it at PATH).

Why not pooch (its source read in 2026: ``HTTPDownloader``, ``stream_download``,
``processors``): ``pooch.retrieve`` with ``Untar``/``Unzip`` would cover retrieve +
hash + unpack, but it never looks at Content-Type or the body (an HTML page passes
wherever no checksum is published, as for mini-/tiered-ImageNet), restarts instead of
resuming, takes one URL and one hash per file, unpacks in place rather than
atomically, and refuses tar path traversal only through ``filter="data"`` on Python
>= 3.12 (not on the 3.10/3.11 we support; zip ``../`` names are silently rewritten,
not refused). Keeping the HTML check, resume, mirrors and refusal would mean wrapping
most of it, and it would add pooch, requests and platformdirs as dependencies, so this
standard-library module stays.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from metabridge.atomic import atomic_replace, atomic_write_text, fsync_directory
from metabridge.data._extract_temps import remove_stale_temps

log = logging.getLogger(__name__)

USER_AGENT = "metabridge-downloader/0.1 (+https://github.com/metabridge)"
CHUNK = 1 << 20
_HTML_PREFIXES = (b"<!doctype html", b"<html", b"<head", b"<?xml version", b"<!--")


class DownloadError(RuntimeError):
    """A file could not be fetched; the message says how to get it by hand."""


class HTMLPageError(DownloadError):
    """The server answered with an HTML page (login, quota, confirmation) instead of data."""


class ChecksumError(DownloadError):
    """A file's digest differs from the one in the registry (corrupt, truncated or changed)."""


class UnsafeArchiveError(RuntimeError):
    """An archive member would be written outside the extraction directory."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where to get it and how to recognise it.

    ``urls`` are tried in order (mirrors). ``sha256`` is preferred; ``md5`` is
    accepted where that is what the host (or the reference implementation) publishes;
    every digest given is checked. ``size`` (bytes), when known, catches truncation
    early and lets a complete ``.part`` file be recognised without a request. A file
    with no digest at all is only accepted when ``unverified_ok`` is set, and its
    loader must then check the content (shapes and counts) instead.
    """

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    unverified_ok: bool = False
    note: str = ""

    @property
    def has_checksum(self) -> bool:
        return bool(self.sha256 or self.md5)


def file_digests(path: Path, algorithms: tuple[str, ...]) -> dict[str, str]:
    """Hex digests of ``path`` for several ``hashlib`` algorithms in one read (1 MiB chunks)."""
    hashes = {a: hashlib.new(a) for a in algorithms}
    if hashes:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                for h in hashes.values():
                    h.update(block)
    return {a: h.hexdigest() for a, h in hashes.items()}


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of ``path`` with one ``hashlib`` algorithm."""
    return file_digests(path, (algorithm,))[algorithm]


def _looks_like_html(head: bytes) -> bool:
    return head.lstrip()[:16].lower().startswith(_HTML_PREFIXES)


def verify_file(path: Path, remote: RemoteFile, *, where: str | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` matches ``remote``'s size and digests.

    ``where`` is the place the user should put a good copy (defaults to ``path``).
    """
    path = Path(path)
    where = where or str(path)
    fix = (
        f"Delete {path} and call again with download=True, or place a good copy of "
        f"{remote.filename} (from {remote.urls[0] if remote.urls else 'its publisher'}) at {where}."
    )
    actual_size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(512)
    if _looks_like_html(head) and not remote.filename.endswith((".html", ".htm")):
        raise ChecksumError(f"{path} is an HTML page, not {remote.filename} (a failed or blocked download). {fix}")
    if remote.size is not None and actual_size != remote.size:
        kind = "truncated" if actual_size < remote.size else "too large"
        raise ChecksumError(f"{path} is {kind}: {actual_size} bytes, expected {remote.size}. {fix}")
    wanted = {a: getattr(remote, a) for a in ("sha256", "md5") if getattr(remote, a)}
    digests = file_digests(path, tuple(wanted))
    for algorithm, expected in wanted.items():
        actual = digests[algorithm]
        if actual.lower() != expected.lower():
            raise ChecksumError(
                f"{path} is corrupt or not the expected file: {algorithm} {actual}, expected {expected}. {fix}"
            )
    if not remote.has_checksum and not remote.unverified_ok:
        raise ChecksumError(f"No checksum is registered for {remote.filename}; refusing to trust {path}.")


class _Incomplete(Exception):
    """Internal: the connection ended before Content-Length bytes arrived (retryable)."""


def _open(url: str, start: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _stream_once(
    url: str, part: Path, remote: RemoteFile, dest: Path, timeout: float, progress: Callable[[int], None] | None
) -> None:
    """One attempt: continue ``part`` from its current size (or start over)."""
    start = part.stat().st_size if part.exists() else 0
    if remote.size is not None:
        if start == remote.size:
            return  # a previous attempt got every byte; the checksum decides
        if start > remote.size:
            part.unlink()
            start = 0
    try:
        resp = _open(url, start, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:
            # Range not satisfiable: the .part is already whole (or garbage); let the
            # checksum decide when the size is unknown, otherwise start over.
            if remote.size is None:
                return
            part.unlink()
            raise _Incomplete("server refused the range; restarting") from e
        raise
    with resp:
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if "text/html" in ctype and not remote.filename.endswith((".html", ".htm")):
            raise HTMLPageError(_html_message(url, dest, f"Content-Type {ctype!r}"))
        if start and resp.status == 206:
            content_range = resp.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {start}-"):
                raise _Incomplete(f"unexpected Content-Range {content_range!r} for resume at {start}")
            mode = "ab"
        else:
            start, mode = 0, "wb"  # server ignored the Range header: start over
        length = resp.headers.get("Content-Length")
        expected_end = start + int(length) if length is not None else None
        received = start
        with open(part, mode) as out:
            first = True
            while True:
                try:
                    block = resp.read(CHUNK)
                except http.client.IncompleteRead as e:
                    out.write(e.partial)
                    raise _Incomplete(str(e)) from e
                if not block:
                    break
                if first and start == 0 and _looks_like_html(block[:512]) and not remote.filename.endswith(".html"):
                    raise HTMLPageError(_html_message(url, dest, f"body starting {block[:40]!r}"))
                first = False
                out.write(block)
                received += len(block)
                if progress:
                    progress(received)
        if expected_end is not None and received < expected_end:
            raise _Incomplete(f"connection closed at byte {received} of {expected_end}")


def _html_message(url: str, dest: Path, evidence: str) -> str:
    return (
        f"{url} served an HTML page ({evidence}) instead of the data file {dest.name}. The link may have "
        f"moved, or the host wants a login or a confirmation click (Google Drive does this for large files). "
        f"Open the URL in a browser, download the file, and place it at {dest}; then call again."
    )


_RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}


def fetch(
    remote: RemoteFile,
    directory: str | os.PathLike,
    *,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Make ``directory/remote.filename`` exist and verify it; download it if missing.

    A file already present is verified, not re-downloaded. Downloads go to
    ``<file>.part``; a ``.part`` left by an interrupted run is resumed. Each URL of
    ``remote.urls`` gets ``1 + retries`` attempts (exponential ``backoff`` seconds
    apart) before the next mirror is tried.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / remote.filename
    if dest.exists():
        verify_file(dest, remote)
        return dest
    if not remote.urls:
        raise DownloadError(
            f"{remote.filename} has no public download URL. {remote.note} Place the file at {dest}.".replace("  ", " ")
        )
    part = dest.with_name(dest.name + ".part")
    bar = None
    if progress is None:
        progress, bar = _terminal_progress(remote)
    try:
        _fetch_to_part(remote, dest, part, retries, timeout, backoff, progress)
    finally:
        if bar is not None:
            bar.close()
    try:
        verify_file(part, remote, where=str(dest))
    except ChecksumError:
        part.unlink(missing_ok=True)  # a bad file must not be resumed next time
        raise
    if not remote.has_checksum:
        digest = file_digest(part, "sha256")
        log.warning(
            "%s has no published checksum; recording sha256 %s in %s.sha256 (content is checked by the loader)",
            remote.filename,
            digest,
            dest,
        )
        atomic_write_text(dest.with_name(dest.name + ".sha256"), digest + "\n")
    atomic_replace(part, dest)
    return dest


def ensure_file(
    remote: RemoteFile, directory: str | os.PathLike, *, download: bool, what: str, alternative: str = ""
) -> Path:
    """The verified local copy ``directory/remote.filename``, downloaded first if needed and allowed.

    A file already there is verified (and never re-downloaded); a missing one is
    fetched when ``download`` is true, else :class:`FileNotFoundError` tells the user
    to pass ``download=True`` or where to place the file. ``what`` names the data in
    that message (``"CIFAR-100"``); ``alternative`` is appended to it as another
    way out (``", or place X in DIR"``).
    """
    directory = Path(directory)
    path = directory / remote.filename
    if path.exists():
        verify_file(path, remote)
        return path
    if download:
        return fetch(remote, directory)
    source = f" (from {remote.urls[0]})" if remote.urls else ""
    raise FileNotFoundError(
        f"{what} not found: call with download=True, or place {remote.filename}{source} at {path}{alternative}."
    )


def fetch_and_extract(
    remote: RemoteFile,
    directory: str | os.PathLike,
    target: str | os.PathLike,
    *,
    download: bool,
    what: str,
    top: str | None = None,
    alternative: str = "",
) -> Path:
    """Make the extracted archive ``target`` exist: download -> verify -> extract, as needed.

    An existing ``target`` is returned as it is (the archive may have been deleted
    since). Otherwise the archive ``directory/remote.filename`` is obtained with
    :func:`ensure_file` (verified; fetched only if ``download``) and unpacked into
    ``target`` with :func:`extract_archive` (atomic, path-safe; ``top`` as there).
    """
    target = Path(target)
    if target.exists():
        return target
    archive = ensure_file(remote, directory, download=download, what=what, alternative=alternative)
    return extract_archive(archive, target, top=top)


def _terminal_progress(remote: RemoteFile) -> tuple[Callable[[int], None] | None, Any]:
    """A tqdm byte counter on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        return None, None
    from tqdm import tqdm  # a dependency; imported here to keep the module's import light

    bar = tqdm(total=remote.size, unit="B", unit_scale=True, desc=remote.filename, leave=False)

    def update(received: int) -> None:
        bar.update(received - bar.n)

    return update, bar


def _fetch_to_part(
    remote: RemoteFile,
    dest: Path,
    part: Path,
    retries: int,
    timeout: float,
    backoff: float,
    progress: Callable[[int], None] | None,
) -> None:
    """Try every URL (each ``1 + retries`` times) until ``part`` holds the whole file."""
    failures: list[str] = []
    for url in remote.urls:
        last: BaseException | None = None
        for attempt in range(retries + 1):
            try:
                log.info("downloading %s -> %s (attempt %d)", url, dest, attempt + 1)
                _stream_once(url, part, remote, dest, timeout, progress)
                last = None
                break
            except HTMLPageError:
                part.unlink(missing_ok=True)
                raise
            except urllib.error.HTTPError as e:
                last = e
                if e.code not in _RETRYABLE_HTTP:
                    break
            except (TimeoutError, _Incomplete, urllib.error.URLError, http.client.HTTPException, OSError) as e:
                last = e
            if attempt < retries:
                time.sleep(backoff * (2**attempt))
        if last is None:
            break
        failures.append(f"{url}: {type(last).__name__}: {last}")
    else:
        raise DownloadError(
            f"Could not download {remote.filename} ({retries + 1} attempts per URL):\n  "
            + "\n  ".join(failures)
            + f"\nCheck the network or proxy, or download it yourself and place it at {dest}"
            + (f" (a partial download is kept at {part} and will be resumed)." if part.exists() else ".")
        )


# --------------------------------------------------------------------------- extraction


def _safe_relpath(name: str, archive: Path) -> PurePosixPath | None:
    """The member's path relative to the extraction root; raise if it would escape it."""
    clean = name.replace("\\", "/")
    p = PurePosixPath(clean)
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":") or ".." in p.parts:
        raise UnsafeArchiveError(
            f"{archive} has a member {name!r} that would be written outside the extraction directory; "
            f"refusing to extract it. Delete {archive} and download it again from the official source."
        )
    parts = [q for q in p.parts if q not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _copy_member(src: IO[bytes], target: Path) -> None:
    """Write one archive member (a seam the tests use to kill an extraction midway)."""
    with open(target, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def _members(archive: Path) -> Iterator[tuple[PurePosixPath, bool, Callable[[], IO[bytes]]]]:
    """Yield ``(relative path, is_dir, opener)`` for every regular file and directory."""
    name = archive.name.lower()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                rel = _safe_relpath(info.filename, archive)
                if rel is not None:
                    yield rel, info.is_dir(), functools.partial(zf.open, info)
        return
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")) or tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            for m in tf:
                rel = _safe_relpath(m.name, archive)
                if m.issym() or m.islnk() or m.isdev() or m.isfifo():
                    raise UnsafeArchiveError(
                        f"{archive} has a link or special file {m.name!r}; refusing to extract it. "
                        f"Delete {archive} and download it again from the official source."
                    )
                if rel is not None:
                    yield rel, m.isdir(), functools.partial(tf.extractfile, m)  # type: ignore[misc]  # a regular file here
        return
    raise DownloadError(f"{archive} is not a zip or tar archive. Delete it and download it again.")


def extract_archive(archive: str | os.PathLike, target: str | os.PathLike, *, top: str | None = None) -> Path:
    """Extract ``archive`` so that ``target`` appears complete or not at all.

    Members go into a temporary directory beside ``target``; with ``top`` the archive
    must hold a single top-level folder of that name, whose contents become ``target``;
    without it the whole archive content becomes ``target``. The final step is one
    ``os.rename``. An existing ``target`` is returned untouched.
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        return target
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(parent, target.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.extracting-{os.getpid()}-", dir=parent))
    try:
        for rel, is_dir, opener in _members(archive):
            out = tmp.joinpath(*rel.parts)
            if is_dir:
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            src = opener()
            if src is None:
                continue
            with src:
                _copy_member(src, out)
        source = tmp
        if top is not None:
            source = tmp / top
            if not source.is_dir():
                found = sorted(p.name for p in tmp.iterdir())
                raise DownloadError(
                    f"{archive} does not contain the folder {top!r} (found {found[:5]}); it is not the expected "
                    f"archive. Delete it and download it again."
                )
        try:
            os.rename(source, target)
        except OSError:
            if not target.exists():  # lost a race with a concurrent extraction otherwise
                raise
        fsync_directory(parent)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DownloadError(
            f"{archive} is corrupt or truncated ({type(e).__name__}: {e}). Delete it and download it again."
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
