"""End-to-end foundation tests: post-quantum TLS on every hop, what pqguard sees, and real MCP sessions.

Each request carries a JSON-RPC id that is unique to the run, so the
``pqguard.request`` record it produced can be found in the edge log.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from harness import Topology, rpc_id_is, wait_for_record, wait_for_records, wait_until
from harness.calls import McpCaller, record_of
from harness.mcp_session import SessionSummary, run_scripted_session, ssl_context

from conftest import start_extra_topology

PQ = "X25519MLKEM768"
CLASSICAL = "X25519"
ACCEPT = "application/json, text/event-stream"
EXPECTED_TOOLS = {"echo", "read_record", "run_python"}


def unique_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def tools_call(rpc_id: Any, tool: str = "echo", arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": rpc_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments if arguments is not None else {"text": "hi"}},
    }


def post(
    topology: Topology,
    url: str,
    body: bytes | dict[str, Any] | Iterator[bytes],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST one MCP message; ``https://`` URLs are verified against the test CA."""
    all_headers = {"content-type": "application/json", "accept": ACCEPT, **(headers or {})}
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    verify = ssl_context(topology.pki.ca_cert) if url.startswith("https://") else False
    with httpx.Client(verify=verify, trust_env=False, timeout=30.0) as client:
        return client.post(url, content=content, headers=all_headers)


def record_for(topology: Topology, rpc_id: Any, since: int = 0) -> dict[str, Any]:
    return wait_for_record(topology.edge_log, lambda r: rpc_id_is(r, rpc_id), since=since,
                           what=f"the pqguard.request record of JSON-RPC id {rpc_id!r}")


def received_ids(topology: Topology) -> list[Any]:
    return [entry.get("id") for entry in topology.mcp_received()]


# -- the topology itself (runs with and without the filter) ---------------------------------------


def test_every_hop_negotiates_the_expected_group(topology: Topology) -> None:
    """PQ client -> edge and edge -> server-side Envoy are X25519MLKEM768; the classical client gets X25519."""
    for url, prefix in ((topology.pq_url, "hop-pq"), (topology.classical_url, "hop-classical")):
        rpc_id = unique_id(prefix)
        response = post(topology, url, tools_call(rpc_id))
        # No MCP session: the server answers 400 "missing session id", but only after receiving it.
        assert response.status_code in (200, 202, 400), response.text
        assert rpc_id in received_ids(topology)

    edge, server = topology.edge, topology.server_envoy
    listener = topology.edge_listener_prefix
    assert edge.stat(f"{listener}ssl.curves.{PQ}") > 0
    assert edge.stat(f"{listener}ssl.curves.{CLASSICAL}") > 0
    assert edge.stat(f"cluster.mcp_upstream.ssl.curves.{PQ}") > 0
    # The edge -> server cluster may only ever use the hybrid group.
    upstream_curves = edge.stats(r"^cluster\.mcp_upstream\.ssl\.curves\.")
    assert set(upstream_curves) == {f"cluster.mcp_upstream.ssl.curves.{PQ}"}, upstream_curves
    assert server.stat(f"{topology.server_envoy_listener_prefix}ssl.curves.{PQ}") > 0
    # The edge accepts TLS 1.2, but every client here negotiates TLS 1.3.
    assert edge.stat(f"{listener}ssl.versions.TLSv1.3") > 0
    assert edge.stat(f"{listener}ssl.versions.TLSv1.2") == 0


def test_server_side_envoy_refuses_classical_key_exchange(topology: Topology) -> None:
    """The server-side listener is PQ-only: an X25519-only TLS 1.3 client cannot even finish the handshake."""
    server = topology.server_envoy
    errors_before = server.stat(f"{topology.server_envoy_listener_prefix}ssl.connection_error")
    handshake = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{topology.ports.server_envoy}", "-tls1_3",
         "-groups", "X25519", "-servername", topology.pki.server_name, "-CAfile", str(topology.pki.ca_cert)],
        input=b"", capture_output=True, timeout=30,
    )
    assert handshake.returncode != 0, handshake.stdout.decode(errors="replace")
    # Envoy counts the failure once it has processed the connection.
    wait_until(lambda: server.stat(f"{topology.server_envoy_listener_prefix}ssl.connection_error") > errors_before,
               timeout=10, what="ssl.connection_error on the server-side listener")


