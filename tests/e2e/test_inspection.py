"""End-to-end evidence for MCP deep inspection (issue 3), through the real Envoy.

Every refusal is checked three ways: the client gets the documented HTTP status
and JSON-RPC error (with the request id when pqguard can know it), pqguard logs a
``rejected`` record, and nothing reached the server side (the edge's upstream
counter, the server-side Envoy's upstream counter and the MCP server's own log
of received requests are unchanged).

Routes to the edge (``ROUTES``):

* ``h1_pq``: HTTP/1.1 through the client Envoy, TLS 1.3 with X25519MLKEM768;
* ``h2_pq``: HTTP/1.1 to the client Envoy, HTTP/2 from it to the edge, X25519MLKEM768;
* ``h1_direct``: HTTP/1.1 from Python straight to the edge, TLS 1.3 with X25519.

Each request carries a unique query string (``/mcp?case=...``), which pqguard
records in ``path``; that is how a test finds the record of its own request.

Sections: refusals decided on the request head; refusals decided on the body
(strict JSON, JSON-RPC envelope, method catalogue per version, batches); the
2026-07-28 mirrored headers; the body size cap (on a second topology whose
pqguard caps bodies at 4096 bytes); bodies that end with trailers (HTTP/1.1
chunked, and HTTP/2 through the test-only trailer relay); ``tools/list`` answers
(JSON, event stream, unframed JSON sent as an event stream) and their digests;
the official MCP Python SDK client and hand-written sessions at every protocol
version, which must pass unchanged.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import subprocess
import tempfile
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from harness import Topology, wait_for_record, wait_for_records, wait_for_tools_record
from harness.mcp_session import connect, ssl_context
from harness.raw_mcp import MODERN, RawMcpSession, response_messages
from harness.rawhttp import RawResponse, exchange, head_only_request, post_chunked
from harness.relay import TrailerRelay
from harness.tokens import pqguard_cli
from mcp import MCPError
from mcp_types import PromptReference, TextContent, TextResourceContents

ACCEPT = "application/json, text/event-stream"
JSON_HEADERS = [("content-type", "application/json"), ("accept", ACCEPT)]
EXPECTED_TOOLS = ["echo", "read_record", "run_python"]
ROUTES = ("h1_pq", "h2_pq", "h1_direct")
# The refusal tables run in full on FULL_ROUTE (and every case there is also run through
# `pqguard inspect`, which must give Envoy's answer byte for byte); the other routes run a sample
# that covers each way a refusal is decided (head, strict scanner, envelope, catalogue, batch, mirrors).
FULL_ROUTE = "h1_pq"
ROUTE_GROUP = {"h1_pq": "X25519MLKEM768", "h2_pq": "X25519MLKEM768", "h1_direct": "X25519"}
HANDSHAKE_VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
ALL_VERSIONS = (*HANDSHAKE_VERSIONS, MODERN)
# The SDK can also negotiate 2024-11-05 over Streamable HTTP; pqguard handles it like 2025-03-26.
SDK_VERSIONS = ("2024-11-05", *ALL_VERSIONS)
DIGEST_MEMBERS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")

# The client-facing message of each refusal class (filter/core/src/wire.rs); the detail stays in the log.
MESSAGES = {
    "body_too_large": "Request body too large",
    "unsupported_media_type": "Unsupported media type",
    "unsupported_content_encoding": "Unsupported content encoding",
    "parse_error": "Parse error",
    "invalid_request": "Invalid request",
    "invalid_params": "Invalid params",
    "unsupported_protocol_version": "Unsupported protocol version",
    "header_mismatch": "Header mismatch",
    "method_not_found": "Method not found",
    "method_not_allowed": "Method not allowed",
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def route_url(topology: Topology, route: str) -> str:
    return {"h1_pq": topology.pq_url, "h2_pq": topology.pq_h2_url, "h1_direct": topology.edge_url}[route]


def route_port(topology: Topology, route: str) -> int:
    return {"h1_pq": topology.ports.pq_client, "h2_pq": topology.ports.pq_h2_client,
            "h1_direct": topology.ports.edge}[route]


def message(rpc_id: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": rpc_id, "method": method}
    if params is not None:
        body["params"] = params
    return body


def encode(body: dict[str, Any] | list[Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def tools_call(rpc_id: Any, tool: str = "echo", arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    arguments = arguments if arguments is not None else {"text": "hi"}
    return message(rpc_id, "tools/call", {"name": tool, "arguments": arguments})


def nested_call(rpc_id: Any, depth: int) -> bytes:
    """A tools/call whose nesting depth is exactly ``depth`` (the top-level object counts as 1)."""
    arrays = depth - 3  # top-level object, params, arguments
    return (b'{"jsonrpc":"2.0","id":' + json.dumps(rpc_id).encode()
            + b',"method":"tools/call","params":{"name":"echo","arguments":{"text":'
            + b"[" * arrays + b"]" * arrays + b"}}}")


# -- observing the server side -------------------------------------------------------------------


class ServerSide:
    """What reached the MCP server: the edge's upstream requests, the server-side Envoy's upstream
    requests, and the MCP server's own list of received requests."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.before = self.snapshot()

    def snapshot(self) -> tuple[int, int, int]:
        t = self.topology
        return (t.edge.stat("cluster.mcp_upstream.upstream_rq_total"),
                t.server_envoy.stat("cluster.mcp_server.upstream_rq_total"),
                len(t.mcp_received()))

    def assert_nothing_reached(self) -> None:
        after = self.snapshot()
        assert after == self.before, (
            f"something reached the server side: (edge upstream, server-side Envoy upstream, MCP server) "
            f"went from {self.before} to {after}")

    def received_since(self) -> list[dict[str, Any]]:
        return self.topology.mcp_received()[self.before[2]:]


@dataclass
class Exchange:
    response: httpx.Response | RawResponse
    path: str
    since: int
    server: ServerSide

    @property
    def status(self) -> int:
        r = self.response
        return r.status_code if isinstance(r, httpx.Response) else r.status

    @property
    def body(self) -> bytes:
        r = self.response
        return r.content if isinstance(r, httpx.Response) else r.body

    def header(self, name: str) -> str | None:
        r = self.response
        return r.headers.get(name) if isinstance(r, httpx.Response) else r.header(name)

    def record(self, topology: Topology, predicate: Any = None) -> dict[str, Any]:
        """pqguard's record of this request (found by its unique path, or by ``predicate``)."""
        match = predicate or (lambda r: r.get("path") == self.path)
        return wait_for_record(topology.edge_log, match, since=self.since, what=f"the pqguard record of {self.path}")


