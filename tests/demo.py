"""pqguard demo: what the filter is for, in two acts.

    .venv/bin/python tests/demo.py [--wasm dist/pqguard.wasm] [--json]

Act 1, the crypto of each hop: one MCP session from a post-quantum and one from a classical client.
Act 2, policy: tokens, a cipher-aware rule, refusals, a downgrade alert, and the audit trail.

Starts the test topology (MCP server, server-side Envoy, edge Envoy with
pqguard, client Envoy), runs a short MCP session with the official MCP Python
SDK (initialize, tools/list, tools/call) through each client listener, and
prints for each client:

* the key exchange of the client -> edge hop and of the edge -> server hop,
  read from Envoy's own TLS statistics (``ssl.curves.*``);
* what pqguard saw for every request (its ``pqguard.request`` log records).

Act 2 starts a second edge whose pqguard has an ML-DSA-65 token key minted by the CLI, a policy in
which ``run_python`` needs a hybrid post-quantum key exchange *and* an ML-DSA-65 token, downgrades
observed (alerted, not blocked), and an audit trail. The same token (alice) is used by both clients:
the post-quantum client lists and calls ``run_python``; the classical client does not see it in
``tools/list`` and gets 403 when it calls it anyway, and its first request is a downgrade for alice,
alerted; a forged token and an expired one (signed by an independent ML-DSA implementation,
dilithium-py) get 401. At the end the audit log is verified with ``pqguard audit verify`` and the
crypto inventory printed. ``--json`` prints one JSON document instead (the e2e test checks it).

Everything is stopped at the end. The exit status is non-zero if any step
fails or anything differs from what is expected.
"""

from __future__ import annotations

import argparse
import json
import time
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import Topology, wait_for_records, wait_until, wasm_path
from harness.calls import McpCaller
from harness.mcp_session import SessionSummary, run_scripted_session
from harness.tokens import Issuer, pqguard_cli, sign_with_dilithium_py

PQ = "X25519MLKEM768"
CLASSICAL = "X25519"
EXPECTED_TOOLS = {"echo", "read_record", "run_python"}


@dataclass
class ClientRun:
    label: str
    listener: str
    url: str
    expected_group: str
    summary: SessionSummary | None = None
    downstream_curves: dict[str, int] = field(default_factory=dict)  # new handshakes client -> edge, by group
    upstream_curves: dict[str, int] = field(default_factory=dict)  # new handshakes edge -> server, by group
    upstream_new_connections: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def curves(topology: Topology, prefix: str) -> dict[str, int]:
    """``{group: handshakes}`` from the ``<prefix>ssl.curves.<group>`` counters of the edge."""
    found = topology.edge.stats("^" + prefix.replace(".", r"\.") + r"ssl\.curves\.")
    return {name.rsplit("ssl.curves.", 1)[1]: value for name, value in found.items()}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}


def run_client(topology: Topology, run: ClientRun) -> None:
    listener_prefix, cluster_prefix = topology.edge_listener_prefix, "cluster.mcp_upstream."
    down_before, up_before = curves(topology, listener_prefix), curves(topology, cluster_prefix)
    cx_before = topology.edge.stat("cluster.mcp_upstream.upstream_cx_total")
    received_before = len(topology.mcp_received())
    since = topology.edge_log_mark()

    run.summary = run_scripted_session(run.url, full=False, echo_text=f"hello from the {run.label}")

    run.downstream_curves = delta(curves(topology, listener_prefix), down_before)
    run.upstream_curves = delta(curves(topology, cluster_prefix), up_before)
    run.upstream_new_connections = topology.edge.stat("cluster.mcp_upstream.upstream_cx_total") - cx_before
    received = len(topology.mcp_received()) - received_before
    # pqguard logs each request before forwarding it: one record per request the server received.
    run.records = wait_for_records(topology.edge_log, lambda rs: len(rs) >= received, since=since,
                                   what=f"{received} pqguard.request records")
    check(topology, run)


