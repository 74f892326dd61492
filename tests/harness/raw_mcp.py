"""Hand-written MCP sessions over httpx, one protocol version at a time.

The SDK client decides on its own which headers and envelopes it sends; these
sessions follow one protocol revision's rules exactly, so a test can speak
2025-03-26 without an ``MCP-Protocol-Version`` header (that revision has none),
or build a 2026-07-28 request by hand and then change one header:

* 2025-03-26 .. 2025-11-25: ``initialize`` (no version header), the server's
  ``Mcp-Session-Id`` on every later request, ``notifications/initialized``;
  ``MCP-Protocol-Version`` on every request after ``initialize`` from 2025-06-18 on.
* 2026-07-28: no handshake and no session; every request carries
  ``params._meta`` (protocol version, client capabilities) and the mirrored
  headers ``MCP-Protocol-Version``, ``Mcp-Method`` and, for ``tools/call``,
  ``prompts/get`` and ``resources/read``, ``Mcp-Name``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from .mcp_session import ssl_context

ACCEPT = "application/json, text/event-stream"
MODERN = "2026-07-28"
META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"

Headers = list[tuple[str, str]]


def sse_data(text: str) -> list[str]:
    """The ``data`` of each event of an event stream (multi-line data joined with ``\\n``)."""
    events, data = [], []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line:
            if data:
                events.append("\n".join(data))
            data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        events.append("\n".join(data))
    return events


def response_messages(response: httpx.Response) -> list[Any]:
    """The JSON-RPC messages of an MCP answer: a JSON body, an event stream, or unframed
    JSON sent as an event stream (a body that starts with ``{`` or ``[``)."""
    text = response.text
    if not text.strip():
        return []
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "text/event-stream" and text.lstrip()[:1] not in ("{", "["):
        return [json.loads(data) for data in sse_data(text)]
    value = json.loads(text)
    return value if isinstance(value, list) else [value]


def mirrored_name(method: str, params: dict[str, Any] | None) -> str | None:
    """What ``Mcp-Name`` mirrors in 2026-07-28: ``params.name`` or ``params.uri``."""
    params = params or {}
    if method in ("tools/call", "prompts/get"):
        return params.get("name")
    if method == "resources/read":
        return params.get("uri")
    return None


class RawMcpSession:
    """One MCP session at ``version``; use as a context manager (``open()`` runs the handshake)."""

    def __init__(self, url: str, version: str, *, ca_cert: Path | None = None, prefix: str = "raw",
                 extra_headers: Headers | None = None) -> None:
        """``extra_headers`` (for example ``[("authorization", "Bearer …")]``) go with every request."""
        self.url = url
        self.version = version
        self.prefix = prefix
        self.extra_headers: Headers = list(extra_headers or [])
        self.session_id: str | None = None
        self.initialize_result: dict[str, Any] | None = None
        verify = ssl_context(ca_cert) if ca_cert else False
        self.http = httpx.Client(verify=verify, trust_env=False, timeout=30.0)

    def __enter__(self) -> RawMcpSession:
        try:
            self.open()
        except BaseException:
            self.http.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    @property
    def modern(self) -> bool:
        return self.version == MODERN

    def new_id(self) -> str:
        return f"{self.prefix}-{uuid.uuid4().hex[:10]}"

    # -- building requests ----------------------------------------------------------------------

    def envelope(self, method: str, params: dict[str, Any] | None = None, rpc_id: Any = None) -> dict[str, Any]:
        """A request (``rpc_id`` given) or notification; in 2026-07-28 with its ``_meta``."""
        message: dict[str, Any] = {"jsonrpc": "2.0"}
        if rpc_id is not None:
            message["id"] = rpc_id
        message["method"] = method
        params = dict(params or {})
        if self.modern:
            params["_meta"] = {META_VERSION: MODERN, META_CAPABILITIES: {}, **params.get("_meta", {})}
        if params:
            message["params"] = params
        return message

    def headers(self, method: str | None = None, params: dict[str, Any] | None = None) -> Headers:
        """The headers this version sends with ``method`` (after the handshake)."""
        headers: Headers = [("content-type", "application/json"), ("accept", ACCEPT), *self.extra_headers]
        if self.session_id and not self.modern:
            headers.append(("mcp-session-id", self.session_id))
        if self.version >= "2025-06-18":
            headers.append(("mcp-protocol-version", self.version))
        if self.modern and method:
            headers.append(("mcp-method", method))
            name = mirrored_name(method, params)
            if name is not None:
                headers.append(("mcp-name", name))
        return headers

    # -- sending ----------------------------------------------------------------------------------

    def post(self, body: bytes | dict[str, Any] | list[Any] | Iterator[bytes], headers: Headers,
             *, path_suffix: str = "") -> httpx.Response:
        content = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        return self.http.post(self.url + path_suffix, content=content, headers=headers)

    def request(self, method: str, params: dict[str, Any] | None = None, *, rpc_id: Any = None,
                headers: Headers | None = None) -> tuple[httpx.Response, dict[str, Any] | None]:
        """Send one request; return the HTTP response and the JSON-RPC message that answers it."""
        rpc_id = self.new_id() if rpc_id is None else rpc_id
        response = self.post(self.envelope(method, params, rpc_id),
                             headers if headers is not None else self.headers(method, params))
        answer = next((m for m in response_messages(response) if isinstance(m, dict) and m.get("id") == rpc_id),
                      None)
        return response, answer

    def notify(self, method: str, params: dict[str, Any] | None = None) -> httpx.Response:
        return self.post(self.envelope(method, params), self.headers(method, params))

    def open(self) -> None:
        """The handshake of a handshake-era version: ``initialize`` then ``notifications/initialized``."""
        if self.modern:
            return
        init_headers: Headers = [("content-type", "application/json"), ("accept", ACCEPT), *self.extra_headers]
        params = {"protocolVersion": self.version, "capabilities": {},
                  "clientInfo": {"name": "pqguard-e2e-raw", "version": "1.0.0"}}
        response, answer = self.request("initialize", params, headers=init_headers)
        if response.status_code != 200 or answer is None or "result" not in answer:
            raise RuntimeError(f"initialize at {self.version} failed: HTTP {response.status_code}: {response.text}")
        self.initialize_result = answer["result"]
        self.session_id = response.headers.get("mcp-session-id")
        notified = self.notify("notifications/initialized")
        if notified.status_code != 202:
            raise RuntimeError(f"notifications/initialized: HTTP {notified.status_code}: {notified.text}")

