"""Demo MCP server used by the end-to-end tests and the demo.

A real MCP server built with the official MCP Python SDK, speaking Streamable
HTTP on ``http://127.0.0.1:<port>/mcp``. It exposes three tools with very
different risk profiles, one prompt and one resource:

* ``echo(text)``: harmless, returns its input;
* ``read_record(record_id)``: returns a fake record from an in-memory table;
* ``run_python(code)``: the kind of tool a gateway policy wants to control. It
  only *pretends*: it returns a sentence describing what it would run and never
  executes anything.

Every HTTP request that reaches ``/mcp`` is logged to stdout as one line::

    mcp-server.received {"http_method": "POST", "method": "tools/call", "id": 1, ...}

and kept in memory; ``GET /debug/received`` returns that list as JSON, so a
test can prove that a message never reached the server.

``--routing-tool`` adds ``query_region(region, query, limit)``, whose
``region`` and ``limit`` carry ``x-mcp-header`` annotations (``Region``,
``Limit``): 2026-07-28 clients mirror them into ``Mcp-Param-*`` headers. It
also adds ``misannotated_region``, whose schema puts ``x-mcp-header`` on a
``number`` property, which the spec forbids (clients must drop that tool).

``POST /debug/tools/<name>`` with ``{"description": "..."}`` changes what the
server says that tool does, from the next ``tools/list`` on (``{"description":
null}`` restores the original): a server that changes an approved tool behind
the client's back, a "rug pull". Like ``/debug/received`` it is meant to be
asked directly; a request that came through Envoy (it carries ``x-envoy-*`` or
``x-forwarded-*`` headers) is refused with 403.

Some servers answer a POST with plain JSON under ``Content-Type:
text/event-stream``. A request with the header ``X-Demo-SSE-Framing: unframed``
gets its event-stream answer in that form: the JSON-RPC message(s) of the
stream's events, without ``event:``/``data:`` framing, same content type.
``X-Demo-Answer-Status: 203`` and ``X-Demo-Answer-Content-Type: application/json-x``
(empty: none) relabel an answer: a server that hopes a gateway will not read it.

Usage::

    python tests/mcp_server/server.py --port 8000        # or MCP_SERVER_PORT=8000
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import sys
import threading
from typing import Annotated, Any

import uvicorn
from pydantic import Field
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MCP_PATH = "/mcp"
RECEIVED_PATH = "/debug/received"
TOOLS_ADMIN_PREFIX = "/debug/tools/"
FRAMING_HEADER = "x-demo-sse-framing"
# A request with these headers gets its answer with this status / content type (see ``relabelled``).
STATUS_HEADER = "x-demo-answer-status"
CONTENT_TYPE_HEADER = "x-demo-answer-content-type"

RECORDS: dict[str, dict[str, str]] = {
    "r-001": {"owner": "alice", "kind": "invoice", "amount": "120.00 EUR"},
    "r-002": {"owner": "bob", "kind": "contract", "amount": "n/a"},
    "r-003": {"owner": "carol", "kind": "payslip", "amount": "3100.00 EUR"},
}

server = MCPServer("pqguard-demo", version="1.0.0", instructions="Demo server for the pqguard end-to-end tests.")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def read_record(record_id: str) -> str:
    """Return one record of the demo record store."""
    record = RECORDS.get(record_id)
    if record is None:
        return f"no record {record_id!r}"
    return json.dumps({"id": record_id, **record}, sort_keys=True)


@server.tool()
def run_python(code: str) -> str:
    """Pretend to run Python code. Nothing is ever executed."""
    return f"would run {len(code)} characters of Python (not executed): {code[:80]!r}"


@server.prompt()
def summarize(topic: str) -> str:
    """Ask for a short summary of a topic."""
    return f"Write a three-sentence summary about {topic}."


@server.resource("records://index", mime_type="application/json")
def records_index() -> str:
    """The identifiers of all records."""
    return json.dumps(sorted(RECORDS))


ORIGINAL_DESCRIPTIONS = {tool.name: tool.description for tool in server._tool_manager.list_tools()}


def set_tool_description(name: str, description: str | None) -> dict[str, Any] | None:
    """Change (``None``: restore) the description of a tool; ``None`` if there is no such tool."""
    tool = server._tool_manager.get_tool(name)
    if tool is None:
        return None
    tool.description = ORIGINAL_DESCRIPTIONS[name] if description is None else description
    print("mcp-server.tool_changed " + json.dumps({"tool": name, "description": tool.description}), flush=True)
    return {"tool": name, "description": tool.description, "original": tool.description == ORIGINAL_DESCRIPTIONS[name]}


async def tools_admin(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /debug/tools/<name>`` ``{"description": str | null}``: see the module documentation."""
    headers = [k.decode("latin-1").lower() for k, _ in scope["headers"]]
    if any(h.startswith(("x-envoy-", "x-forwarded-")) for h in headers):
        await JSONResponse({"error": "ask the MCP server directly, not through a proxy"}, status_code=403)(
            scope, receive, send)
        return
    if scope["method"] != "POST":
        await JSONResponse({"error": "POST only"}, status_code=405)(scope, receive, send)
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    try:
        description = json.loads(body)["description"]
        if description is not None and not isinstance(description, str):
            raise TypeError("description must be a string or null")
    except (ValueError, KeyError, TypeError) as err:
        await JSONResponse({"error": f"expected {{\"description\": str | null}}: {err}"}, status_code=400)(
            scope, receive, send)
        return
    changed = set_tool_description(scope["path"][len(TOOLS_ADMIN_PREFIX):], description)
    if changed is None:
        await JSONResponse({"error": "no such tool"}, status_code=404)(scope, receive, send)
        return
    await JSONResponse(changed)(scope, receive, send)