def check(topology: Topology, run: ClientRun) -> None:
    p = run.problems
    s = run.summary
    if s is None:
        p.append("no session")
        return
    if not EXPECTED_TOOLS <= set(s.tools):
        p.append(f"tools/list returned {s.tools}")
    if s.echo_text != f"hello from the {run.label}":
        p.append(f"echo returned {s.echo_text!r}")
    if set(run.downstream_curves) != {run.expected_group}:
        p.append(f"client -> edge handshakes {run.downstream_curves}, expected {run.expected_group} only")
    if set(run.upstream_curves) - {PQ}:
        p.append(f"edge -> server handshakes {run.upstream_curves}, expected {PQ} only")
    all_upstream = curves(topology, "cluster.mcp_upstream.")
    if set(all_upstream) != {PQ}:
        p.append(f"cluster mcp_upstream handshakes so far {all_upstream}, expected {PQ} only")
    methods = [r.get("method") for r in run.records]
    for method in ("initialize", "tools/list", "tools/call"):
        if method not in methods:
            p.append(f"pqguard logged no {method}")
    for record in run.records:
        if record.get("tls_group") != run.expected_group or record.get("tls_version") != "TLSv1.3":
            p.append(f"pqguard saw {record.get('tls_version')}/{record.get('tls_group')} for "
                     f"{record.get('http_method')} {record.get('method') or ''}".rstrip())
        if record.get("outcome") != "forwarded":
            p.append(f"pqguard did not forward {record}")
    tools = [r.get("tool") for r in run.records if r.get("method") == "tools/call"]
    if tools != ["echo"]:
        p.append(f"pqguard saw tools/call for {tools}, expected ['echo']")


def format_curves(found: dict[str, int], sign: str = "+") -> str:
    return ", ".join(f"{group} {sign}{count}" for group, count in sorted(found.items())) or "none"


def report(topology: Topology, run: ClientRun) -> None:
    print(f"\n== {run.label}: MCP SDK -> client Envoy listener {run.listener} -> edge (pqguard) -> server")
    if run.summary is not None:
        s = run.summary
        print(f"   MCP session      protocol {s.protocol_version}; tools: {', '.join(s.tools)}; "
              f"echo returned {s.echo_text!r}")
    down = sorted(run.downstream_curves)
    print(f"   client -> edge   {', '.join(down) or '?':<16} (edge listener ssl.curves: "
          f"{format_curves(run.downstream_curves)})")
    if run.upstream_curves:
        print(f"   edge -> server   {', '.join(sorted(run.upstream_curves)):<16} (cluster mcp_upstream ssl.curves: "
              f"{format_curves(run.upstream_curves)})")
    else:
        total = curves(topology, "cluster.mcp_upstream.")
        print(f"   edge -> server   {', '.join(sorted(total)):<16} (connection reused; every handshake of cluster "
              f"mcp_upstream so far: {format_curves(total, sign='=')})")
    print("   pqguard saw:")
    for r in run.records:
        what = r.get("method") or "-"
        if r.get("tool"):
            what += f" tool={r['tool']}"
        print(f"     {r.get('http_method', '?'):<7}{what:<38}{r.get('tls_version', '?'):<9}"
              f"{r.get('tls_group', '?'):<16}{r.get('outcome', '?')}")
    print("   result: " + ("OK" if not run.problems else "FAILED\n     - " + "\n     - ".join(run.problems)))


ISS, AUD = "https://issuer.demo", "https://mcp.demo/mcp"
POLICY = {
    "rules": [
        {"name": "python-needs-pq", "effect": "require", "match": {"tools": ["run_python"]},
         "when": {"min_kex": "hybrid-pq", "token_algs": ["ML-DSA-65"]}},
        {"name": "authenticated", "effect": "allow", "match": {}, "when": {"authenticated": True}},
    ],
}
# What each step must come to: (status, tools seen or None, reason code or None).
EXPECTED = {
    "pq: tools/list": (200, ["echo", "read_record", "run_python"], None),
    "pq: run_python": (200, None, None),
    "classical: tools/list": (200, ["echo", "read_record"], None),
    "classical: run_python": (403, None, "requirement_not_met"),
    "pq: forged token": (401, None, "bad_signature"),
    "pq: expired token": (401, None, "expired"),
}