@dataclass
class SessionRun:
    """One scripted SDK session, what the edge counted while it ran, and (with the filter) its records."""

    summary: SessionSummary
    counters_before: dict[str, int]
    counters_after: dict[str, int]
    received: list[dict[str, Any]]  # what the MCP server received during the session
    records: list[dict[str, Any]]  # pqguard.request records of the session (empty without the filter)

    def delta(self, name: str) -> int:
        return self.counters_after.get(name, 0) - self.counters_before.get(name, 0)

    def methods(self) -> set[str]:
        return {r["method"] for r in self.records if isinstance(r.get("method"), str)}


def run_session(topology: Topology, url: str, counters: list[str], **kwargs: Any) -> SessionRun:
    before = {name: topology.edge.stat(name) for name in counters}
    received_before = len(topology.mcp_received())
    since = topology.edge_log_mark()
    summary = run_scripted_session(url, **kwargs)
    after = {name: topology.edge.stat(name) for name in counters}
    received = topology.mcp_received()[received_before:]
    records: list[dict[str, Any]] = []
    if topology.with_filter:
        # Every request that reached the server went through pqguard, which logs before forwarding;
        # wait for the log lines (written asynchronously), then stop at that point so the records
        # of later sessions are not mixed in.
        records = wait_for_records(topology.edge_log, lambda rs: len(rs) >= len(received), since=since,
                                   what=f"{len(received)} records (one per request the server received)")
    return SessionRun(summary, before, after, received, records)


H2_REQUESTS = "http.edge.downstream_rq_http2_total"


@pytest.fixture(scope="module")
def pq_session(topology: Topology) -> SessionRun:
    """Full session (initialize, tools, prompt, resource) through the PQ client Envoy."""
    return run_session(topology, topology.pq_url, [], echo_text="round trip over X25519MLKEM768")


@pytest.fixture(scope="module")
def h2_session(topology: Topology) -> SessionRun:
    """Session with HTTP/2 between the client Envoy and the edge."""
    return run_session(topology, topology.pq_h2_url, [H2_REQUESTS], echo_text="over h2", full=False)


@pytest.fixture(scope="module")
def direct_session(topology: Topology) -> SessionRun:
    """Session from Python straight to the edge (Python's TLS: X25519)."""
    counter = f"{topology.edge_listener_prefix}ssl.curves.{CLASSICAL}"
    return run_session(topology, topology.edge_url, [counter], ca_cert=topology.pki.ca_cert,
                       echo_text="direct", full=False)


@pytest.fixture(scope="module")
def modern_session(topology: Topology) -> SessionRun:
    """SDK default mode: server/discover, then the 2026-07-28 revision (no initialize, no session id)."""
    return run_session(topology, topology.pq_url, [], mode="auto", echo_text="modern", full=False)


def test_sdk_session_through_pq_client(pq_session: SessionRun) -> None:
    """A real MCP session (official SDK) through client Envoy -> edge -> server, all PQ TLS."""
    summary = pq_session.summary
    assert EXPECTED_TOOLS <= set(summary.tools)
    assert summary.echo_text == "round trip over X25519MLKEM768"
    assert summary.prompts == ["summarize"]
    assert summary.prompt_text is not None and "post-quantum TLS" in summary.prompt_text
    assert summary.resources == ["records://index"]
    assert summary.resource_text is not None and json.loads(summary.resource_text) == ["r-001", "r-002", "r-003"]


def test_sdk_session_over_http2(h2_session: SessionRun) -> None:
    assert h2_session.summary.echo_text == "over h2"
    assert EXPECTED_TOOLS <= set(h2_session.summary.tools)
    assert h2_session.delta(H2_REQUESTS) > 0


def test_sdk_session_direct_to_edge_is_classical(topology: Topology, direct_session: SessionRun) -> None:
    """Python's TLS (OpenSSL 3.0) cannot offer ML-KEM: straight to the edge, the session uses X25519."""
    assert direct_session.summary.echo_text == "direct"
    assert direct_session.delta(f"{topology.edge_listener_prefix}ssl.curves.{CLASSICAL}") > 0


def test_sdk_session_modern_protocol(modern_session: SessionRun) -> None:
    assert modern_session.summary.echo_text == "modern"
    assert modern_session.summary.protocol_version == "2026-07-28"


