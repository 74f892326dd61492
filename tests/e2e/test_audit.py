"""The audit trail through the real filter (issue: quantum-safe audit trail).

An edge runs pqguard with an ``audit`` section: an ML-DSA-65 checkpoint key made
by ``pqguard keygen``, checkpoints every few records, and an HTTP collector
reached through an Envoy cluster. Real traffic (allowed, refused, over both key
exchanges) produces ``pqguard.audit`` lines in Envoy's log and the same lines at
the collector; ``pqguard audit verify`` accepts both, and rejects the log once a
single byte of a record is changed. ``pqguard audit report`` names the caller
that used classical cryptography.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from harness import Topology
from harness.calls import McpCaller
from harness.collector import Collector
from harness.envoy import static_cluster_yaml
from harness.tokens import pqguard_cli, run_cli

from conftest import start_extra_topology

AUDIT_PREFIX = "pqguard.audit "


@pytest.fixture(scope="module")
def audit_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    directory = tmp_path_factory.mktemp("audit-key")
    private = json.loads(run_cli("keygen", "--alg", "ML-DSA-65", "--kid", "audit-1"))
    key_file = directory / "audit-1.jwk"
    key_file.write_text(json.dumps(private))
    jwks_file = directory / "audit-jwks.json"
    jwks_file.write_text(run_cli("jwks", str(key_file)))
    return private, jwks_file


@pytest.fixture(scope="module")
def collector() -> Any:
    c = Collector()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def audited(request: pytest.FixtureRequest, audit_key: tuple[dict[str, Any], Path], collector: Collector) -> Topology:
    private, _ = audit_key
    config = {
        "audit": {
            "signing_key": private,
            "checkpoint_every": 4,
            "checkpoint_seconds": 1,
            "collector": {"cluster": "audit", "authority": "audit.test", "path": "/v1/audit",
                          "flush_ms": 200, "max_batch": 50},
        }
    }
    return start_extra_topology(request, config, label="the audited topology",
                                extra_clusters=collector.cluster_yaml())


def audit_lines(text: str) -> list[str]:
    return [line[line.index(AUDIT_PREFIX):] for line in text.splitlines() if AUDIT_PREFIX in line]


def verify(jwks: Path, log: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(pqguard_cli()), "audit", "verify", "--jwks", str(jwks), *extra, str(log)],
                          capture_output=True, text=True, timeout=120)


def every_chain_ends_signed(text: str) -> bool:
    """True when the last audit line of every chain in ``text`` is a checkpoint."""
    last: dict[str, str] = {}
    for line in audit_lines(text):
        record = json.loads(line[len(AUDIT_PREFIX):])
        last[record["chain"]] = record["kind"]
    return bool(last) and all(kind == "checkpoint" for kind in last.values())


def wait_until(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def drive_traffic(topo: Topology) -> None:
    with McpCaller(topo.pq_url) as pq, McpCaller(topo.classical_url) as classical:
        for i in range(6):
            assert pq.tool("echo", {"text": f"pq {i}"}).status == 200
        for i in range(3):
            # No policy here: the classical caller is recorded, not refused.
            assert classical.tool("echo", {"text": f"classical {i}"}).status == 200
        refused = pq.call(body=b'{"jsonrpc":"2.0","id":"bad","method":', rpc_id="bad")
        assert refused.status == 400


def test_traffic_produces_a_log_that_verifies_and_one_changed_byte_is_caught(
        audited: Topology, audit_key: tuple[dict[str, Any], Path], collector: Collector, tmp_path: Path) -> None:
    _, jwks = audit_key
    drive_traffic(audited)
    # Wait until the collector holds a checkpoint after the last decision.
    wait_until(lambda: sum('"kind":"decision"' in line for line in collector.received()) >= 10,
               "the decisions at the collector")
    wait_until(lambda: '"kind":"checkpoint"' in (collector.received() or [""])[-1],
               "a checkpoint after the last record at the collector")

    # Checkpoints are signed by each VM's timer, not while a request is
    # handled: once traffic stops, the timer covers every chain's tail.
    wait_until(lambda: every_chain_ends_signed(audited.edge_log.read_text(errors="replace")),
               "the timer to sign a checkpoint over every chain's last record")
    # Wasm counters are summed over the VMs: the timer signed at least one.
    assert audited.edge.stat("wasmcustom.pqguard.audit.checkpoints") >= 1
    assert audited.edge.stat("wasmcustom.pqguard.audit.records") >= 10
    log = tmp_path / "edge.log"
    lines = audit_lines(audited.edge_log.read_text(errors="replace"))
    kinds = [json.loads(line[len(AUDIT_PREFIX):])["kind"] for line in lines]
    assert kinds.count("genesis") >= 1 and kinds.count("decision") >= 10 and kinds.count("checkpoint") >= 2, kinds
    log.write_text(audited.edge_log.read_text(errors="replace"))
    ok = verify(jwks, log, "--max-unverified", "0")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 unverified" in ok.stdout, ok.stdout

    # The collector's copy is the same trail.
    shipped = tmp_path / "collector.log"
    shipped.write_text("\n".join(collector.received()) + "\n")
    ok = verify(jwks, shipped)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    # One byte changed inside a decision record (a digit of its time) is caught.
    text = log.read_text()
    target = next(line for line in text.splitlines() if '"kind":"decision"' in line)
    at = target.index('"time_ms":') + len('"time_ms":')
    digit = target[at]
    changed = target[:at] + ("1" if digit != "1" else "2") + target[at + 1:]
    tampered = tmp_path / "tampered.log"
    tampered.write_text(text.replace(target, changed, 1))
    bad = verify(jwks, tampered)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    record = json.loads(target[target.index(AUDIT_PREFIX) + len(AUDIT_PREFIX):])
    # The edited record's digest no longer matches the link the next record (or the
    # checkpoint) holds: the verifier names that point of its chain.
    out = bad.stdout + bad.stderr
    named = (f"chain {record['chain']} seq {record['seq'] + 1}" in out and "previous record" in out) or (
        f"chain {record['chain']}" in out and "checkpoint" in out and "TAMPERED" in out)
    assert named, out


def test_records_carry_decisions_and_crypto_context_but_no_secrets(audited: Topology,
                                                                   audit_key: tuple[dict[str, Any], Path]) -> None:
    private, _ = audit_key
    text = audited.edge_log.read_text(errors="replace")
    records = [json.loads(line[len(AUDIT_PREFIX):]) for line in audit_lines(text)]
    decisions = [r for r in records if r["kind"] == "decision"]
    groups = {r["crypto"]["tls_group"] for r in decisions}
    assert {"X25519MLKEM768", "X25519"} <= groups, groups
    assert {"allowed", "rejected"} <= {r["decision"] for r in decisions}
    echo = next(r for r in decisions if r["method"] == "tools/call")
    assert echo["target"] == {"kind": "tool", "name": "echo"}
    assert len(echo["body_sha3"]) == 64 and echo["args"] is None
    assert private["priv"] not in text
    genesis = next(r for r in records if r["kind"] == "genesis")
    assert genesis["kid"] == "audit-1"


def test_report_names_the_callers_still_on_classical_cryptography(audited: Topology, tmp_path: Path) -> None:
    log = tmp_path / "edge.log"
    log.write_text(audited.edge_log.read_text(errors="replace"))
    done = subprocess.run([str(pqguard_cli()), "audit", "report", "--json", str(log)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # Group names exactly (X25519 is a prefix of X25519MLKEM768: a substring test proves nothing).
    groups = {g for usage in report["identities"].values() for g in usage["groups"]}
    assert {"X25519MLKEM768", "X25519"} <= groups, groups
    assert report["classical"], report
    assert all("X25519" in report["identities"][caller]["groups"] for caller in report["classical"])
    table = subprocess.run([str(pqguard_cli()), "audit", "report", str(log)],
                           capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stdout + table.stderr
    assert re.search(r"\bX25519 \d", table.stdout), table.stdout


@pytest.fixture(scope="module")
def strict_audited(request: pytest.FixtureRequest, audit_key: tuple[dict[str, Any], Path]) -> Topology:
    """Strict audit mode with a collector cluster whose endpoint refuses connections."""
    private, _ = audit_key
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    dead_port = probe.server_address[1]
    probe.server_close()  # nothing listens there any more
    config = {
        "audit": {
            "signing_key": private,
            "strict": True,
            "collector": {"cluster": "audit", "authority": "audit.test", "path": "/v1/audit",
                          "flush_ms": 100, "timeout_ms": 500, "backoff_initial_ms": 100},
        }
    }
    dead = static_cluster_yaml("audit", dead_port, connect_timeout="0.5s")
    return start_extra_topology(request, config, label="the strict audit topology", extra_clusters=dead)


def test_strict_mode_refuses_requests_while_the_collector_is_unreachable(strict_audited: Topology) -> None:
    statuses: list[int] = []

    def refused() -> bool:
        with McpCaller(strict_audited.pq_url) as caller:
            call = caller.tool("echo", {"text": "x"})
        statuses.append(call.status)
        return call.status == 503

    wait_until(refused, "strict mode to refuse requests once shipping failed", timeout=30.0)
    # The refusal is pqguard's own, recorded with its reason.
    text = strict_audited.edge_log.read_text(errors="replace")
    assert '"reason":"audit_unavailable"' in text
    assert statuses[-1] == 503


def test_a_stopped_edge_leaves_a_closed_log_with_every_record_signed(
        request: pytest.FixtureRequest, audit_key: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    """No checkpoint is ever due by the policy here: the only signatures after the genesis ones are
    the last checkpoints each VM writes when Envoy stops it, and they cover every record."""
    private, jwks = audit_key
    config = {"audit": {"signing_key": private, "checkpoint_every": 1_000_000, "checkpoint_seconds": 86_400}}
    topo = start_extra_topology(request, config, label="the never-due audit topology")
    with McpCaller(topo.pq_url) as caller:
        for i in range(4):
            assert caller.tool("echo", {"text": f"closing {i}"}).status == 200
    running = topo.edge_log.read_text(errors="replace")
    assert not every_chain_ends_signed(running), "records are waiting for a checkpoint while Envoy runs"
    topo.stop()
    log = tmp_path / "closed.log"
    log.write_text(topo.edge_log.read_text(errors="replace"))
    assert every_chain_ends_signed(log.read_text())
    closed = verify(jwks, log, "--max-unverified", "0")
    assert closed.returncode == 0, closed.stdout + closed.stderr
    assert "0 unverified" in closed.stdout
