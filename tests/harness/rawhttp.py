"""HTTP/1.1 requests written byte by byte: chunked bodies with a trailer section, or a head alone.

httpx can stream a chunked body but cannot send trailers, and always sends the
body it announces; this module writes the request itself on a socket
(optionally TLS) and reads the answer with ``http.client``.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def chunked_request(
    path: str,
    pieces: Iterable[bytes],
    *,
    host: str = "localhost",
    headers: Sequence[tuple[str, str]] = (),
    trailers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The bytes of one ``POST`` with ``Transfer-Encoding: chunked``, one chunk per piece, then the trailers."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Transfer-Encoding: chunked", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    if trailers:
        lines.append("Trailer: " + ", ".join(name for name, _ in trailers))
    out = bytearray(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    for piece in pieces:
        if piece:
            out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    out += b"0\r\n"
    for name, value in trailers:
        out += f"{name}: {value}\r\n".encode("latin-1")
    out += b"\r\n"
    return bytes(out)


def head_only_request(
    method: str,
    path: str,
    *,
    host: str = "localhost",
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The head of a request and nothing else: a test can announce a body (``Content-Length``)
    and never send it, to see who answers before the body exists."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def exchange(
    port: int,
    request: bytes,
    *,
    ca_cert: Path | None = None,
    server_name: str = "localhost",
    timeout: float = 30.0,
) -> RawResponse:
    """Write ``request`` to 127.0.0.1:``port`` (TLS when ``ca_cert`` is given) and read one response."""
    sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if ca_cert is not None:
            context = ssl.create_default_context(cafile=str(ca_cert))
            context.set_alpn_protocols(["http/1.1"])
            sock = context.wrap_socket(sock, server_hostname=server_name)
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        return RawResponse(response.status, list(response.getheaders()), body)
    finally:
        sock.close()


def post_chunked(
    port: int,
    path: str,
    pieces: Iterable[bytes],
    *,
    headers: Sequence[tuple[str, str]] = (),
    trailers: Sequence[tuple[str, str]] = (),
    ca_cert: Path | None = None,
    server_name: str = "localhost",
    timeout: float = 30.0,
) -> RawResponse:
    """Send a chunked ``POST`` (with ``trailers``) to 127.0.0.1:``port``; TLS when ``ca_cert`` is given."""
    request = chunked_request(path, pieces, host=server_name, headers=headers, trailers=trailers)
    return exchange(port, request, ca_cert=ca_cert, server_name=server_name, timeout=timeout)