def test_filter_sees_the_pq_sdk_session(pqguard: Topology, pq_session: SessionRun) -> None:
    records = pq_session.records
    # One record per request, and the same requests as the server received (order may differ:
    # the GET stream runs concurrently with the POSTs).
    assert Counter((r.get("http_method"), r.get("method")) for r in records) == Counter(
        (e.get("http_method"), e.get("method")) for e in pq_session.received), (records, pq_session.received)
    assert {"initialize", "notifications/initialized", "tools/list", "tools/call", "prompts/list", "prompts/get",
            "resources/list", "resources/read"} <= pq_session.methods(), records
    assert [r.get("http_method") for r in records].count("DELETE") == 1, records
    for record in records:
        assert record.get("tls_group") == PQ, record
        assert record.get("tls_version") == "TLSv1.3", record
        assert record.get("outcome") == "forwarded", record
    calls = [r for r in records if r.get("method") == "tools/call"]
    assert [r.get("tool") for r in calls] == ["echo"], calls
    (prompt,) = [r for r in records if r.get("method") == "prompts/get"]
    assert prompt.get("prompt") == "summarize", prompt
    (read,) = [r for r in records if r.get("method") == "resources/read"]
    assert read.get("resource") == "records://index", read


def test_filter_sees_the_http2_sdk_session(pqguard: Topology, h2_session: SessionRun) -> None:
    assert {"initialize", "tools/list", "tools/call"} <= h2_session.methods(), h2_session.records
    for record in h2_session.records:
        assert record.get("tls_group") == PQ, record
        assert record.get("outcome") == "forwarded", record
    call = next(r for r in h2_session.records if r.get("method") == "tools/call")
    assert call.get("tool") == "echo", call


def test_filter_sees_the_direct_sdk_session_as_classical(pqguard: Topology, direct_session: SessionRun) -> None:
    assert {"initialize", "tools/list", "tools/call"} <= direct_session.methods(), direct_session.records
    for record in direct_session.records:
        assert record.get("tls_group") == CLASSICAL, record
        assert record.get("tls_version") == "TLSv1.3", record
        assert record.get("outcome") == "forwarded", record


def test_filter_sees_the_modern_sdk_session(pqguard: Topology, modern_session: SessionRun) -> None:
    assert {"server/discover", "tools/list", "tools/call"} <= modern_session.methods(), modern_session.records
    assert "initialize" not in modern_session.methods()
    for record in modern_session.records:
        assert record.get("tls_group") == PQ, record
        assert record.get("outcome") == "forwarded", record
    call = next(r for r in modern_session.records if r.get("method") == "tools/call")
    assert call.get("tool") == "echo", call


# -- what pqguard sees -----------------------------------------------------------------------------


def test_filter_reports_pq_group(pqguard: Topology) -> None:
    rpc_id = unique_id("pq")
    post(pqguard, pqguard.pq_url, tools_call(rpc_id))
    record = record_for(pqguard, rpc_id)
    assert record.get("tls_group") == PQ, record
    assert record.get("tls_version") == "TLSv1.3", record
    assert record.get("tls_cipher"), record
    assert record.get("http_method") == "POST", record
    assert record.get("path") == "/mcp", record
    assert record.get("method") == "tools/call", record
    assert record.get("tool") == "echo", record
    assert record.get("outcome") == "forwarded", record
    assert rpc_id in received_ids(pqguard)


def test_filter_reports_classical_group(pqguard: Topology) -> None:
    rpc_id = unique_id("classical")
    post(pqguard, pqguard.classical_url, tools_call(rpc_id, "read_record", {"record_id": "r-001"}))
    record = record_for(pqguard, rpc_id)
    assert record.get("tls_group") == CLASSICAL, record
    assert record.get("method") == "tools/call", record
    assert record.get("tool") == "read_record", record
    assert record.get("outcome") == "forwarded", record


def test_headers_cannot_spoof_the_group(pqguard: Topology) -> None:
    """The group comes from the TLS handshake via filter state, never from request headers."""
    rpc_id = unique_id("spoof")
    spoofing = {
        "x-pqguard-tls-group": PQ,
        "pqguard.tls_group": PQ,
        "pqguard.tls_cipher": "TLS_AES_256_GCM_SHA384",
        "x-tls-group": PQ,
        "x-forwarded-tls-group": PQ,
    }
    post(pqguard, pqguard.classical_url, tools_call(rpc_id), headers=spoofing)
    record = record_for(pqguard, rpc_id)
    assert record.get("tls_group") == CLASSICAL, record
    assert record.get("outcome") == "forwarded", record


