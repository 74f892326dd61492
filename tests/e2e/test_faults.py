"""Faults around the filter, each through real Envoy with the expected outcome, and nothing
forwarded unchecked:

- the filter's VM crashes (a test build of the module that traps on a header): the request
  fails closed, and with ``FAIL_RELOAD`` (what pqguard ships) the VM is reloaded and serves again;
  with ``FAIL_CLOSED`` every later request on that worker is refused;
- a new plugin configuration pushed through Envoy's file-based extension config discovery is a
  reload, not a restart; an invalid one is rejected and Envoy keeps serving with the previous one;
- the MCP server killed and restarted mid-session;
- the JWKS endpoint down when Envoy starts, then up;
- the audit collector down and back: the queue holds the records and ships them when it is back.

The host clock failing is an engine test (``engine::tests``): Envoy always has a clock.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import start_extra_topology
from harness import Topology, wait_until
from harness.calls import McpCaller, tool_once, unique
from harness.paths import REPO_ROOT

FAULT_WASM = REPO_ROOT / "target" / "pqguard-fault.wasm"
TRAP = {"x-pqguard-fault": "trap"}


@pytest.fixture(scope="module")
def fault_wasm() -> Path:
    if not FAULT_WASM.is_file():
        pytest.fail(f"{FAULT_WASM} not found: build it with `just _fault-wasm`", pytrace=False)
    return FAULT_WASM


def received_ids(topology: Topology) -> set[Any]:
    return {entry.get("id") for entry in topology.mcp_received()}


def echo_passes(topology: Topology, text: str) -> bool:
    call = tool_once(topology.pq_url, "echo", {"text": text})
    return call.status == 200 and call.result_text == text


# -- the filter's VM crashes ---------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["FAIL_RELOAD", "FAIL_CLOSED"])
def test_a_crashed_vm_fails_closed_and_fail_reload_brings_it_back(
        request: pytest.FixtureRequest, fault_wasm: Path, policy: str) -> None:
    shipped = re.search(r"failure_policy: ([A-Z_]+)", (REPO_ROOT / "envoy" / "pqguard-filter.yaml").read_text())
    assert shipped and shipped.group(1) == "FAIL_RELOAD", "the shipped filter entry reloads a crashed VM"
    # One worker, so every request meets the VM that crashed. The shipped entry for FAIL_RELOAD.
    topo = start_extra_topology(request, {}, wasm=fault_wasm, concurrency=1,
                                failure_policy=None if policy == "FAIL_RELOAD" else policy,
                                label=f"the crashing module with {policy}")
    assert echo_passes(topo, "before the crash")

    crash = tool_once(topo.pq_url, "echo", {"text": "crash"}, headers=TRAP)
    assert crash.status == 503, (crash.status, crash.response.text)
    assert crash.rpc_id not in received_ids(topo), "the crashing request reached the server"

    if policy == "FAIL_CLOSED":
        # No recovery: every later request on this worker is refused, none reaches the server.
        before = received_ids(topo)
        for n in range(3):
            call = tool_once(topo.pq_url, "echo", {"text": f"after {n}"})
            assert call.status == 503, (call.status, call.response.text)
        assert received_ids(topo) == before
        return

    # FAIL_RELOAD: a fresh VM after the back-off (1 s base); requests in between are refused.
    wait_until(lambda: echo_passes(topo, "after the reload"), timeout=30, interval=0.5,
               what="a request served by the reloaded VM")
    reloads = topo.edge.stats("vm_reload")
    assert any(name.endswith("vm_reload_success") and value >= 1 for name, value in reloads.items()), reloads
    # The reloaded VM is a configured pqguard: it still refuses what it must.
    refused = tool_once(topo.pq_url, "echo", {"text": "x"}, headers={"content-type": "text/plain"})
    assert refused.status == 415, refused.response.text
    # And it crashes and comes back again.
    again = tool_once(topo.pq_url, "echo", {"text": "crash again"}, headers=TRAP)
    assert again.status == 503
    wait_until(lambda: echo_passes(topo, "after the second reload"), timeout=30, interval=0.5,
               what="a request served after the second reload")


# -- configuration pushed while Envoy runs ----------------------------------------------------------


RELOAD = "extension_config_discovery.http_filter.pqguard.config_reload"
FAIL = "extension_config_discovery.http_filter.pqguard.config_fail"


def admin_exec_forwarded(topology: Topology, rpc_id: str) -> bool:
    """Sends the extension method ``admin/exec``; whether it reached the MCP server (pqguard
    refuses it locally with 404 unless ``mcp.allow_methods`` names it; the server then answers
    for itself)."""
    with McpCaller(topology.pq_url) as caller:
        call = caller.call("admin/exec", {}, rpc_id=rpc_id)
    forwarded = call.rpc_id in received_ids(topology)
    if not forwarded:
        assert call.status == 404 and call.answer and call.answer["error"]["code"] == -32601, call.response.text
    return forwarded


def test_a_pushed_configuration_is_a_reload_and_an_invalid_one_keeps_the_previous(
        request: pytest.FixtureRequest) -> None:
    topo = start_extra_topology(request, {}, plugin_config_via_ecds=True, plugin_config_as_string=False,
                                label="the ECDS topology")
    assert topo.edge.stat(RELOAD) == 1
    pid = topo.edge.pid
    assert not admin_exec_forwarded(topo, "cfg-1"), "an unknown method is refused by default"

    # A valid change: the extension method is now allowed; same Envoy process, same connections.
    topo.push_plugin_config({"mcp": {"allow_methods": ["admin/exec"]}})
    wait_until(lambda: topo.edge.stat(RELOAD) == 2, timeout=20, what="the second configuration applied")
    wait_until(lambda: admin_exec_forwarded(topo, unique("cfg-2")), timeout=20, interval=0.2,
               what="admin/exec forwarded under the new configuration")

    # An invalid one: Envoy rejects it (pqguard's on_configure fails) and keeps the last good one.
    topo.push_plugin_config({"mcp": {"allow_methods": ["admin/exec"]}, "colour": "blue"})
    wait_until(lambda: topo.edge.stat(FAIL) >= 1, timeout=20, what="the invalid configuration rejected")
    reloads = topo.edge.stat(RELOAD)
    assert admin_exec_forwarded(topo, "cfg-3"), "the previous configuration is still in force"
    bad = tool_once(topo.pq_url, "echo", {"text": "x"}, headers={"content-type": "text/plain"})
    assert bad.status == 415, "and pqguard still inspects"
    assert "colour" in topo.edge.log_tail(400)

    # Back to the defaults.
    topo.push_plugin_config({})
    wait_until(lambda: topo.edge.stat(RELOAD) > reloads, timeout=20, what="the third configuration applied")
    wait_until(lambda: not admin_exec_forwarded(topo, unique("cfg-4")), timeout=20, interval=0.2,
               what="admin/exec refused again")
    assert topo.edge.pid == pid and topo.edge.running(), "a reload, never a restart"
    assert echo_passes(topo, "after three pushes")
    print(json.dumps({"reloads": topo.edge.stat(RELOAD), "rejected": topo.edge.stat(FAIL)}))
