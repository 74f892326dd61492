"""An HTTP audit collector on loopback, for the audit and fault tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .envoy import static_cluster_yaml


class Collector:
    """An HTTP audit collector on loopback: keeps every line POSTed to it."""

    def __init__(self, port: int = 0) -> None:
        """``port`` 0 picks a free one; a fixed one brings a collector back where it was."""
        self.lines: list[str] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length).decode()
                with collector._lock:
                    collector.lines.extend(line for line in body.split("\n") if line)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def cluster_yaml(self) -> str:
        return static_cluster_yaml("audit", self.port)
