"""Compressed answers: pqguard reads `tools/list` answers (to filter them, check pins and learn
`x-mcp-header` annotations), so it asks for them uncompressed, and refuses one that comes
compressed anyway (fail closed: a list it could not read is never shown).

Two topologies whose MCP server gzips its answers (a test-only middleware of
tests/mcp_server/server.py): ``negotiate`` when the request accepts gzip, as servers and proxies do;
``always``, a server that ignores ``Accept-Encoding``. Clients send ``Accept-Encoding: gzip``, as
httpx (the Python SDK's HTTP client) does by default.
"""

from __future__ import annotations

import anyio
import pytest
from harness import Topology
from harness.calls import McpCaller
from harness.mcp_session import connect
from harness.records import wait_for_line

from conftest import start_extra_topology

GZIP = {"accept-encoding": "gzip"}


@pytest.fixture(scope="module")
def negotiating(request: pytest.FixtureRequest) -> Topology:
    return start_extra_topology(request, {}, label="the gzip-negotiating server topology",
                                mcp_server_args=("--gzip", "negotiate"))


@pytest.fixture(scope="module")
def compressing(request: pytest.FixtureRequest) -> Topology:
    return start_extra_topology(request, {}, label="the always-gzip server topology",
                                mcp_server_args=("--gzip", "always"))


def received(topo: Topology, rpc_id: str) -> dict:
    entries = [e for e in topo.mcp_received() if e.get("id") == rpc_id]
    assert len(entries) == 1, entries
    return entries[0]


def test_tools_list_is_asked_uncompressed_and_other_answers_stay_compressed(negotiating: Topology) -> None:
    with McpCaller(negotiating.pq_url) as caller:
        listed = caller.call("tools/list", {}, headers=GZIP)
        called = caller.tool("echo", {"text": "squeeze me"}, headers=GZIP)
    assert listed.status == 200, listed.response.text
    names = [t["name"] for t in (listed.answer or {})["result"]["tools"]]
    assert "echo" in names and "run_python" in names, listed.answer
    assert received(negotiating, listed.rpc_id)["accept_encoding"] == "identity"
    assert "content-encoding" not in listed.response.headers
    # A tools/call answer is not read by pqguard: the client's Accept-Encoding is left alone.
    assert received(negotiating, called.rpc_id)["accept_encoding"] == "gzip"
    assert called.response.headers.get("content-encoding") == "gzip"
    assert (called.answer or {}).get("result"), called.answer


def test_the_sdk_client_sees_the_tools_of_a_compressing_server(negotiating: Topology) -> None:
    async def session() -> list[str]:
        async with connect(negotiating.pq_url, headers=GZIP) as client:
            return sorted(t.name for t in (await client.list_tools()).tools)
    assert anyio.run(session) == ["echo", "read_record", "run_python"]


def test_an_answer_compressed_anyway_is_refused_with_the_id_and_a_reason(compressing: Topology) -> None:
    since = compressing.edge_log_mark()
    with McpCaller(compressing.pq_url) as caller:
        listed = caller.call("tools/list", {}, headers=GZIP)
    assert received(compressing, listed.rpc_id)["accept_encoding"] == "identity"
    assert "content-encoding" not in listed.response.headers, listed.response.headers
    answer = listed.answer or {}
    assert answer.get("id") == listed.rpc_id and answer["error"]["code"] == -32603, answer
    line = wait_for_line(compressing.edge_log, "tools/list answer refused", since=since)
    assert "content-encoding gzip" in line, line
