"""``Mcp-Param-*`` headers against the body (MCP 2026-07-28, ``x-mcp-header``).

The MCP server of these topologies offers ``query_region``, whose ``region`` and
``limit`` arguments are annotated ``x-mcp-header`` (``Region``, ``Limit``), and
``misannotated_region``, whose annotation the spec forbids. pqguard learns the
annotations from the ``tools/list`` answers it reads, then refuses any
``tools/call`` whose ``Mcp-Param-*`` headers disagree with its arguments (400,
-32020, the request id echoed) before the server sees it. The SDK client, which
mirrors the arguments itself, passes unchanged.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from harness import Topology
from harness.calls import McpCaller
from harness.mcp_session import connect

from conftest import start_extra_topology

HEADER_MISMATCH = -32020
ROUTING = ("--routing-tool",)


@pytest.fixture(scope="module")
def routed(request: pytest.FixtureRequest) -> Topology:
    return start_extra_topology(request, {}, label="the routing-tool topology", mcp_server_args=ROUTING)


@pytest.fixture(scope="module")
def refusing(request: pytest.FixtureRequest) -> Topology:
    return start_extra_topology(request, {"mcp": {"unknown_tool_schema": "refuse"}},
                                label="the unknown_tool_schema: refuse topology", mcp_server_args=ROUTING)


def reached_server(topo: Topology, rpc_id: str) -> bool:
    return any(entry.get("id") == rpc_id for entry in topo.mcp_received())


def listed(topo: Topology) -> list[str]:
    with McpCaller(topo.pq_url) as caller:
        answer = caller.call("tools/list", {}).answer or {}
    return [tool["name"] for tool in answer["result"]["tools"]]


def assert_refused(topo: Topology, call: Any) -> None:
    assert call.status == 400, (call.status, call.response.text)
    answer = call.answer or {}
    assert answer.get("id") == call.rpc_id, answer
    assert answer["error"]["code"] == HEADER_MISMATCH, answer
    assert not reached_server(topo, call.rpc_id), "a refused call reached the MCP server"


def test_before_any_tools_list_a_call_is_forwarded_unchecked_then_checked(routed: Topology) -> None:
    # First test of the module: the filter has seen no tools/list answer yet.
    before = routed.edge.stat("wasmcustom.pqguard.param_headers.unchecked")
    with McpCaller(routed.pq_url) as caller:
        call = caller.tool("query_region", {"region": "us-west1", "query": "q"},
                           headers={"mcp-param-region": "eu-west1"})
        # Forwarded: the server itself refuses the mismatch; pqguard could not check it yet.
        assert reached_server(routed, call.rpc_id)
        assert (call.answer or {}).get("error", {}).get("code") == HEADER_MISMATCH, call.answer
        assert routed.edge.stat("wasmcustom.pqguard.param_headers.unchecked") == before + 1
        assert "query_region" in listed(routed)
        again = caller.tool("query_region", {"region": "us-west1", "query": "q"},
                            headers={"mcp-param-region": "eu-west1"})
    assert_refused(routed, again)


def test_the_sdk_client_mirrors_its_arguments_and_passes(routed: Topology) -> None:
    async def session() -> tuple[list[str], list[str]]:
        async with connect(routed.pq_url, mode="auto") as client:
            tools = await client.list_tools()
            texts = []
            for region in ("eu-central1", "Zürich"):
                result = await client.call_tool("query_region", {"region": region, "query": "q", "limit": 5})
                texts.append(result.content[0].text)
            return [t.name for t in tools.tools], texts

    names, texts = anyio.run(session)
    assert "query_region" in names and "misannotated_region" not in names
    assert texts == ['{"limit": 5, "query": "q", "region": "eu-central1"}',
                     '{"limit": 5, "query": "q", "region": "Z\\u00fcrich"}']
    mirrored = [e["param_headers"] for e in routed.mcp_received() if e.get("name") == "query_region"][-2:]
    assert mirrored == [{"mcp-param-region": "eu-central1", "mcp-param-limit": "5"},
                        {"mcp-param-region": "=?base64?WsO8cmljaA==?=", "mcp-param-limit": "5"}], mirrored


@pytest.mark.parametrize(("arguments", "headers"), [
    pytest.param({"region": "us-west1", "query": "q"}, {"mcp-param-region": "eu-west1"}, id="wrong-value"),
    pytest.param({"region": "us-west1", "query": "q"}, {}, id="missing-header"),
    pytest.param({"query": "q"}, {"mcp-param-region": "us-west1"}, id="header-without-argument"),
    pytest.param({"region": "a", "query": "q", "limit": 5}, {"mcp-param-region": "a", "mcp-param-limit": "50"},
                 id="integer-differs"),
    pytest.param({"region": "a", "query": "q"}, {"mcp-param-region": "a", "mcp-param-tenant": "acme"},
                 id="unannotated-header"),
    pytest.param({"region": "Zürich", "query": "q"}, {"mcp-param-region": "=?base64?WnVyaWNo?="},
                 id="base64-differs"),
])
def test_headers_that_disagree_with_the_body_never_reach_the_server(
        routed: Topology, arguments: dict[str, Any], headers: dict[str, str]) -> None:
    assert "query_region" in listed(routed)
    with McpCaller(routed.pq_url) as caller:
        call = caller.tool("query_region", arguments, headers=headers)
    assert_refused(routed, call)


def test_a_tool_with_a_forbidden_annotation_is_hidden_and_refused(routed: Topology) -> None:
    names = listed(routed)
    assert "query_region" in names and "misannotated_region" not in names, names
    assert '"misannotated_region" removed from tools/list' in routed.edge_log.read_text(errors="replace")
    with McpCaller(routed.pq_url) as caller:
        call = caller.tool("misannotated_region", {"region": "a", "query": "q"})
    assert_refused(routed, call)


def test_refuse_mode_asks_the_client_to_list_first(refusing: Topology) -> None:
    with McpCaller(refusing.pq_url) as caller:
        first = caller.tool("query_region", {"region": "a", "query": "q"}, headers={"mcp-param-region": "a"})
        assert_refused(refusing, first)
        assert "list the tools again" in refusing.edge_log.read_text(errors="replace")
        assert "query_region" in listed(refusing)
        retried = caller.tool("query_region", {"region": "a", "query": "q"}, headers={"mcp-param-region": "a"})
    assert retried.status == 200 and reached_server(refusing, retried.rpc_id), retried.response.text
    assert '"region": "a"' in (retried.result_text or ""), retried.answer


def test_param_headers_on_anything_but_a_tools_call_are_refused(routed: Topology) -> None:
    with McpCaller(routed.pq_url) as caller:
        listing = caller.call("tools/list", {}, headers={"mcp-param-region": "us-west1"})
        malformed = caller.tool("echo", {"text": "x"}, headers={"mcp-param-region": "=?base64?!!?="})
    assert_refused(routed, listing)
    assert_refused(routed, malformed)