def send(
    topology: Topology,
    route: str,
    body: bytes | dict[str, Any] | list[Any] | Iterator[bytes] | None,
    headers: list[tuple[str, str]] | None = None,
    *,
    method: str = "POST",
) -> Exchange:
    """One request on ``route`` (``headers`` may repeat a name); ``body`` may be an iterator (chunked)."""
    tag = unique("case")
    url = f"{route_url(topology, route)}?case={tag}"
    content = encode(body) if isinstance(body, (dict, list)) else body
    verify = ssl_context(topology.pki.ca_cert) if url.startswith("https://") else False
    server = ServerSide(topology)
    since = topology.edge_log_mark()
    with httpx.Client(verify=verify, trust_env=False, timeout=30.0) as client:
        response = client.request(method, url, content=content,
                                  headers=headers if headers is not None else JSON_HEADERS)
    return Exchange(response, f"/mcp?case={tag}", since, server)


def send_raw(topology: Topology, route: str, request_for_path: Any) -> Exchange:
    """Write a hand-made HTTP/1.1 request (``request_for_path(path) -> bytes``) on ``route``."""
    path = f"/mcp?case={unique('case')}"
    server = ServerSide(topology)
    since = topology.edge_log_mark()
    ca = topology.pki.ca_cert if route == "h1_direct" else None
    response = exchange(route_port(topology, route), request_for_path(path), ca_cert=ca)
    return Exchange(response, path, since, server)