def policy_act(wasm: Path, work: Path) -> dict[str, Any]:
    """Act 2: tokens, policy, refusals, a downgrade alert, the audit trail. Returns what happened."""
    issuer = Issuer(work, ISS, AUD)
    token_key = issuer.keygen("ML-DSA-65", "demo-token-key")
    audit_key = issuer.keygen("ML-DSA-65", "demo-audit-key")
    (work / "audit-jwks.json").write_text(json.dumps(issuer.jwks(audit_key)))
    config = {
        "auth": {"audience": AUD, "issuers": [ISS], "jwks": issuer.jwks(token_key)},
        "p2p_connectivity": {"threat_detection": {"block_downgrade_attempts": False}},
        "policy": POLICY,
        "audit": {"signing_key": audit_key.private_jwk,
                  "checkpoint_every": 4, "checkpoint_seconds": 1},
    }
    alice = issuer.mint(token_key, sub="alice", ttl=600)
    forged = alice[:-8] + ("AAAAAAAA" if not alice.endswith("AAAAAAAA") else "BBBBBBBB")
    expired = sign_with_dilithium_py(token_key, {"alg": "ML-DSA-65", "kid": "demo-token-key", "typ": "JWT"},
                                     issuer.claims(sub="alice", ttl=-120))
    steps: list[dict[str, Any]] = []
    topology = Topology(with_filter=True, wasm=wasm, plugin_config=config)
    with topology:
        since = topology.edge_log_mark()
        for label, url, method, params, token in [
            ("pq: tools/list", topology.pq_url, "tools/list", {}, alice),
            ("pq: run_python", topology.pq_url, "tools/call", {"name": "run_python", "arguments": {"code": "print(6*7)"}}, alice),
            ("classical: tools/list", topology.classical_url, "tools/list", {}, alice),
            ("classical: run_python", topology.classical_url, "tools/call",
             {"name": "run_python", "arguments": {"code": "print(6*7)"}}, alice),
            ("pq: forged token", topology.pq_url, "tools/call", {"name": "echo", "arguments": {"text": "hi"}}, forged),
            ("pq: expired token", topology.pq_url, "tools/call", {"name": "echo", "arguments": {"text": "hi"}}, expired),
        ]:
            with McpCaller(url) as caller:
                call = caller.call(method, params, token=token, prefix="demo")
            answer = call.answer or {}
            record = next((r for r in wait_for_records(topology.edge_log, lambda rs, i=call.rpc_id: any(
                r.get("id") == i for r in rs), since=since, what=f"the record of {label}") if r.get("id") == call.rpc_id), {})
            tools = [t["name"] for t in answer.get("result", {}).get("tools", [])] if method == "tools/list" else None
            steps.append({"step": label, "group": record.get("tls_group"), "token_alg": record.get("token_alg"),
                          "status": call.status, "tools": tools, "reason": record.get("reason_code"),
                          "detail": record.get("detail")})
        alerts = wait_until(lambda: [a for a in topology.pqguard_alert_records(since) if a.get("kind") == "downgrade"] or None,
                            timeout=10, what="the downgrade alert")
        # The timer signs a checkpoint over the last records within a second.
        time.sleep(1.5)
    cli = str(pqguard_cli())
    verify = subprocess.run([cli, "audit", "verify", "--jwks", str(work / "audit-jwks.json"), str(topology.edge_log)],
                            capture_output=True, text=True)
    report = subprocess.run([cli, "audit", "report", str(topology.edge_log)], capture_output=True, text=True)
    problems = []
    for step in steps:
        status, tools, reason = EXPECTED[step["step"]]
        if step["status"] != status or (tools is not None and step["tools"] != tools) or \
                (reason is not None and step["reason"] != reason):
            problems.append(f"{step['step']}: got {step['status']} {step['tools'] or ''} {step['reason'] or ''}")
    if verify.returncode != 0:
        problems.append(f"audit verify failed: {verify.stdout}{verify.stderr}")
    return {"steps": steps, "alerts": [{"kind": a.get("kind"), "identity": a.get("identity"), "detail": a.get("detail"),
                                        "tls_group": a.get("tls_group")} for a in alerts],
            "audit_verify": {"exit": verify.returncode, "output": verify.stdout.strip()},
            "inventory": report.stdout.strip(), "problems": problems}


