"""One MCP request at a time, with or without a bearer token, and the record pqguard wrote for it.

The requests follow the 2026-07-28 revision: no handshake and no session, so a
single POST is a complete, valid MCP request that the demo server answers
(``params._meta`` and the mirrored ``MCP-Protocol-Version`` / ``Mcp-Method`` /
``Mcp-Name`` headers; see :mod:`harness.raw_mcp`).

Each request goes to ``<url>?case=<unique id>``. pqguard records the path, so
the record of a request is found even when pqguard refused it on its headers
(before reading the body, so before knowing the JSON-RPC id).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .mcp_session import ssl_context
from .raw_mcp import ACCEPT, META_CAPABILITIES, META_VERSION, MODERN, mirrored_name, response_messages
from .records import Record, wait_for_record


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def modern_message(method: str, params: dict[str, Any] | None, rpc_id: Any) -> dict[str, Any]:
    params = dict(params or {})
    params["_meta"] = {META_VERSION: MODERN, META_CAPABILITIES: {}}
    return {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": params}


def modern_headers(method: str, params: dict[str, Any] | None) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": ACCEPT, "mcp-protocol-version": MODERN,
               "mcp-method": method}
    name = mirrored_name(method, params)
    if name is not None:
        headers["mcp-name"] = name
    return headers


@dataclass
class Call:
    """A request that was sent and what came back."""

    rpc_id: str
    path: str  # the request's path and query: the ``path`` of its pqguard.request record
    response: httpx.Response

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def answer(self) -> dict[str, Any] | None:
        """The JSON-RPC message of the answer that carries this request's id, or the error
        pqguard answers with (whatever its id)."""
        try:
            messages = response_messages(self.response)
        except ValueError:
            return None
        mine = [m for m in messages if isinstance(m, dict) and m.get("id") == self.rpc_id]
        if mine:
            return mine[0]
        errors = [m for m in messages if isinstance(m, dict) and "error" in m]
        return errors[0] if len(messages) == 1 and errors else None

    @property
    def result_text(self) -> str | None:
        """The text of a ``tools/call`` result, if that is what came back."""
        answer = self.answer or {}
        content = (answer.get("result") or {}).get("content") or []
        return content[0].get("text") if content and isinstance(content[0], dict) else None


class McpCaller:
    """Sends single MCP requests to one URL over one HTTP client (one connection, reused)."""

    def __init__(self, url: str, *, ca_cert: Path | None = None, timeout: float = 30.0) -> None:
        self.url = url
        verify = ssl_context(ca_cert) if url.startswith("https://") and ca_cert else False
        self.http = httpx.Client(verify=verify, trust_env=False, timeout=timeout)

    def __enter__(self) -> McpCaller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def call(self, method: str = "tools/call", params: dict[str, Any] | None = None, *,
             token: str | None = None, headers: dict[str, str] | None = None, rpc_id: str | None = None,
             body: bytes | None = None, prefix: str = "call") -> Call:
        """POST one request. ``body`` replaces the JSON built from ``method`` and ``params``
        (the headers still mirror ``method`` and ``params``); it must use ``rpc_id``."""
        rpc_id = rpc_id or unique(prefix)
        path_and_query = httpx.URL(self.url).raw_path.decode() + f"?case={rpc_id}"
        all_headers = {**modern_headers(method, params), **(bearer(token) if token else {}), **(headers or {})}
        content = body if body is not None else json.dumps(modern_message(method, params, rpc_id)).encode()
        response = self.http.post(f"{self.url}?case={rpc_id}", content=content, headers=all_headers)
        return Call(rpc_id, path_and_query, response)

    def tool(self, name: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> Call:
        return self.call("tools/call", {"name": name, "arguments": arguments or {}}, **kwargs)


def call_once(url: str, *args: Any, ca_cert: Path | None = None, **kwargs: Any) -> Call:
    with McpCaller(url, ca_cert=ca_cert) as caller:
        return caller.call(*args, **kwargs)


def tool_once(url: str, name: str, arguments: dict[str, Any] | None = None, *, ca_cert: Path | None = None,
              **kwargs: Any) -> Call:
    with McpCaller(url, ca_cert=ca_cert) as caller:
        return caller.tool(name, arguments, **kwargs)


def record_of(edge_log: Path, call: Call, *, since: int = 0, timeout: float = 10.0) -> Record:
    """The pqguard.request record of ``call`` (found by its unique path)."""
    return wait_for_record(edge_log, lambda r: r.get("path") == call.path, since=since, timeout=timeout,
                           what=f"the pqguard.request record of {call.path}")