def test_filter_reads_chunked_http1_body(pqguard: Topology) -> None:
    """HTTP/1.1 with Transfer-Encoding: chunked (no Content-Length), straight to the edge."""
    rpc_id = unique_id("chunked")
    payload = json.dumps(tools_call(rpc_id, "run_python", {"code": "print('never run')"})).encode()
    pieces = [payload[:7], payload[7:40], payload[40:]]
    response = post(pqguard, pqguard.edge_url, iter(pieces))
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    record = record_for(pqguard, rpc_id)
    assert record.get("method") == "tools/call", record
    assert record.get("tool") == "run_python", record
    assert record.get("outcome") == "forwarded", record
    assert record.get("tls_group") == CLASSICAL, record
    assert rpc_id in received_ids(pqguard)


def test_filter_reads_http2_body(pqguard: Topology) -> None:
    rpc_id = unique_id("h2")
    h2_before = pqguard.edge.stat("http.edge.downstream_rq_http2_total")
    post(pqguard, pqguard.pq_h2_url, tools_call(rpc_id))
    assert pqguard.edge.stat("http.edge.downstream_rq_http2_total") > h2_before
    record = record_for(pqguard, rpc_id)
    assert record.get("method") == "tools/call" and record.get("tool") == "echo", record
    assert record.get("outcome") == "forwarded", record
    assert record.get("tls_group") == PQ, record
    assert rpc_id in received_ids(pqguard)


MALFORMED = {
    "truncated": b'{"jsonrpc":"2.0","id":7,"method":',
    "trailing-garbage": json.dumps(tools_call(8)).encode() + b"x",
    "invalid-utf8": b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"\xff\xfe"}}}',
}


@pytest.mark.parametrize("route", ["pq_client", "direct_chunked"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_body_is_rejected_before_the_server(pqguard: Topology, case: str, route: str) -> None:
    body = MALFORMED[case]
    server_rq = "cluster.mcp_server.upstream_rq_total"
    server_before = pqguard.server_envoy.stat(server_rq)
    edge_before = pqguard.edge.stat("cluster.mcp_upstream.upstream_rq_total")
    received_before = len(pqguard.mcp_received())
    since = pqguard.edge_log_mark()

    if route == "pq_client":
        response = post(pqguard, pqguard.pq_url, body)
    else:
        response = post(pqguard, pqguard.edge_url, iter([body[:10], body[10:]]))

    assert response.status_code == 400, response.text
    error = response.json()
    assert error.get("jsonrpc") == "2.0", error
    assert error.get("error", {}).get("code") == -32700, error
    assert error.get("id") in (None, 7, 8, 9), error
    record = wait_for_record(pqguard.edge_log, lambda r: r.get("outcome") == "rejected", since=since,
                             what=f"the rejection record of the {case} body")
    assert record.get("http_method") == "POST", record
    assert record.get("status") == 400, record
    assert record.get("code") == -32700, record
    # Nothing reached the server: not the edge's upstream, not the server-side Envoy, not the MCP server.
    assert pqguard.edge.stat("cluster.mcp_upstream.upstream_rq_total") == edge_before
    assert pqguard.server_envoy.stat(server_rq) == server_before
    assert len(pqguard.mcp_received()) == received_before


def test_filter_start_record(pqguard: Topology) -> None:
    starts = pqguard.pqguard_start_records()
    assert starts, "no pqguard.start line in the edge log"


@pytest.fixture(scope="module")
def quiet_edge(request: pytest.FixtureRequest) -> Topology:
    return start_extra_topology(request, {"request_log": "refused"}, label="the request_log: refused topology")


def test_request_log_refused_logs_only_refusals(quiet_edge: Topology) -> None:
    allowed_before = quiet_edge.edge.stat("wasmcustom.pqguard.allowed")
    with McpCaller(quiet_edge.pq_url) as caller:
        forwarded = caller.tool("echo", {"text": "not logged"})
        refused = caller.call(body=b'{"jsonrpc":"2.0","id":"bad","method":', rpc_id="bad-log")
    assert forwarded.status == 200 and refused.status == 400
    record = record_of(quiet_edge.edge_log, refused)
    assert record["outcome"] == "rejected" and record["reason"] == "parse_error", record
    # The forwarded request was answered before the refused one was sent: had it
    # been logged, its line would be there by now.
    logged = [line for line in quiet_edge.edge_log.read_text(errors="replace").splitlines()
              if "pqguard.request " in line]
    assert logged and not any(forwarded.path in line for line in logged), logged
    assert quiet_edge.edge.stat("wasmcustom.pqguard.allowed") == allowed_before + 1
