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
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import start_extra_topology
from harness import Topology, wait_until
from harness.calls import McpCaller, tool_once, unique
from harness.raw_mcp import RawMcpSession
from harness.collector import Collector
from harness.envoy import static_cluster_yaml
from harness.jwks_server import JwksServer
from harness.paths import REPO_ROOT
from harness.ports import free_ports
from harness.tokens import Issuer, pqguard_cli, run_cli

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


# -- the MCP server dies mid-session ----------------------------------------------------------------


def test_the_mcp_server_killed_and_restarted_mid_session(request: pytest.FixtureRequest) -> None:
    topo = start_extra_topology(request, {}, label="the restarted MCP server topology")
    version = "2025-11-25"
    with RawMcpSession(topo.pq_url, version, prefix="restart") as session:
        old_session = session.session_id
        assert old_session, "a handshake-era server gives a session id"
        response, answer = session.request("tools/call", {"name": "echo", "arguments": {"text": "before"}})
        assert response.status_code == 200 and answer and "result" in answer, response.text

        mark = topo.edge_log_mark()
        topo.kill_mcp_server()
        # Down: a valid request is inspected, forwarded, and Envoy answers 503 for the dead upstream.
        params = {"name": "echo", "arguments": {"text": "while down"}}
        down = session.post(session.envelope("tools/call", params, "restart-down"), session.headers("tools/call", params))
        assert down.status_code == 503, down.text
        # A bad one is still refused by pqguard itself: the filter does not depend on the server.
        bad = session.post(b'{"jsonrpc":"2.0","id":"restart-bad","method":"tools/list",}',
                           session.headers("tools/list"))
        assert bad.status_code == 400 and bad.json()["error"]["code"] == -32700, bad.text
        records = {r.get("id"): r for r in topo.pqguard_records(mark)}
        assert records["restart-down"]["outcome"] == "forwarded", records
        assert [r for r in topo.pqguard_records(mark) if r.get("outcome") == "rejected"][0]["reason"] == "parse_error"

        topo.restart_mcp_server()
        # The new process does not know the old session: the server's own 404 reaches the client,
        # which must initialize again (MCP's rule for an unknown session id).
        params = {"name": "echo", "arguments": {"text": "old session"}}
        stale = session.post(session.envelope("tools/call", params, "restart-stale"), session.headers("tools/call", params))
        assert stale.status_code == 404, (stale.status_code, stale.text)
        # A new process: it saw only that request.
        assert received_ids(topo) == {"restart-stale"}

    with RawMcpSession(topo.pq_url, version, prefix="restart-new") as fresh:
        assert fresh.session_id and fresh.session_id != old_session
        response, answer = fresh.request("tools/call", {"name": "echo", "arguments": {"text": "after"}})
        assert response.status_code == 200 and answer and "result" in answer, response.text
    assert echo_passes(topo, "stateless after the restart")


# -- the JWKS endpoint is down when Envoy starts ----------------------------------------------------


ISS = "https://issuer.test"
AUD = "https://mcp.test/mcp"