class ReceivedLog:
    """Thread-safe list of the requests that reached the MCP endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            entry["seq"] = len(self._entries) + 1
            self._entries.append(entry)
        print("mcp-server.received " + json.dumps(entry, sort_keys=True), flush=True)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)


def describe_body(body: bytes) -> dict[str, Any]:
    """Summarise a request body: JSON-RPC method and id, or why it is not JSON-RPC."""
    if not body:
        return {}
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return {"parse_error": True, "body_prefix": body[:64].decode("utf-8", "replace")}
    if isinstance(message, dict):
        summary: dict[str, Any] = {"method": message.get("method")}
        if "id" in message:
            summary["id"] = message["id"]
        params = message.get("params")
        if isinstance(params, dict):
            for key in ("name", "uri"):
                if isinstance(params.get(key), str):
                    summary[key] = params[key]
        return summary
    if isinstance(message, list):
        return {"batch": [m.get("method") if isinstance(m, dict) else None for m in message]}
    return {"json_type": type(message).__name__}


class RecordingMiddleware:
    """ASGI middleware that logs every request to the MCP endpoint, then passes it on unchanged."""

    def __init__(self, app: ASGIApp, log: ReceivedLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == RECEIVED_PATH:
            await JSONResponse(self.log.snapshot())(scope, receive, send)
            return
        if scope["path"].startswith(TOOLS_ADMIN_PREFIX):
            await tools_admin(scope, receive, send)
            return
        if scope["path"] != MCP_PATH:
            await self.app(scope, receive, send)
            return

        # Read the whole body, then replay it to the application.
        buffered: list[Message] = []
        body = b""
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        entry: dict[str, Any] = {
            "http_method": scope["method"],
            "http_version": scope.get("http_version"),
            "session": headers.get("mcp-session-id"),
            "body_bytes": len(body),
            "param_headers": {k: v for k, v in headers.items() if k.startswith("mcp-param-")},
            "accept_encoding": headers.get("accept-encoding"),
            # Whether a bearer token reached the server (never the token itself).
            "has_authorization": "authorization" in headers,
            # Whether pqguard let its binding proof through (it must not).
            "has_binding_proof": "pqguard-binding" in headers,
            "has_ticket": "pqguard-ticket" in headers,
            # The verified claims pqguard forwards (auth.forward_payload_header), when it does.
            "payload_sub": payload_sub(headers.get("x-jwt-payload")),
        }
        entry.update(describe_body(body))
        self.log.add(entry)

        async def replay() -> Message:
            if buffered:
                return buffered.pop(0)
            return await receive()

        if headers.get(FRAMING_HEADER) == "unframed":
            send = unframed_event_stream(send)
        status, content_type = headers.get(STATUS_HEADER), headers.get(CONTENT_TYPE_HEADER)
        if status or content_type is not None:
            send = relabelled(send, int(status) if status else None, content_type)
        await self.app(scope, replay, send)


def payload_sub(header: str | None) -> str | None:
    """``sub`` of the claims pqguard forwarded (base64url JSON), if any."""
    if header is None:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except ValueError:
        return "<unreadable>"
    return claims.get("sub") if isinstance(claims, dict) else "<unreadable>"


def relabelled(send: Send, status: int | None, content_type: str | None) -> Send:
    """Wrap ``send`` so that the answer goes out with another status and/or content type (an empty
    ``content_type`` removes the header): a server that labels its answers oddly."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if content_type is not None:
                headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
                if content_type:
                    headers.append((b"content-type", content_type.encode()))
            message = {**message, "headers": headers, "status": status or message["status"]}
        await send(message)

    return wrapped


