"""pqguard's counters as an operator sees them: a real Prometheus server (Debian package) scrapes the
edge's /stats/prometheus, and PromQL over the tagged families (envoy/edge.yaml `stats_tags`) answers
who used which key exchange and token algorithm, what was refused and why, and the downgrades. The
Grafana dashboard (deploy/grafana/pqguard.json) only names metrics and labels that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Topology, free_ports, wait_until
from harness.calls import McpCaller
from harness.tokens import Issuer

from conftest import start_extra_topology

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "pqguard.json"
ISS, AUD = "https://issuer.prom", "https://mcp.prom/mcp"
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Issuer, Any]:
    issuer = Issuer(tmp_path_factory.mktemp("prom-keys"), ISS, AUD)
    return issuer, issuer.keygen("ML-DSA-65", "k65")


@pytest.fixture(scope="module")
def edge(request: pytest.FixtureRequest, issuer: tuple[Issuer, Any]) -> Topology:
    iss, key = issuer
    return start_extra_topology(request, {
        "auth": {"audience": AUD, "issuers": [ISS], "jwks": iss.jwks(key)},
        "policy": {"rules": [
            {"name": "python-needs-pq", "effect": "require", "match": {"tools": ["run_python"]},
             "when": {"min_kex": "hybrid-pq"}},
            {"name": "authenticated", "effect": "allow", "match": {}, "when": {"authenticated": True}}]},
    }, label="the Prometheus topology")


@pytest.fixture(scope="module")
def prometheus(edge: Topology) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: install Debian's prometheus package (just setup does, as root)",
                    pytrace=False)
    port = free_ports(1)[0]
    work = Path(tempfile.mkdtemp(prefix="pqguard-prom-"))
    (work / "prometheus.yml").write_text(
        "global: { scrape_interval: 1s }\n"
        "scrape_configs:\n"
        "- job_name: envoy\n"
        "  metrics_path: /stats/prometheus\n"
        f"  static_configs: [ {{ targets: ['127.0.0.1:{edge.ports.edge_admin}'] }} ]\n")
    proc = subprocess.Popen([binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=open(work / "prometheus.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(url), timeout=60, what="Prometheus ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def _ready(url: str) -> bool:
    try:
        return _opener.open(f"{url}/-/ready", timeout=2).status == 200
    except OSError:
        return False


def query(url: str, promql: str) -> dict[str, float]:
    """``{label values joined by ',': value}`` of an instant PromQL query."""
    with _opener.open(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}", timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return {",".join(v for k, v in sorted(s["metric"].items()) if k != "__name__"): float(s["value"][1])
            for s in body["data"]["result"]}


def test_promql_answers_who_used_which_crypto_and_what_was_refused(
        edge: Topology, prometheus: str, issuer: tuple[Issuer, Any]) -> None:
    iss, key = issuer
    token = iss.mint(key, sub="alice")
    with McpCaller(edge.pq_url) as pq, McpCaller(edge.classical_url) as classical:
        for _ in range(3):
            assert pq.call("tools/list", {}, token=token).status == 200
        assert pq.tool("run_python", {"code": "1"}, token=token).status == 200
        assert classical.tool("echo", {"text": "x"}, token=token).status == 200
        assert classical.tool("run_python", {"code": "1"}, token=token).status == 403
    want_pq, want_classical = edge.edge.stat("wasmcustom.pqguard.kex.X25519MLKEM768"), \
        edge.edge.stat("wasmcustom.pqguard.kex.X25519")
    assert want_pq >= 4 and want_classical >= 2

    def scraped() -> dict[str, float] | None:
        by_group = query(prometheus, "sum by (pqguard_kex_group) (pqguard_kex)")
        return by_group if by_group.get("X25519") == want_classical and by_group.get("X25519MLKEM768") == want_pq else None

    by_group = wait_until(scraped, timeout=30, what="Prometheus to scrape the requests by group")
    assert set(by_group) <= {"X25519MLKEM768", "X25519", "none"}, by_group
    algs = query(prometheus, "sum by (pqguard_token_alg) (pqguard_token_alg)")
    assert algs.get("ML-DSA-65", 0) >= 6, algs
    denied = query(prometheus, "sum by (pqguard_denied_reason) (pqguard_denied)")
    assert denied.get("requirement_not_met") == 1, denied
    downgrades = query(prometheus, "sum(pqguard_downgrade_attempts)")
    assert downgrades.get("", 0) >= 2, downgrades  # alice's two classical requests after PQ ones
    share = query(prometheus, 'sum(pqguard_kex{pqguard_kex_group=~".*MLKEM.*"}) '
                              "/ sum(pqguard_kex)")
    assert 0 < share[""] < 1, share


def test_the_grafana_dashboard_names_only_metrics_and_labels_that_exist(edge: Topology, prometheus: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 15, exprs
    scraped = _opener.open(f"http://127.0.0.1:{edge.ports.edge_admin}/stats/prometheus", timeout=10).read().decode()
    exported = set(re.findall(r"^(pqguard_\w+)\{", scraped, flags=re.M))
    labels = set(re.findall(r"(pqguard_\w+)=\"", scraped))
    label_names = {"pqguard_kex_group", "pqguard_cipher", "pqguard_token_alg", "pqguard_denied_reason"}
    named = {m for e in exprs for m in re.findall(r"pqguard_\w+", e)} - label_names
    assert named and named <= exported, sorted(named - exported)
    used_labels = {lb for e in exprs for lb in re.findall(r"\b(pqguard_\w+)\b", e) if lb in label_names}
    assert used_labels <= labels, sorted(used_labels - labels)
    for expr in exprs:
        # Every expression is valid PromQL (Prometheus parses it; $__rate_interval is Grafana's).
        with _opener.open(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode(
                {"query": expr.replace("$__rate_interval", "1m")}), timeout=10) as r:
            assert json.load(r)["status"] == "success", expr
