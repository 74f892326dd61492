"""A JWKS endpoint on loopback whose answer a test changes while Envoy fetches it.

pqguard's ``auth.remote_jwks`` fetches a key set through an Envoy cluster
(``dispatch_http_call``). This server is that cluster's only endpoint, plain
HTTP on 127.0.0.1, run in a thread of the test process::

    edge Envoy (pqguard, every worker VM) ──GET <path>, cluster "jwks"──> JwksServer

It answers ``GET <path>`` with what the test last set: a key set (JSON) with an
optional ``Cache-Control`` header, an error status, or any body at all (to send
garbage). Every fetch is counted, with the answer it got.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .envoy import static_cluster_yaml

DEFAULT_PATH = "/.well-known/jwks.json"
DEFAULT_AUTHORITY = "issuer.test"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    cache_control: str | None = None


@dataclass(frozen=True)
class Fetch:
    """One request the server answered."""

    path: str
    authority: str | None
    status: int


class JwksServer:
    """Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(self, path: str = DEFAULT_PATH, authority: str = DEFAULT_AUTHORITY, port: int = 0) -> None:
        """``port`` 0 picks a free one; a fixed one lets a test start the server after Envoy
        (an endpoint that is down when Envoy starts)."""
        self.path = path
        self._bind_port = port
        self.authority = authority
        self._lock = threading.Lock()
        self._answer = Answer(503, b"no key set published yet\n", "text/plain")
        self._after_next: Answer | None = None
        self._fetches: list[Fetch] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------------------

    def start(self) -> JwksServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Envoy's cluster connection pool expects

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                answer = server._answer_for(self.path, self.headers.get("host"))
                self.send_response(answer.status)
                self.send_header("content-type", answer.content_type)
                self.send_header("content-length", str(len(answer.body)))
                if answer.cache_control is not None:
                    self.send_header("cache-control", answer.cache_control)
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # fetches are recorded in JwksServer.fetches

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._bind_port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="jwks-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() first"
        return self._httpd.server_address[1]

    # -- what it answers ---------------------------------------------------------------------------

    def publish(self, jwks: dict[str, Any], *, cache_control: str | None = None) -> None:
        """Answer with this key set (200, JSON) from now on."""
        self._set(Answer(200, json.dumps(jwks).encode(), cache_control=cache_control))

    def publish_once(self, jwks: dict[str, Any], *, then_status: int = 500) -> None:
        """Answer the next fetch only with this key set; every later one with ``then_status``."""
        with self._lock:
            self._answer = Answer(200, json.dumps(jwks).encode())
            self._after_next = Answer(then_status, b"internal error\n", "text/plain")

    def fail(self, status: int = 500, body: bytes = b"internal error\n") -> None:
        """Answer with an error status from now on."""
        self._set(Answer(status, body, "text/plain"))

    def serve_raw(self, body: bytes, *, status: int = 200, content_type: str = "application/json",
                  cache_control: str | None = None) -> None:
        """Answer with exactly these bytes from now on (for example something that is not a key set)."""
        self._set(Answer(status, body, content_type, cache_control))

    def _set(self, answer: Answer) -> None:
        with self._lock:
            self._answer = answer
            self._after_next = None

    def _answer_for(self, path: str, authority: str | None) -> Answer:
        with self._lock:
            answer = self._answer if path == self.path else Answer(404, b"not found\n", "text/plain")
            self._fetches.append(Fetch(path, authority, answer.status))
            if path == self.path and self._after_next is not None:
                self._answer, self._after_next = self._after_next, None
            return answer

    # -- observations ------------------------------------------------------------------------------

    @property
    def fetches(self) -> list[Fetch]:
        with self._lock:
            return list(self._fetches)

    def cluster_yaml(self, name: str = "jwks") -> str:
        """An Envoy cluster (list item at column 0) that reaches this server, for ``render_edge(extra_clusters=...)``."""
        return static_cluster_yaml(name, self.port)