def event_data(stream: bytes) -> list[bytes]:
    """The data of each event of an event stream."""
    events: list[bytes] = []
    data: list[bytes] = []
    for line in stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if not line:
            if data:
                events.append(b"\n".join(data))
            data = []
        elif line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        events.append(b"\n".join(data))
    return events


def unframed_event_stream(send: Send) -> Send:
    """Wrap ``send`` so that an event-stream answer goes out as its bare JSON message(s)
    (one per line), still labelled ``text/event-stream``; other answers are unchanged."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            if not content_type.startswith(b"text/event-stream"):
                await send(message)
                return
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"\n".join(event_data(b"".join(chunks)))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return wrapped


class GzipAnswers:
    """ASGI middleware that gzips every answer of the MCP endpoint (JSON or event stream, buffered
    whole): when the request accepts gzip (``negotiate``), or always (``always``, a server that
    ignores ``Accept-Encoding``). Test-only: it stands for servers and proxies that compress."""

    def __init__(self, app: ASGIApp, mode: str) -> None:
        self.app = app
        self.mode = mode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != MCP_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        accepts = "gzip" in headers.get("accept-encoding", "").lower()
        if self.mode == "negotiate" and not accepts:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def compressing(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = gzip.compress(b"".join(chunks))
            kept = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-encoding")]
            kept += [(b"content-encoding", b"gzip"), (b"content-length", str(len(body)).encode())]
            await send({**start, "headers": kept})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, compressing)


def build_app(host: str, gzip_mode: str | None = None) -> ASGIApp:
    # The server sits behind Envoy: requests arrive with the Host header the
    # client used (a loopback address and some port). Keep DNS-rebinding
    # protection on, for loopback names only.
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "mcp-server.local:*", "127.0.0.1", "localhost"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "https://127.0.0.1:*", "https://localhost:*"],
    )
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, transport_security=security, host=host)
    if gzip_mode:
        app = GzipAnswers(app, gzip_mode)
    return RecordingMiddleware(app, ReceivedLog())


def query_region(
    region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})],
    query: str,
    limit: Annotated[int, Field(json_schema_extra={"x-mcp-header": "Limit"})] = 10,
) -> str:
    """Answer a query in one region (routers may route on the Region and Limit headers)."""
    return json.dumps({"region": region, "query": query, "limit": limit}, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("MCP_SERVER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("MCP_SERVER_PORT", "8000")))
    parser.add_argument("--routing-tool", action="store_true", help="also offer query_region (x-mcp-header)")
    parser.add_argument("--gzip", choices=["negotiate", "always"],
                        help="gzip every answer when the request accepts it, or always")
    args = parser.parse_args(argv)
    if args.routing_tool:
        server.tool()(query_region)
        server.tool(name="misannotated_region")(query_region)
        # The SDK refuses to register an invalid annotation; break it afterwards.
        misannotated = server._tool_manager.get_tool("misannotated_region")
        misannotated.parameters["properties"]["limit"]["type"] = "number"

    print(f"mcp-server.start {json.dumps({'host': args.host, 'port': args.port, 'path': MCP_PATH})}", flush=True)
    uvicorn.run(build_app(args.host, args.gzip), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