def print_policy_act(act: dict[str, Any]) -> None:
    print("\n== Act 2: policy (run_python needs a hybrid post-quantum key exchange and an ML-DSA-65 token)")
    print(f"   {'client: request':<24}{'key exchange':<16}{'token':<11}{'answer':<8}why")
    for s in act["steps"]:
        refused = s["detail"] if str(s["detail"]).startswith(str(s["reason"])) else f"{s['reason']}: {s['detail']}"
        why = {200: "allowed" + (f"; tools listed: {', '.join(s['tools'])}" if s["tools"] else "")}.get(
            s["status"], refused)
        print(f"   {s['step']:<24}{s['group'] or '-':<16}{s['token_alg'] or '-':<11}{s['status']:<8}{why}")
    for a in act["alerts"]:
        print(f"   ALERT {a['kind']}: {a['identity']} over {a['tls_group']}: {a['detail']}")
    print("   audit trail (pqguard audit verify):")
    for line in act["audit_verify"]["output"].splitlines():
        print(f"     {line}")
    print("   crypto inventory (pqguard audit report):")
    for line in act["inventory"].splitlines():
        print(f"     {line}")
    print("   result: " + ("OK" if not act["problems"] else "FAILED\n     - " + "\n     - ".join(act["problems"])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wasm", type=Path, default=None, help="pqguard module (default: $PQGUARD_WASM or dist/pqguard.wasm)")
    parser.add_argument("--json", action="store_true", help="print one JSON document (act 2 only) instead of the report")
    args = parser.parse_args(argv)
    wasm = (args.wasm or wasm_path()).resolve()
    if not wasm.is_file():
        print(f"pqguard module not found at {wasm}: build it first (or pass --wasm)", file=sys.stderr)
        return 2

    if args.json:
        with tempfile.TemporaryDirectory(prefix="pqguard-demo-") as work:
            act = policy_act(wasm, Path(work))
        print(json.dumps(act, indent=2))
        return 1 if act["problems"] else 0

    topology = Topology(with_filter=True, wasm=wasm)
    runs: list[ClientRun] = []
    try:
        with topology:
            assert topology.edge is not None and topology.edge.ready_seconds is not None
            print("pqguard demo")
            print(f"   module           {wasm} ({wasm.stat().st_size // 1024} KiB)")
            print(f"   edge Envoy       ready {topology.edge.ready_seconds:.3f} s after process start, with pqguard "
                  f"loaded ({len(topology.pqguard_start_records())} VM(s) started)")
            print(f"   run directory    {topology.run_dir}")
            runs = [
                ClientRun("post-quantum client", "pq_client", topology.pq_url, PQ),
                ClientRun("classical client", "classical_client", topology.classical_url, CLASSICAL),
            ]
            for run in runs:
                try:
                    run_client(topology, run)
                except Exception as err:
                    run.problems.append(f"{type(err).__name__}: {err}")
                    traceback.print_exc()
                report(topology, run)
            failed = any(run.problems for run in runs)
            if failed:
                print("\n" + topology.dump_logs(lines=30))
    except Exception:
        traceback.print_exc()
        if topology.processes:
            print("\n" + topology.dump_logs(lines=30))
        print("\nDEMO FAILED", file=sys.stderr)
        return 1
    try:
        with tempfile.TemporaryDirectory(prefix="pqguard-demo-") as work:
            act = policy_act(wasm, Path(work))
        print_policy_act(act)
        failed = failed or bool(act["problems"])
    except Exception:
        traceback.print_exc()
        failed = True
    print("\nall processes stopped")
    if failed:
        print("DEMO FAILED", file=sys.stderr)
        return 1
    print("DEMO OK: the post-quantum client used X25519MLKEM768 end to end and could run run_python; the classical "
          "client, same token, was refused it and alerted as a downgrade; forged and expired tokens got 401; the "
          "audit log verifies.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