def test_a_jwks_endpoint_down_at_start_refuses_tokens_counts_failures_and_recovers(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    issuer = Issuer(tmp_path_factory.mktemp("down-at-start"), ISS, AUD)
    k1 = issuer.keygen("ML-DSA-65", "k1")
    (port,) = free_ports(1)
    config = {"auth": {
        "audience": AUD, "issuers": [ISS],
        "remote_jwks": {"cluster": "jwks", "authority": "issuer.test", "path": "/.well-known/jwks.json",
                        "refresh_seconds": 60, "timeout_ms": 1000},
    }}
    # Nothing listens on the cluster's port yet.
    topo = start_extra_topology(request, config, label="the JWKS-down-at-start topology",
                                plugin_config_as_string=False, extra_clusters=static_cluster_yaml("jwks", port))
    token = issuer.mint(k1, sub="early", scope="tools:read")
    wait_until(lambda: topo.edge.stat("wasmcustom.pqguard.jwks.fetch_failed") >= 2, timeout=30,
               what="failed key set fetches counted")
    early = tool_once(topo.pq_url, "echo", {"text": "no keys yet"}, token=token)
    assert early.status == 401, early.response.text
    assert early.rpc_id not in received_ids(topo)
    failed = [r for r in topo.pqguard_jwks_records() if r.get("outcome") == "fetch_failed"]
    assert failed, topo.pqguard_jwks_records()

    with JwksServer(port=port) as server:
        server.publish(issuer.jwks(k1))
        # Every VM retries on its back-off and installs the key set (or takes it from shared data).
        wait_until(lambda: echo_passes_with(topo, token, "keys are here"), timeout=90, interval=1.0,
                   what="a token accepted once the key set could be fetched")
        assert server.fetches and server.fetches[0].status == 200
        for n in range(4):  # every worker has it
            assert echo_passes_with(topo, token, f"after recovery {n}")


def echo_passes_with(topology: Topology, token: str, text: str) -> bool:
    call = tool_once(topology.pq_url, "echo", {"text": text}, token=token)
    return call.status == 200 and call.result_text == text


# -- the audit collector goes down and comes back ------------------------------------------------------


AUDIT_PREFIX = "pqguard.audit "


def edge_audit_lines(topology: Topology) -> list[str]:
    text = topology.edge_log.read_text(errors="replace")
    return [line[line.index(AUDIT_PREFIX):] for line in text.splitlines() if AUDIT_PREFIX in line]


def test_the_audit_collector_down_and_back_loses_nothing_within_the_bound_and_counts_drops_beyond(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    private = json.loads(run_cli("keygen", "--alg", "ML-DSA-65", "--kid", "audit-fault"))
    key_file = tmp_path / "audit.jwk"
    key_file.write_text(json.dumps(private))
    jwks = tmp_path / "audit-jwks.json"
    jwks.write_text(run_cli("jwks", str(key_file)))
    (port,) = free_ports(1)
    config = {"audit": {
        "signing_key": private, "checkpoint_every": 5, "checkpoint_seconds": 1,
        "collector": {"cluster": "audit", "authority": "audit.test", "path": "/v1/audit", "flush_ms": 200,
                      "max_batch": 20, "queue_capacity": 40, "backoff_initial_ms": 200, "backoff_max_ms": 1000},
    }}
    topo = start_extra_topology(request, config, label="the audit collector fault topology", concurrency=1,
                                extra_clusters=static_cluster_yaml("audit", port, connect_timeout="0.5s"))

    def send(n: int, label: str) -> None:
        with McpCaller(topo.pq_url) as caller:
            for i in range(n):
                assert caller.tool("echo", {"text": f"{label} {i}"}).status == 200

    # Down, within the bound: the lines wait in the queue, the failed calls are counted.
    send(8, "queued")
    wait_until(lambda: topo.edge.stat("wasmcustom.pqguard.audit.ship_failed") >= 1, timeout=20,
               what="failed shipping counted")
    first = Collector(port=port)
    try:
        # Back: everything Envoy logged arrives, in order, and verifies.
        wait_until(lambda: first.received() == edge_audit_lines(topo) and len(first.received()) >= 8,
                   timeout=30, what="every queued line at the collector",
                   on_timeout=lambda: f"{len(first.received())} shipped, {len(edge_audit_lines(topo))} logged; "
                                      f"not shipped: {set(edge_audit_lines(topo)) - set(first.received())}")
    finally:
        first.stop()
    assert topo.edge.stat("wasmcustom.pqguard.audit.dropped") == 0
    shipped = tmp_path / "shipped.log"
    shipped.write_text("\n".join(first.received()) + "\n")
    ok = subprocess.run([str(pqguard_cli()), "audit", "verify", "--jwks", str(jwks), str(shipped)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    # Down again, beyond the bound (40 lines): the newest lines are dropped and counted; Envoy's
    # own log keeps every one of them.
    send(60, "overflow")
    wait_until(lambda: topo.edge.stat("wasmcustom.pqguard.audit.dropped") > 0, timeout=30,
               what="dropped lines counted")
    second = Collector(port=port)
    try:
        def accounted() -> bool:
            logged = edge_audit_lines(topo)
            delivered = first.received() + second.received()
            return len(logged) == len(delivered) + topo.edge.stat("wasmcustom.pqguard.audit.dropped")
        wait_until(accounted, timeout=40, interval=0.5, what="every logged line shipped or counted as dropped",
                   on_timeout=lambda: f"logged {len(edge_audit_lines(topo))}, shipped "
                                      f"{len(first.received()) + len(second.received())}, dropped "
                                      f"{topo.edge.stat('wasmcustom.pqguard.audit.dropped')}")
        assert set(second.received()) <= set(edge_audit_lines(topo)), "only lines Envoy logged were shipped"
    finally:
        second.stop()
    full = tmp_path / "edge.log"
    full.write_text("\n".join(edge_audit_lines(topo)) + "\n")
    ok = subprocess.run([str(pqguard_cli()), "audit", "verify", "--jwks", str(jwks), str(full)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, "Envoy's log holds the whole trail: " + ok.stdout + ok.stderr