def assert_refused(
    topology: Topology,
    exch: Exchange,
    *,
    status: int,
    code: int,
    reason: str,
    rpc_id: Any = None,
    record_predicate: Any = None,
) -> dict[str, Any]:
    """The documented local reply, a ``rejected`` record, and nothing on the server side."""
    assert exch.status == status, exch.body
    assert exch.header("content-type") == "application/json", exch.body
    assert exch.header("cache-control") == "no-store"
    reply = json.loads(exch.body)
    assert reply == {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": MESSAGES[reason]}}, reply
    record = exch.record(topology, record_predicate)
    assert record.get("outcome") == "rejected", record
    assert (record.get("status"), record.get("code"), record.get("reason")) == (status, code, reason), record
    exch.server.assert_nothing_reached()
    return record


def assert_forwarded(topology: Topology, exch: Exchange, rpc_id: Any = None) -> dict[str, Any]:
    record = exch.record(topology)
    assert record.get("outcome") == "forwarded", record
    assert "status" not in record and "code" not in record, record
    if rpc_id is not None:
        assert rpc_id in [entry.get("id") for entry in exch.server.received_since()], exch.server.received_since()
    else:
        assert exch.server.received_since(), "nothing reached the MCP server"
    return record


# -- refusals decided on the request head ----------------------------------------------------------


@dataclass(frozen=True)
class HeadCase:
    headers: list[tuple[str, str]]
    status: int
    code: int
    reason: str
    body: bytes = b'{"jsonrpc":"2.0","id":"h-1","method":"tools/list"}'
    # A repeated header is refused while pqguard copies the head, so its record carries no method or
    # path; it is found by its detail instead.
    record_detail: str | None = None


HEAD_CASES = {
    "content-type-text-plain": HeadCase(
        [("content-type", "text/plain"), ("accept", ACCEPT)], 415, -32600, "unsupported_media_type"),
    "content-type-missing": HeadCase([("accept", ACCEPT)], 415, -32600, "unsupported_media_type"),
    "content-type-json-utf16": HeadCase(
        [("content-type", "application/json; charset=utf-16"), ("accept", ACCEPT)], 415, -32600,
        "unsupported_media_type"),
    "content-encoding-gzip": HeadCase(
        [*JSON_HEADERS, ("content-encoding", "gzip")], 415, -32600, "unsupported_content_encoding",
        body=gzip.compress(b'{"jsonrpc":"2.0","id":"h-1","method":"tools/list"}')),
    "repeated-mcp-method": HeadCase(
        [*JSON_HEADERS, ("mcp-method", "tools/list"), ("mcp-method", "tools/list")], 400, -32600, "invalid_request",
        record_detail="header mcp-method appears more than once"),
    "repeated-mcp-protocol-version": HeadCase(
        [*JSON_HEADERS, ("mcp-protocol-version", "2025-11-25"), ("mcp-protocol-version", "2025-11-25")],
        400, -32600, "invalid_request", record_detail="header mcp-protocol-version appears more than once"),
    # Envoy itself folds a repeated Content-Type into one value ("application/json,application/json"),
    # so pqguard never sees two of them: it refuses the folded value as not JSON.
    "repeated-content-type": HeadCase(
        [("content-type", "application/json"), ("content-type", "application/json"), ("accept", ACCEPT)],
        415, -32600, "unsupported_media_type"),
}


def table(cases: dict[str, Any], sample: set[str]) -> list[Any]:
    """Every case on FULL_ROUTE, the ``sample`` on the other routes."""
    assert sample <= set(cases), sample - set(cases)
    return [pytest.param(case, route, id=f"{case}-{route}")
            for case in cases for route in ROUTES if route == FULL_ROUTE or case in sample]


def assert_inspect_agrees(route: str, exch: Exchange, body: bytes, headers: list[tuple[str, str]],
                          record: dict[str, Any]) -> None:
    """`pqguard inspect` run on the same request gives Envoy's reply and record reason."""
    if route != FULL_ROUTE:
        return
    args = ["inspect", "--json", "--tls-group", ROUTE_GROUP[route]]
    # Envoy folds a repeated Content-Type (one of its inline headers) into one value before
    # pqguard sees it; hand the CLI the head as the filter receives it.
    folded = [v for k, v in headers if k == "content-type"]
    given = [(k, v) for k, v in headers if k != "content-type"]
    if folded:
        given.append(("content-type", ",".join(folded)))
    if not any(k == "content-type" for k, _ in given):
        args += ["-H", "content-type:"]  # the client sent none: none, not the CLI's default
    for name, value in given:
        args += ["-H", f"{name}: {value}"]
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(body)
        f.flush()
        result = subprocess.run([str(pqguard_cli()), *args, f.name], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, (result.returncode, result.stderr)
    doc = json.loads(result.stdout)
    assert doc["outcome"] == "refused", doc
    assert doc["reply"]["status"] == exch.status, (doc["reply"], exch.status)
    assert doc["reply"]["body"] == json.loads(exch.body), (doc["reply"]["body"], exch.body)
    assert doc["record"]["reason"] == record.get("reason"), (doc["record"], record)
    assert doc["record"].get("detail") == record.get("detail"), (doc["record"], record)


HEAD_SAMPLE = {"content-type-text-plain", "repeated-mcp-method"}


@pytest.mark.parametrize(("case", "route"), table(HEAD_CASES, HEAD_SAMPLE))
def test_head_refusals(pqguard: Topology, case: str, route: str) -> None:
    c = HEAD_CASES[case]
    exch = send(pqguard, route, c.body, c.headers)
    predicate = (lambda r: r.get("detail") == c.record_detail) if c.record_detail else None
    record = assert_refused(pqguard, exch, status=c.status, code=c.code, reason=c.reason,
                            record_predicate=predicate)
    assert_inspect_agrees(route, exch, c.body, c.headers, record)
    if case == "repeated-content-type":
        assert record.get("detail") == 'content-type "application/json,application/json"', record


@pytest.mark.parametrize("route", ROUTES)
def test_an_unknown_protocol_version_is_refused_with_the_id_and_what_is_supported(pqguard: Topology,
                                                                                   route: str) -> None:
    """MCP 2026-07-28's answer to a version the server does not know: 400, -32022
    UnsupportedProtocolVersion with ``data: {supported, requested}`` and the request's id (pqguard
    reads the body for it; nothing is forwarded)."""
    body = b'{"jsonrpc":"2.0","id":"h-1","method":"tools/list"}'
    exch = send(pqguard, route, body, [*JSON_HEADERS, ("mcp-protocol-version", "1999-01-01")])
    assert exch.status == 400, exch.body
    reply = json.loads(exch.body)
    assert reply["id"] == "h-1" and reply["error"]["code"] == -32022, reply
    assert reply["error"]["data"]["requested"] == "1999-01-01", reply
    assert {"2025-03-26", "2025-11-25", "2026-07-28"} <= set(reply["error"]["data"]["supported"]), reply
    record = exch.record(pqguard, None)
    assert record.get("reason") == "unsupported_protocol_version", record
    exch.server.assert_nothing_reached()


@pytest.mark.parametrize("route", ROUTES)
def test_announced_body_over_default_cap_is_refused_before_the_body_is_sent(pqguard: Topology, route: str) -> None:
    """Content-Length above 1 MiB: only the head is written, and pqguard answers 413 anyway."""
    length = 1024 * 1024 + 1
    exch = send_raw(pqguard, route, lambda path: head_only_request("POST", path, headers=[
        ("content-type", "application/json"), ("accept", ACCEPT), ("content-length", str(length))]))
    record = assert_refused(pqguard, exch, status=413, code=-32600, reason="body_too_large")
    assert record.get("detail") == f"body of {length} bytes exceeds the cap of 1048576", record


@pytest.mark.parametrize("route", ROUTES)
def test_streamed_body_over_default_cap_never_reaches_the_server(pqguard: Topology, route: str) -> None:
    """2 MiB without Content-Length (chunked on every HTTP/1.1 hop, DATA frames over HTTP/2).

    With the defaults, pqguard's cap (1 MiB) equals Envoy's own per-connection buffer
    limit. Over HTTP/2 flow control delivers the body in small pieces and pqguard
    answers with its JSON-RPC 413; over HTTP/1.1 Envoy's buffer limit can fire first
    and Envoy answers a plain-text 413 itself (``http.edge.downstream_rq_too_large``).
    Either way the body is refused with 413 and never forwarded; the JSON-RPC form at
    a smaller cap is proven by the ``small_cap_pqguard`` tests.
    """
    envoy_413 = "http.edge.downstream_rq_too_large"
    envoy_413_before = pqguard.edge.stat(envoy_413)
    payload = encode(tools_call(unique("big"), arguments={"text": "x" * (2 * 1024 * 1024)}))
    exch = send(pqguard, route, iter([payload[i:i + 65536] for i in range(0, len(payload), 65536)]))
    assert exch.status == 413, exch.body[:200]
    if exch.header("content-type") == "application/json":
        assert json.loads(exch.body)["error"] == {"code": -32600, "message": MESSAGES["body_too_large"]}
        record = exch.record(pqguard)
        assert (record.get("outcome"), record.get("reason")) == ("rejected", "body_too_large"), record
    else:
        assert exch.body == b"Payload Too Large"
        assert pqguard.edge.stat(envoy_413) == envoy_413_before + 1
    exch.server.assert_nothing_reached()


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("http_method", ["GET", "DELETE"])
def test_get_and_delete_do_not_exist_in_2026_07_28(pqguard: Topology, http_method: str, route: str) -> None:
    exch = send(pqguard, route, None, [("accept", ACCEPT), ("mcp-protocol-version", MODERN)], method=http_method)
    record = assert_refused(pqguard, exch, status=405, code=-32600, reason="method_not_allowed")
    assert exch.header("allow") == "POST"
    assert record.get("http_method") == http_method, record


@pytest.mark.parametrize("route", ROUTES)
def test_get_stream_in_2025_11_25_is_forwarded(pqguard: Topology, route: str) -> None:
    """A GET (server stream) exists up to 2025-11-25: pqguard passes it on, whatever the server answers
    (without a session the demo server answers 400 itself)."""
    exch = send(pqguard, route, None, [("accept", "text/event-stream"), ("mcp-protocol-version", "2025-11-25")],
                method="GET")
    record = assert_forwarded(pqguard, exch)
    assert (record.get("http_method"), record.get("protocol_version")) == ("GET", "2025-11-25"), record
    assert [e.get("http_method") for e in exch.server.received_since()] == ["GET"]


# -- refusals decided on the body ------------------------------------------------------------------


@dataclass(frozen=True)
class BodyCase:
    body: Any  # rpc_id -> bytes
    status: int
    code: int
    reason: str
    echo_id: bool  # whether the reply carries the request id
    headers: tuple[tuple[str, str], ...] = ()
    id_of: Any = None  # rpc_id -> the id the reply carries, when it is not the request's own


def _batch(*messages: dict[str, Any]) -> bytes:
    return encode(list(messages))


BODY_CASES = {
    "invalid-utf8": BodyCase(
        lambda i: encode(tools_call(i, arguments={"text": "@@"})).replace(b"@@", b"\xff\xfe"),
        400, -32700, "parse_error", False),
    "invalid-json": BodyCase(lambda i: encode(message(i, "tools/list"))[:-1] + b",}",
                             400, -32700, "parse_error", False),
    "trailing-garbage": BodyCase(lambda i: encode(message(i, "tools/list")) + b"x", 400, -32700, "parse_error", False),
    "two-objects": BodyCase(lambda i: encode(message(i, "tools/list")) + encode(tools_call(i, "run_python")),
                            400, -32700, "parse_error", False),
    # Duplicate keys: the strict scanner refuses the whole body before the envelope is read, so no id.
    "duplicate-method": BodyCase(
        lambda i: encode(message(i, "tools/list"))[:-1] + b',"method":"tools/call"}', 400, -32600, "invalid_request",
        False),
    "duplicate-name-in-params": BodyCase(
        lambda i: (b'{"jsonrpc":"2.0","id":' + json.dumps(i).encode()
                   + b',"method":"tools/call","params":{"name":"echo","name":"run_python","arguments":{}}}'),
        400, -32600, "invalid_request", False),
    "duplicate-name-escaped": BodyCase(
        lambda i: (b'{"jsonrpc":"2.0","id":' + json.dumps(i).encode()
                   + b',"method":"tools/call","params":{"name":"echo","n\\u0061me":"run_python","arguments":{}}}'),
        400, -32600, "invalid_request", False),
    "nesting-65": BodyCase(lambda i: nested_call(i, 65), 400, -32600, "invalid_request", False),
    "jsonrpc-1.0": BodyCase(lambda i: encode({"jsonrpc": "1.0", "id": i, "method": "tools/list"}),
                            400, -32600, "invalid_request", True),
    "id-float": BodyCase(lambda i: b'{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}', 400, -32600,
                         "invalid_request", False),
    "id-null": BodyCase(lambda i: b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}', 400, -32600,
                        "invalid_request", False),
    "id-object": BodyCase(lambda i: b'{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}', 400, -32600,
                          "invalid_request", False),
    "missing-method": BodyCase(lambda i: encode({"jsonrpc": "2.0", "id": i, "params": {}}),
                               400, -32600, "invalid_request", True),
    "unknown-method": BodyCase(lambda i: encode(message(i, "admin/exec")), 404, -32601, "method_not_found", True),
    "later-version-method": BodyCase(lambda i: encode(message(i, "server/discover")), 404, -32601,
                                     "method_not_found", True, headers=(("mcp-protocol-version", "2025-11-25"),)),
    "tools-call-without-name": BodyCase(lambda i: encode(message(i, "tools/call", {"arguments": {}})),
                                        400, -32602, "invalid_params", True),
    "batch-in-2025-11-25": BodyCase(lambda i: _batch(message(i, "tools/list"), tools_call(i + "-2")),
                                    400, -32600, "invalid_request", False,
                                    headers=(("mcp-protocol-version", "2025-11-25"),)),
    "batch-in-2025-06-18": BodyCase(lambda i: _batch(message(i, "tools/list"), tools_call(i + "-2")),
                                    400, -32600, "invalid_request", False,
                                    headers=(("mcp-protocol-version", "2025-06-18"),)),
    # No header: 2025-03-26, where batches exist; the whole batch is refused for its second element,
    # and the reply carries that element's id.
    "batch-hiding-unknown-method": BodyCase(
        lambda i: _batch(message(i, "tools/list"), message(i + "-2", "admin/exec")),
        404, -32601, "method_not_found", True, id_of=lambda i: i + "-2"),
}


BODY_SAMPLE = {"invalid-json", "duplicate-name-escaped", "jsonrpc-1.0", "unknown-method", "batch-hiding-unknown-method"}


@pytest.mark.parametrize(("case", "route"), table(BODY_CASES, BODY_SAMPLE))
def test_body_refusals(pqguard: Topology, case: str, route: str) -> None:
    c = BODY_CASES[case]
    rpc_id = unique(case)
    body = c.body(rpc_id)
    headers = [*JSON_HEADERS, *c.headers]
    exch = send(pqguard, route, body, headers)
    expected_id = (c.id_of(rpc_id) if c.id_of else rpc_id) if c.echo_id else None
    record = assert_refused(pqguard, exch, status=c.status, code=c.code, reason=c.reason, rpc_id=expected_id)
    assert_inspect_agrees(route, exch, body, headers, record)
    assert record.get("http_method") == "POST", record


@pytest.mark.parametrize("route", ROUTES)
def test_nesting_of_exactly_64_is_forwarded(pqguard: Topology, route: str) -> None:
    """The other side of the ``nesting-65`` refusal: the default limit is 64 levels."""
    rpc_id = unique("depth64")
    exch = send(pqguard, route, nested_call(rpc_id, 64))
    record = assert_forwarded(pqguard, exch, rpc_id)
    assert (record.get("method"), record.get("tool")) == ("tools/call", "echo"), record


@pytest.mark.parametrize("route", ROUTES)
def test_names_are_compared_after_unescaping(pqguard: Topology, route: str) -> None:
    """``run_\\u0070ython`` is ``run_python`` to pqguard, and to the MCP server, which runs that tool."""
    with RawMcpSession(route_url(pqguard, route), "2025-11-25", ca_cert=pqguard.pki.ca_cert) as session:
        rpc_id = session.new_id()
        body = (b'{"jsonrpc":"2.0","id":' + json.dumps(rpc_id).encode()
                + b',"method":"tools\\/call","params":{"name":"run_\\u0070ython","arguments":{"code":"print(1)"}}}')
        server = ServerSide(pqguard)
        since = pqguard.edge_log_mark()
        response = session.post(body, session.headers("tools/call"))
        record = wait_for_record(pqguard.edge_log, lambda r: r.get("id") == rpc_id, since=since)
        assert (record.get("outcome"), record.get("method"), record.get("tool")) == (
            "forwarded", "tools/call", "run_python"), record
        assert [(e.get("id"), e.get("name")) for e in server.received_since()] == [(rpc_id, "run_python")]
        (answer,) = [m for m in response_messages(response) if m.get("id") == rpc_id]
        assert answer["result"]["content"][0]["text"].startswith("would run 8 characters of Python"), answer


@pytest.mark.parametrize("route", ROUTES)
def test_batch_of_allowed_methods_in_2025_03_26_is_forwarded_whole(pqguard: Topology, route: str) -> None:
    """No MCP-Protocol-Version header means 2025-03-26, which has batches: every element is inspected
    and listed in the record, and the batch goes to the server as sent (the demo server, like the
    SDK it is built on, then refuses batches itself: that answer is the server's)."""
    with RawMcpSession(route_url(pqguard, route), "2025-03-26", ca_cert=pqguard.pki.ca_cert) as session:
        first, second = session.new_id(), session.new_id()
        batch = [message(first, "tools/list"), tools_call(second, "read_record", {"record_id": "r-001"}),
                 {"jsonrpc": "2.0", "method": "notifications/progress",
                  "params": {"progressToken": "t", "progress": 1}}]
        headers = session.headers()
        assert not any(name == "mcp-protocol-version" for name, _ in headers)
        server = ServerSide(pqguard)
        since = pqguard.edge_log_mark()
        session.post(batch, headers)
        record = wait_for_record(pqguard.edge_log, lambda r: r.get("id") == first, since=since)
    assert record.get("outcome") == "forwarded", record
    assert record.get("batch") == [
        {"kind": "request", "id": first, "method": "tools/list"},
        {"kind": "request", "id": second, "method": "tools/call", "tool": "read_record"},
        {"kind": "notification", "method": "notifications/progress"},
    ], record
    assert [e.get("batch") for e in server.received_since()] == [
        ["tools/list", "tools/call", "notifications/progress"]]


# -- 2026-07-28: headers that mirror the body -------------------------------------------------------


def b64_header(value: str) -> str:
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


@dataclass(frozen=True)
class MirrorCase:
    method: str
    params: dict[str, Any]
    headers: Any  # default headers -> headers sent
    meta_version: str = MODERN


def _replace(headers: list[tuple[str, str]], name: str, value: str | None) -> list[tuple[str, str]]:
    kept = [(k, v) for k, v in headers if k != name]
    return kept if value is None else [*kept, (name, value)]


ECHO = {"name": "echo", "arguments": {"text": "mirrored"}}
MIRROR_REFUSALS = {
    "mcp-method-mismatch": MirrorCase("tools/call", ECHO, lambda h: _replace(h, "mcp-method", "tools/list")),
    "mcp-method-missing": MirrorCase("tools/call", ECHO, lambda h: _replace(h, "mcp-method", None)),
    "mcp-method-missing-tools-list": MirrorCase("tools/list", {}, lambda h: _replace(h, "mcp-method", None)),
    "mcp-name-mismatch": MirrorCase("tools/call", ECHO, lambda h: _replace(h, "mcp-name", "run_python")),
    "mcp-name-missing": MirrorCase("tools/call", ECHO, lambda h: _replace(h, "mcp-name", None)),
    "mcp-name-base64-other-tool": MirrorCase(
        "tools/call", ECHO, lambda h: _replace(h, "mcp-name", b64_header("run_python"))),
    "mcp-name-missing-resources-read": MirrorCase(
        "resources/read", {"uri": "records://index"}, lambda h: _replace(h, "mcp-name", None)),
    "meta-version-differs-from-header": MirrorCase("tools/call", ECHO, lambda h: h, meta_version="2025-11-25"),
}


def modern_request(
    session: RawMcpSession, case: MirrorCase, rpc_id: str,
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    body = session.envelope(case.method, case.params, rpc_id)
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = case.meta_version
    return body, case.headers(session.headers(case.method, case.params))


MIRROR_SAMPLE = {"mcp-method-mismatch", "mcp-name-base64-other-tool"}


@pytest.mark.parametrize(("case", "route"), table(MIRROR_REFUSALS, MIRROR_SAMPLE))
def test_2026_07_28_header_mismatch(pqguard: Topology, case: str, route: str) -> None:
    with RawMcpSession(route_url(pqguard, route), MODERN) as session:  # 2026-07-28: no handshake to run
        rpc_id = unique(case)
        body, headers = modern_request(session, MIRROR_REFUSALS[case], rpc_id)
    exch = send(pqguard, route, body, headers)
    record = assert_refused(pqguard, exch, status=400, code=-32020, reason="header_mismatch", rpc_id=rpc_id)
    assert record.get("protocol_version") == MODERN, record
    assert_inspect_agrees(route, exch, encode(body), headers, record)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("form", ["plain", "base64"])
def test_2026_07_28_matching_headers_are_forwarded(pqguard: Topology, form: str, route: str) -> None:
    """The same request with correct mirrors, ``Mcp-Name`` plain or as ``=?base64?...?=``: the server answers it."""
    rpc_id = unique(f"mirror-{form}")
    case = MirrorCase("tools/call", ECHO,
                      lambda h: h if form == "plain" else _replace(h, "mcp-name", b64_header("echo")))
    with RawMcpSession(route_url(pqguard, route), MODERN) as session:
        body, headers = modern_request(session, case, rpc_id)
    assert ("mcp-name", "echo" if form == "plain" else "=?base64?ZWNobw==?=") in headers
    exch = send(pqguard, route, body, headers)
    record = assert_forwarded(pqguard, exch, rpc_id)
    assert (record.get("method"), record.get("tool"), record.get("protocol_version")) == (
        "tools/call", "echo", MODERN), record
    assert exch.status == 200, exch.body
    (answer,) = response_messages(exch.response)
    assert answer["result"]["content"][0]["text"] == "mirrored", answer


# -- body size cap (a second topology whose pqguard caps bodies at 4096 bytes) ---------------------


def small_cap(topology: Topology) -> int:
    return topology.plugin_config["limits"]["max_body_bytes"]


def call_of_size(rpc_id: str, size: int) -> bytes:
    body = encode(tools_call(rpc_id, arguments={"text": ""}))
    return encode(tools_call(rpc_id, arguments={"text": "x" * (size - len(body))}))


def test_small_cap_configuration_is_in_force(small_cap_pqguard: Topology) -> None:
    starts = small_cap_pqguard.pqguard_start_records()
    assert starts and {s.get("max_body_bytes") for s in starts} == {4096}, starts


@pytest.mark.parametrize("route", ROUTES)
def test_small_cap_body_of_exactly_the_cap_is_forwarded(small_cap_pqguard: Topology, route: str) -> None:
    topo = small_cap_pqguard
    rpc_id = unique("at-cap")
    body = call_of_size(rpc_id, small_cap(topo))
    assert len(body) == small_cap(topo) == 4096
    assert_forwarded(topo, send(topo, route, body), rpc_id)


@pytest.mark.parametrize("route", ROUTES)
def test_small_cap_announced_body_is_refused_before_the_body_is_sent(small_cap_pqguard: Topology, route: str) -> None:
    """Content-Length of cap + 1: only the head is written; pqguard refuses at the headers."""
    topo = small_cap_pqguard
    length = small_cap(topo) + 1
    exch = send_raw(topo, route, lambda path: head_only_request("POST", path, headers=[
        ("content-type", "application/json"), ("accept", ACCEPT), ("content-length", str(length))]))
    record = assert_refused(topo, exch, status=413, code=-32600, reason="body_too_large")
    assert record.get("detail") == f"body of {length} bytes exceeds the cap of 4096", record


@pytest.mark.parametrize("route", ROUTES)
def test_small_cap_streamed_body_is_refused_while_buffering(small_cap_pqguard: Topology, route: str) -> None:
    """No Content-Length: 16 KiB in 512-byte pieces; pqguard refuses once what it holds passes the cap."""
    topo = small_cap_pqguard
    payload = call_of_size(unique("streamed"), 16 * 1024)
    exch = send(topo, route, iter([payload[i:i + 512] for i in range(0, len(payload), 512)]))
    assert "content-length" not in exch.response.request.headers
    record = assert_refused(topo, exch, status=413, code=-32600, reason="body_too_large")
    detail = record.get("detail", "")
    held = int(detail.removeprefix("body of ").split(" ")[0])
    assert small_cap(topo) < held <= len(payload), record


# -- bodies that end with trailers -----------------------------------------------------------------


def trailer_exchange(topology: Topology, port: int, body: bytes, headers: list[tuple[str, str]],
                     *, tls: bool) -> Exchange:
    path = f"/mcp?case={unique('trailers')}"
    server = ServerSide(topology)
    since = topology.edge_log_mark()
    pieces = [body[i:i + 16] for i in range(0, len(body), 16)]
    response = post_chunked(port, path, pieces, headers=headers,
                            trailers=[("x-body-sha256", hashlib.sha256(body).hexdigest())],
                            ca_cert=topology.pki.ca_cert if tls else None)
    return Exchange(response, path, since, server)


@pytest.mark.parametrize("hop", ["http1_chunked_direct", "http2_via_relay"])
def test_bodies_ending_with_trailers_are_inspected(pqguard: Topology, trailer_relay: TrailerRelay, hop: str) -> None:
    """A chunked body with a trailer section, straight to the edge over HTTP/1.1, and the same
    turned into HTTP/2 DATA frames plus a trailing HEADERS frame by the relay.

    Over HTTP/2 the trailers end the stream, so pqguard decides when the trailers arrive; the
    edge's ``http2.trailers`` counter proves they did. The edge's HTTP/1.1 codec drops request
    trailers (Envoy's default), so there the body ends at the last chunk.
    """
    tls = hop == "http1_chunked_direct"
    port = pqguard.ports.edge if tls else trailer_relay.port
    trailers_before = pqguard.edge.stat("http2.trailers")
    with RawMcpSession(pqguard.pq_url, "2025-11-25") as session:
        headers = session.headers("tools/call")
        good_id, bad_id, dup_id = session.new_id(), session.new_id(), session.new_id()

        good = trailer_exchange(pqguard, port, encode(tools_call(good_id, arguments={"text": "with trailers"})),
                                headers, tls=tls)
        record = assert_forwarded(pqguard, good, good_id)
        assert (record.get("method"), record.get("tool")) == ("tools/call", "echo"), record
        assert good.status == 200, good.body
        assert good.header("content-type") == "text/event-stream"
        (answer,) = [json.loads(line[5:]) for line in good.body.decode().splitlines() if line.startswith("data:")]
        assert answer["result"]["content"][0]["text"] == "with trailers", answer

        bad = trailer_exchange(pqguard, port, encode(tools_call(bad_id)) + b"x", headers, tls=tls)
        assert_refused(pqguard, bad, status=400, code=-32700, reason="parse_error")

        dup = (b'{"jsonrpc":"2.0","id":' + json.dumps(dup_id).encode()
               + b',"method":"tools/call","params":{"name":"echo","n\\u0061me":"run_python","arguments":{}}}')
        assert_refused(pqguard, trailer_exchange(pqguard, port, dup, headers, tls=tls),
                       status=400, code=-32600, reason="invalid_request")

    trailers_seen = pqguard.edge.stat("http2.trailers") - trailers_before
    assert trailers_seen == (0 if tls else 3)


# -- tools/list answers ----------------------------------------------------------------------------


def tool_digest(tool: dict[str, Any]) -> str:
    """SHA3-256 over the canonical JSON of the members that define a tool (filter/core/src/tools.rs)."""
    members = {k: tool[k] for k in DIGEST_MEMBERS if k in tool}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha3_256(canonical.encode()).hexdigest()


def expected_tools(tools: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"name": t["name"], "digest": tool_digest(t)} for t in tools]


def direct_tools_list(topology: Topology, version: str, rpc_id: str, framing: str | None = None) -> httpx.Response:
    """The MCP server's own answer to tools/list, asked directly (no Envoy, no pqguard)."""
    with RawMcpSession(topology.mcp_direct_url, version) as session:
        headers = session.headers("tools/list") + ([("x-demo-sse-framing", framing)] if framing else [])
        response, answer = session.request("tools/list", rpc_id=rpc_id, headers=headers)
    assert response.status_code == 200 and answer is not None, response.text
    return response


# format -> (protocol version, server-side framing, expected content type)
ANSWER_FORMATS = {
    "event-stream": ("2025-11-25", None, "text/event-stream"),
    "json": (MODERN, None, "application/json"),
    "unframed-json-as-event-stream": ("2025-11-25", "unframed", "text/event-stream"),
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("answer_format", list(ANSWER_FORMATS))
def test_tools_list_answer_is_read_and_passed_unchanged(pqguard: Topology, answer_format: str, route: str) -> None:
    """pqguard logs every tool of a tools/list answer with its digest, and the client receives exactly
    the bytes the server sends (same request id, asked once directly and once through the edge)."""
    version, framing, content_type = ANSWER_FORMATS[answer_format]
    rpc_id = unique("tools")
    direct = direct_tools_list(pqguard, version, rpc_id, framing)
    assert direct.headers["content-type"].startswith(content_type)
    if framing == "unframed":
        assert direct.content.startswith(b'{"jsonrpc"'), direct.content[:40]
    (direct_answer,) = response_messages(direct)
    tools = direct_answer["result"]["tools"]
    assert [t["name"] for t in tools] == EXPECTED_TOOLS

    since = pqguard.edge_log_mark()
    with RawMcpSession(route_url(pqguard, route), version, ca_cert=pqguard.pki.ca_cert) as session:
        headers = session.headers("tools/list") + ([("x-demo-sse-framing", framing)] if framing else [])
        response, answer = session.request("tools/list", rpc_id=rpc_id, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == direct.headers["content-type"]
    assert response.content == direct.content
    assert answer == direct_answer
    logged = wait_for_tools_record(pqguard.edge_log, lambda r: r.get("id") == rpc_id, since=since)
    assert logged["tools"] == expected_tools(tools), (logged, tools)


@pytest.mark.parametrize("relabel", [("203", None), ("299", None)])
def test_a_tools_list_answer_with_an_odd_success_status_is_still_read(pqguard: Topology,
                                                                      relabel: tuple[str, None]) -> None:
    """A malicious server answers tools/list with 203: clients take tools from any 2xx, so pqguard
    reads it (the tools record proves it) and the client gets the same tools."""
    status, _ = relabel
    rpc_id = unique("odd-status")
    since = pqguard.edge_log_mark()
    with RawMcpSession(route_url(pqguard, ROUTES[0]), MODERN, ca_cert=pqguard.pki.ca_cert) as session:
        headers = session.headers("tools/list") + [("x-demo-answer-status", status)]
        response, answer = session.request("tools/list", rpc_id=rpc_id, headers=headers)
    assert response.status_code == int(status), response.text
    assert answer is not None and "result" in answer, (answer, response.headers)
    assert [t["name"] for t in answer["result"]["tools"]] == EXPECTED_TOOLS
    logged = wait_for_tools_record(pqguard.edge_log, lambda r: r.get("id") == rpc_id, since=since)
    assert [t["name"] for t in logged["tools"]] == EXPECTED_TOOLS


@pytest.mark.parametrize("content_type", ["application/json-x", "text/plain", ""])
def test_a_tools_list_answer_pqguard_cannot_read_never_reaches_the_client(pqguard: Topology,
                                                                          content_type: str) -> None:
    """The server labels its tools/list answer with a content type pqguard cannot read (or none):
    the client gets a JSON-RPC error with its id instead, never the unread list."""
    rpc_id = unique("odd-type")
    with RawMcpSession(route_url(pqguard, ROUTES[0]), MODERN, ca_cert=pqguard.pki.ca_cert) as session:
        headers = session.headers("tools/list") + [("x-demo-answer-content-type", content_type)]
        response, _ = session.request("tools/list", rpc_id=rpc_id, headers=headers)
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert body["id"] == rpc_id and body["error"]["code"] == -32603, body
    assert "tools" not in response.text


# -- the official SDK client, every protocol version it can speak ----------------------------------


@dataclass
class SdkRun:
    version: str
    negotiated: str | None = None
    tools: list[str] = field(default_factory=list)
    echo_text: str | None = None
    run_python_text: str | None = None
    prompts: list[str] = field(default_factory=list)
    prompt_text: str | None = None
    resources: list[str] = field(default_factory=list)
    templates: list[str] | None = None
    resource_text: str | None = None
    server_refused: dict[str, str] = field(default_factory=dict)  # method -> error the server answered
    records: list[dict[str, Any]] = field(default_factory=list)
    tools_records: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)


def _text(content: Any) -> str | None:
    return content.text if isinstance(content, TextContent) else None


async def sdk_every_method(url: str, version: str, run: SdkRun) -> None:
    """Every client-to-server method the SDK client offers for ``version``."""
    mode, offer = ("auto", None) if version == MODERN else ("legacy", version)
    with anyio.fail_after(60):
        async with connect(url, mode=mode, handshake_version=offer) as client:
            run.negotiated = client.session.protocol_version
            if version != MODERN:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # ping is deprecated as of 2026-07-28, part of this version
                    await client.send_ping()
            tools = await client.list_tools()
            run.tools = [t.name for t in tools.tools]
            run.echo_text = _text((await client.call_tool("echo", {"text": f"sdk {version}"})).content[0])
            run.run_python_text = _text((await client.call_tool("run_python", {"code": "print(1)"})).content[0])
            run.prompts = [p.name for p in (await client.list_prompts()).prompts]
            prompt = await client.get_prompt("summarize", {"topic": "hybrid key exchange"})
            run.prompt_text = _text(prompt.messages[0].content)
            run.resources = [str(r.uri) for r in (await client.list_resources()).resources]
            run.templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
            contents = (await client.read_resource("records://index")).contents[0]
            run.resource_text = contents.text if isinstance(contents, TextResourceContents) else None
            # The demo server implements neither completions nor logging: it answers these itself.
            unimplemented: list[tuple[str, Any]] = [
                ("completion/complete",
                 lambda: client.complete(PromptReference(type="ref/prompt", name="summarize"),
                                         {"name": "topic", "value": "post"}))]
            if version != MODERN:
                unimplemented.append(("logging/setLevel", lambda: client.set_logging_level("info")))
            for method, call in unimplemented:
                try:
                    with warnings.catch_warnings():
                        # logging/setLevel is deprecated as of 2026-07-28; it is part of the older versions.
                        warnings.simplefilter("ignore")
                        await call()
                except MCPError as err:
                    run.server_refused[method] = str(err)


def run_sdk(topology: Topology, url: str, version: str) -> SdkRun:
    run = SdkRun(version)
    received_before = len(topology.mcp_received())
    since = topology.edge_log_mark()
    anyio.run(sdk_every_method, url, version, run)
    run.received = topology.mcp_received()[received_before:]
    run.records = wait_for_records(topology.edge_log, lambda rs: len(rs) >= len(run.received), since=since,
                                   what=f"{len(run.received)} records (one per request the server received)")
    run.tools_records = topology.pqguard_tools_records(since)
    return run


EXPECTED_METHODS = {
    "handshake": {"initialize", "notifications/initialized", "ping", "tools/list", "tools/call", "prompts/list",
                  "prompts/get", "resources/list", "resources/templates/list", "resources/read",
                  "completion/complete", "logging/setLevel"},
    MODERN: {"server/discover", "tools/list", "tools/call", "prompts/list", "prompts/get", "resources/list",
             "resources/templates/list", "resources/read", "completion/complete"},
}


@pytest.mark.parametrize("route", ["h1_pq", "h2_pq"])
@pytest.mark.parametrize("version", SDK_VERSIONS)
def test_sdk_client_passes_unchanged(pqguard: Topology, version: str, route: str) -> None:
    """The official SDK client (mcp 2.3.0), every method it sends, at each protocol version it
    negotiates over Streamable HTTP: nothing is refused, and every answer is the server's."""
    run = run_sdk(pqguard, route_url(pqguard, route), version)
    assert run.negotiated == version

    # Everything pqguard saw, it forwarded, and the server received exactly those requests.
    assert run.records, "no records"
    for record in run.records:
        assert record.get("outcome") == "forwarded", record
    assert Counter((r.get("http_method"), r.get("method")) for r in run.records) == Counter(
        (e.get("http_method"), e.get("method")) for e in run.received), (run.records, run.received)
    posted = {r.get("method") for r in run.records if r.get("http_method") == "POST"}
    assert posted == EXPECTED_METHODS[MODERN if version == MODERN else "handshake"], posted
    # Every request after initialize names the version in MCP-Protocol-Version.
    for record in run.records:
        if record.get("method") != "initialize":
            assert record.get("protocol_version") == version, record
    if version != MODERN:
        assert [r.get("http_method") for r in run.records].count("DELETE") == 1, run.records
    calls = [(r.get("tool"), r.get("kind")) for r in run.records if r.get("method") == "tools/call"]
    assert calls == [("echo", "request"), ("run_python", "request")], calls

    # The answers are the server's.
    assert run.tools == EXPECTED_TOOLS
    assert run.echo_text == f"sdk {version}"
    assert run.run_python_text is not None and run.run_python_text.startswith("would run 8 characters of Python")
    assert run.prompts == ["summarize"]
    assert run.prompt_text == "Write a three-sentence summary about hybrid key exchange."
    assert run.resources == ["records://index"]
    assert run.templates == []
    assert run.resource_text is not None and json.loads(run.resource_text) == ["r-001", "r-002", "r-003"]
    unimplemented = {"completion/complete"} | ({"logging/setLevel"} if version != MODERN else set())
    assert set(run.server_refused) == unimplemented, run.server_refused

    # The tools/list answer was read, and its digests are those of the server's own tool definitions.
    direct = direct_tools_list(pqguard, version, unique("direct"))
    (direct_answer,) = response_messages(direct)
    assert [r["tools"] for r in run.tools_records] == [expected_tools(direct_answer["result"]["tools"])], (
        run.tools_records)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_scripted_session_per_version(pqguard: Topology, version: str, route: str) -> None:
    """A hand-written session that follows one version's rules to the letter (2025-03-26 sends no
    MCP-Protocol-Version header at all; 2026-07-28 has no handshake): every request is forwarded."""
    since = pqguard.edge_log_mark()
    server = ServerSide(pqguard)
    with RawMcpSession(route_url(pqguard, route), version, ca_cert=pqguard.pki.ca_cert) as session:
        if version != MODERN:
            assert session.initialize_result and session.initialize_result["protocolVersion"] == version
        _, tools = session.request("tools/list")
        _, called = session.request("tools/call", {"name": "read_record", "arguments": {"record_id": "r-002"}})
        _, prompt = session.request("prompts/get", {"name": "summarize", "arguments": {"topic": "ML-KEM"}})
        _, read = session.request("resources/read", {"uri": "records://index"})
    assert tools and [t["name"] for t in tools["result"]["tools"]] == EXPECTED_TOOLS, tools
    assert called and json.loads(called["result"]["content"][0]["text"])["owner"] == "bob", called
    assert prompt and "ML-KEM" in prompt["result"]["messages"][0]["content"]["text"], prompt
    assert read and json.loads(read["result"]["contents"][0]["text"]) == ["r-001", "r-002", "r-003"], read

    received = server.received_since()
    records = wait_for_records(pqguard.edge_log, lambda rs: len(rs) >= len(received), since=since)
    expected = (["initialize", "notifications/initialized"] if version != MODERN else []) + [
        "tools/list", "tools/call", "prompts/get", "resources/read"]
    assert [r.get("method") for r in records] == expected, records
    assert [e.get("method") for e in received] == expected, received
    for record in records:
        assert record.get("outcome") == "forwarded", record
        header = None if record.get("method") == "initialize" or version == "2025-03-26" else version
        assert record.get("protocol_version") == header, record
    assert [(r.get("tool"), r.get("prompt"), r.get("resource")) for r in records[-3:]] == [
        ("read_record", None, None), (None, "summarize", None), (None, None, "records://index")]


def test_sdk_methods_removed_in_2026_07_28_are_refused(pqguard: Topology) -> None:
    """ping and logging/setLevel do not exist in 2026-07-28; the SDK still sends them when asked
    (with a deprecation warning), and pqguard refuses them as unknown methods."""
    server = ServerSide(pqguard)
    since = pqguard.edge_log_mark()
    errors: dict[str, str] = {}

    async def session() -> None:
        async with connect(pqguard.pq_url, mode="auto") as client:
            assert client.session.protocol_version == MODERN
            removed = (("ping", client.send_ping), ("logging/setLevel", lambda: client.set_logging_level("info")))
            for method, call in removed:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with pytest.raises(MCPError) as err:
                        await call()
                errors[method] = str(err.value)

    anyio.run(session)
    assert errors == {"ping": "Method not found", "logging/setLevel": "Method not found"}
    records = wait_for_records(pqguard.edge_log, lambda rs: sum(r.get("outcome") == "rejected" for r in rs) >= 2,
                               since=since)
    refused = [r for r in records if r.get("outcome") == "rejected"]
    assert [(r.get("status"), r.get("code"), r.get("reason")) for r in refused] == [
        (404, -32601, "method_not_found")] * 2, refused
    assert [r.get("detail") for r in refused] == [
        f'method "{m}" is not defined in 2026-07-28 and not allowed by configuration'
        for m in ("ping", "logging/setLevel")]
    assert [e.get("method") for e in server.received_since()] == ["server/discover"]
