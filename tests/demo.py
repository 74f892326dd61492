"""pqguard demo: one MCP session from a post-quantum client and one from a classical client.

    .venv/bin/python tests/demo.py [--wasm dist/pqguard.wasm]

Starts the test topology (MCP server, server-side Envoy, edge Envoy with
pqguard, client Envoy), runs a short MCP session with the official MCP Python
SDK (initialize, tools/list, tools/call) through each client listener, and
prints for each client:

* the key exchange of the client -> edge hop and of the edge -> server hop,
  read from Envoy's own TLS statistics (``ssl.curves.*``);
* what pqguard saw for every request (its ``pqguard.request`` log records).

Everything is stopped at the end. The exit status is non-zero if any step
fails or anything differs from what is expected.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import Topology, wait_for_records, wasm_path
from harness.mcp_session import SessionSummary, run_scripted_session

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wasm", type=Path, default=None, help="pqguard module (default: $PQGUARD_WASM or dist/pqguard.wasm)")
    args = parser.parse_args(argv)
    wasm = (args.wasm or wasm_path()).resolve()
    if not wasm.is_file():
        print(f"pqguard module not found at {wasm}: build it first (or pass --wasm)", file=sys.stderr)
        return 2

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
    print("\nall processes stopped")
    if failed:
        print("DEMO FAILED", file=sys.stderr)
        return 1
    print("DEMO OK: the post-quantum client used X25519MLKEM768 end to end; pqguard told the two clients apart.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
