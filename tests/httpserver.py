"""A real HTTP file server on 127.0.0.1 for the data_fetch tests, with switchable faults.

It serves a folder like ``python -m http.server`` does, and can cut chosen files' bodies short
(the Content-Length still promises the whole file, as with a dropped connection), so the tests
exercise the same sockets, requests and pooch code that a student's download goes through.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class FileServer:
    """Serve ``root`` at ``self.url``; ``truncate[path] = n`` cuts the next ``n`` responses of ``path``."""

    def __init__(self, root: Path):
        self.root = root
        self.truncate: dict[str, int] = {}
        self.requests: list[str] = []  # relative paths asked for, in order
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _should_truncate(self, path: str) -> bool:
        with self._lock:
            self.requests.append(path)
            left = self.truncate.get(path, 0)
            if left:
                self.truncate[path] = left - 1
            return bool(left)

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                relative = unquote(urlsplit(self.path).path).lstrip("/")
                file = (server.root / relative).resolve()
                cut = server._should_truncate(relative)
                if server.root.resolve() not in file.parents or not file.is_file():
                    self.send_error(404, "not found")
                    return
                body = file.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

        return Handler


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused), for 'server down' tests."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
