"""A local HTTP server (127.0.0.1, background thread) for the download and dataset tests.

It serves in-memory files with HTTP Range support, and per path a fault mode:
``drop`` closes the connection halfway through the body the first time (to test
resume), ``html`` answers with an HTML page, ``html_body`` sends an HTML body labelled
as binary, ``norange`` ignores Range headers, ``status:NNN`` answers that status.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    bytes_sent: int = 0
    _server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/{path.lstrip('/')}"

    def start(self) -> FileServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0].lstrip("/")
                rng = self.headers.get("Range")
                owner.requests.append((path, rng))
                mode = owner.modes.get(path, "")
                if mode.startswith("status:"):
                    self.send_error(int(mode.split(":")[1]))
                    return
                if mode == "html":
                    body = b"<!DOCTYPE html><html><body>Please confirm the download</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if path not in owner.files:
                    self.send_error(404)
                    return
                data = owner.files[path]
                if mode == "html_body":
                    data = b"\n  <html><head><title>Quota exceeded</title></head></html>" + b" " * 100
                start, status = 0, 200
                if rng and mode != "norange" and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if mode == "drop":
                    owner.modes[path] = ""  # fail once, then behave
                    half = body[: len(body) // 2]
                    self.wfile.write(half)
                    self.wfile.flush()
                    owner.bytes_sent += len(half)
                    self.close_connection = True
                    return
                self.wfile.write(body)
                owner.bytes_sent += len(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
