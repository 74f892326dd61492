"""End-to-end evidence for post-quantum session tokens (issue 4), through the real Envoy.

Two topologies of their own (MCP server, server-side Envoy, edge Envoy with
pqguard, client Envoy), each started with the plugin configuration it needs,
written as the ``google.protobuf.Struct`` an operator puts in envoy.yaml:

* ``token_edge``: ``auth`` with an inline JWKS holding one key per algorithm
  (made with ``pqguard keygen``) and one ML-DSA-65 key made by dilithium-py, an
  independent implementation; RFC 9728 resource metadata;
* ``remote_edge``: ``auth.remote_jwks`` fetched through an Envoy cluster
  (``jwks``, added with the edge template's ``${EXTRA_CLUSTERS}``) from a JWKS
  server in the test process (:mod:`harness.jwks_server`). The server sends
  ``Cache-Control: max-age=5`` while the configured refresh is 60 s: every key
  set change below is installed within seconds only because pqguard honours it.

Single requests follow the 2026-07-28 revision (no handshake, no session, see
:mod:`harness.calls`), so each is a complete MCP request the server answers;
sessions use the official MCP SDK client with the token on its httpx client.
A refused request is checked three ways: the answer (status, challenge, body),
pqguard's record (``reason_code`` and ``detail``, found by the request's unique
path) and the MCP server, which must not have received it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import start_extra_topology
from dilithium_py.ml_dsa import ML_DSA_65
from harness import Topology, wait_for_records, wait_until
from harness.calls import Call, McpCaller, bearer, record_of, tool_once
from harness.jwks_server import JwksServer
from harness.mcp_session import run_scripted_session
from harness.tokens import (
    ALGORITHMS,
    Issuer,
    SigningKey,
    b64e,
    sign_with_dilithium_py,
    tamper_signature,
    token_claims,
    token_header,
    unsecured_token,
)

ISS = "https://issuer.test"
AUD = "https://mcp.test/mcp"
METADATA_URL = "https://mcp.test/.well-known/oauth-protected-resource"
METADATA_PATH = "/.well-known/oauth-protected-resource"
RESOURCE_METADATA = {
    "resource": AUD,
    "authorization_servers": [ISS],
    "scopes_supported": ["tools:read", "tools:execute"],
    "bearer_methods_supported": ["header"],
}
CHALLENGE = f'Bearer resource_metadata="{METADATA_URL}", error="invalid_token"'
UNAUTHORIZED_ERROR = {"code": -32001, "message": "Unauthorized"}
EXPECTED_TOOLS = ["echo", "read_record", "run_python"]
PQ = "X25519MLKEM768"


def kid_of(alg: str) -> str:
    return f"k-{alg.lower()}"


# -- keys and the token topology -----------------------------------------------------------------


@dataclass
class TokenKeys:
    issuer: Issuer
    by_alg: dict[str, SigningKey]
    unpublished: SigningKey  # same algorithm as a published key, kid not in the JWKS
    python_key: dict[str, Any]  # public JWK of an ML-DSA-65 key made by dilithium-py
    python_secret: bytes
    jwks: dict[str, Any]


@pytest.fixture(scope="module")
def token_keys(tmp_path_factory: pytest.TempPathFactory) -> TokenKeys:
    issuer = Issuer(tmp_path_factory.mktemp("token-keys"), ISS, AUD)
    by_alg = {alg: issuer.keygen(alg, kid_of(alg)) for alg in ALGORITHMS}
    unpublished = issuer.keygen("ML-DSA-65", "k-retired-long-ago")
    public, secret = ML_DSA_65.keygen()
    python_key = {"kty": "AKP", "alg": "ML-DSA-65", "kid": "py-ml-dsa-65", "pub": b64e(public)}
    jwks = issuer.jwks(*by_alg.values())
    jwks["keys"].append(python_key)
    return TokenKeys(issuer, by_alg, unpublished, python_key, secret, jwks)


@pytest.fixture(scope="module")
def token_edge(request: pytest.FixtureRequest, token_keys: TokenKeys) -> Topology:
    config = {"auth": {
        "audience": AUD,
        "issuers": [ISS],
        "jwks": token_keys.jwks,
        "resource_metadata": RESOURCE_METADATA,
        "resource_metadata_url": METADATA_URL,
    }}
    return start_extra_topology(request, config, label="the token topology (inline JWKS)",
                                plugin_config_as_string=False)


def server_received(topology: Topology, rpc_id: str) -> bool:
    return any(entry.get("id") == rpc_id for entry in topology.mcp_received())


def assert_unauthorized(topology: Topology, call: Call, reason_code: str) -> dict[str, Any]:
    """401 with the RFC 6750 / RFC 9728 challenge and a JSON-RPC error that says nothing more;
    the precise reason only in pqguard's record; nothing reached the server."""
    assert call.status == 401, call.response.text
    assert call.response.headers.get("www-authenticate") == CHALLENGE
    assert call.response.headers.get("content-type") == "application/json"
    body = call.response.json()
    assert {k: v for k, v in body.items() if k != "id"} == {"jsonrpc": "2.0", "error": UNAUTHORIZED_ERROR}, body
    record = record_of(topology.edge_log, call)
    assert (record.get("outcome"), record.get("status"), record.get("code")) == ("rejected", 401, -32001), record
    assert record.get("reason") == "unauthorized", record
    assert record.get("reason_code") == reason_code, record
    # The reason is logged, never sent.
    assert reason_code not in call.response.text and record["detail"] not in call.response.text
    assert not server_received(topology, call.rpc_id)
    return record


# -- (a) refusals and the metadata document ---------------------------------------------------------


def test_request_without_token_is_refused_with_the_challenge(token_edge: Topology) -> None:
    call = tool_once(token_edge.pq_url, "echo", {"text": "no token"})
    record = assert_unauthorized(token_edge, call, "missing_token")
    assert record.get("detail") == "no bearer token", record


def test_unauthorized_answer_echoes_the_request_id(token_edge: Topology) -> None:
    """The 401 is a JSON-RPC error for the request that was refused: it carries that request's id."""
    call = tool_once(token_edge.pq_url, "echo", {"text": "no token"})
    assert call.status == 401, call.response.text
    assert call.response.json().get("id") == call.rpc_id, call.response.text


def test_non_bearer_authorization_is_refused(token_edge: Topology) -> None:
    call = tool_once(token_edge.pq_url, "echo", {"text": "basic"}, headers={"authorization": "Basic YWxpY2U6cHc="})
    assert_unauthorized(token_edge, call, "missing_token")


def bad_tokens(keys: TokenKeys) -> dict[str, tuple[str, str]]:
    """case -> (token, reason_code pqguard must log)."""
    issuer, k65 = keys.issuer, keys.by_alg["ML-DSA-65"]
    valid = issuer.mint(k65, sub="mallory", scope="tools:read")
    header = {"alg": "ML-DSA-65", "kid": k65.kid, "typ": "JWT"}
    # The payload of a valid token with the subject changed, under the original signature.
    head, _, signature = valid.split(".")
    forged_payload = b64e(json.dumps({**token_claims(valid), "sub": "admin"}, separators=(",", ":")).encode())
    return {
        # Issued two hours ago, expired one hour ago (the leeway is 60 s by default).
        "expired": (sign_with_dilithium_py(k65, header, issuer.claims(sub="mallory", ttl=-3600,
                                                                      iat=int(time.time()) - 7200)), "expired"),
        "tampered-signature": (tamper_signature(valid), "bad_signature"),
        "tampered-payload": (f"{head}.{forged_payload}.{signature}", "bad_signature"),
        "wrong-audience": (issuer.mint(k65, sub="mallory", aud="https://other.test/mcp"), "wrong_audience"),
        "unknown-kid": (issuer.mint(keys.unpublished, sub="mallory"), "unknown_kid"),
        "alg-none": (unsecured_token(issuer.claims(sub="mallory"), kid=k65.kid), "alg_none"),
        "wrong-issuer": (issuer.mint(k65, sub="mallory", iss="https://evil.test"), "wrong_issuer"),
        # The header names ML-DSA-44 but the key with that kid is pinned to ML-DSA-65.
        "alg-mismatch": (sign_with_dilithium_py(keys.by_alg["ML-DSA-44"], {**header, "alg": "ML-DSA-44"},
                                                issuer.claims(sub="mallory")), "algorithm_mismatch"),
        "not-a-jws": ("not.a.token", "malformed"),
    }


BAD_TOKEN_CASES = ["expired", "tampered-signature", "tampered-payload", "wrong-audience", "unknown-kid",
                   "alg-none", "wrong-issuer", "alg-mismatch", "not-a-jws"]


@pytest.fixture(scope="module")
def bad_token_table(token_keys: TokenKeys) -> dict[str, tuple[str, str]]:
    table = bad_tokens(token_keys)
    assert sorted(table) == sorted(BAD_TOKEN_CASES)
    return table


@pytest.mark.parametrize("case", BAD_TOKEN_CASES)
def test_bad_token_is_refused(token_edge: Topology, bad_token_table: dict[str, tuple[str, str]], case: str) -> None:
    token, reason_code = bad_token_table[case]
    if case == "alg-mismatch":
        assert token_header(token) == {"alg": "ML-DSA-44", "kid": kid_of("ML-DSA-65"), "typ": "JWT"}
    call = tool_once(token_edge.pq_url, "echo", {"text": case}, token=token)
    record = assert_unauthorized(token_edge, call, reason_code)
    assert record["detail"].startswith(reason_code), record
    assert "token_alg" not in record and "subject" not in record, record


def test_resource_metadata_is_answered_by_the_filter(token_edge: Topology) -> None:
    """GET /.well-known/oauth-protected-resource (RFC 9728), with no token: pqguard answers with the
    document from its configuration; nothing goes upstream."""
    upstream = "cluster.mcp_upstream.upstream_rq_total"
    server_side = "http.mcp_server_tls.downstream_rq_total"
    before = (token_edge.edge.stat(upstream), token_edge.server_envoy.stat(server_side))
    received_before = len(token_edge.mcp_received())
    base = f"http://127.0.0.1:{token_edge.ports.pq_client}"
    with McpCaller(base) as caller:
        answers = [caller.http.get(base + path) for path in (METADATA_PATH, METADATA_PATH + "/mcp")]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.headers.get("content-type") == "application/json"
        assert answer.json() == RESOURCE_METADATA
    assert (token_edge.edge.stat(upstream), token_edge.server_envoy.stat(server_side)) == before
    assert len(token_edge.mcp_received()) == received_before


# -- (b) valid tokens of every algorithm, with the official SDK client --------------------------------


@dataclass
class SessionEvidence:
    tools: list[str]
    echo_text: str | None
    records: list[dict[str, Any]]
    received: list[dict[str, Any]]


def sdk_session(topology: Topology, url: str, token: str, echo_text: str) -> SessionEvidence:
    received_before = len(topology.mcp_received())
    since = topology.edge_log_mark()
    summary = run_scripted_session(url, headers=bearer(token), echo_text=echo_text, full=False)
    received = topology.mcp_received()[received_before:]
    records = wait_for_records(topology.edge_log, lambda rs: len(rs) >= len(received), since=since,
                               what=f"{len(received)} records (one per request the server received)")
    return SessionEvidence(summary.tools, summary.echo_text, records, received)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_sdk_session_with_a_token_of_each_algorithm(token_edge: Topology, token_keys: TokenKeys, alg: str) -> None:
    """initialize, tools/list, tools/call, GET stream and DELETE of the SDK client all carry the token
    and are forwarded; pqguard records which algorithm and key verified it. (ML-DSA-87 has the
    largest keys and signatures: it exercises the filter's stack inside V8.)"""
    key = token_keys.by_alg[alg]
    subject = f"sdk-{alg.lower()}"
    alg_metric = f"wasmcustom.pqguard.token_alg.{alg}"
    metric_before = token_edge.edge.stat(alg_metric)
    token = token_keys.issuer.mint(key, sub=subject, scope="tools:read")
    assert token_header(token) == {"alg": alg, "kid": key.kid, "typ": "JWT"}

    run = sdk_session(token_edge, token_edge.pq_url, token, echo_text=f"signed with {alg}")
    assert run.tools == EXPECTED_TOOLS
    assert run.echo_text == f"signed with {alg}"
    assert {"initialize", "notifications/initialized", "tools/list", "tools/call"} <= {
        r.get("method") for r in run.records}, run.records
    assert Counter(r.get("http_method") for r in run.records) == Counter(e.get("http_method") for e in run.received)
    for record in run.records:
        assert record.get("outcome") == "forwarded", record
        assert (record.get("token_alg"), record.get("token_kid")) == (alg, key.kid), record
        assert (record.get("issuer"), record.get("subject")) == (ISS, subject), record
        assert record.get("tls_group") == PQ, record
    assert token_edge.edge.stat(alg_metric) >= metric_before + len(run.records)


# -- (c) a token from an independent ML-DSA implementation ------------------------------------------


def test_token_signed_by_dilithium_py_verifies_through_envoy(token_edge: Topology, token_keys: TokenKeys) -> None:
    """RFC 9964 form (AKP key, ``alg`` ML-DSA-65, empty context), key and signature from dilithium-py."""
    kid = token_keys.python_key["kid"]
    header = {"alg": "ML-DSA-65", "kid": kid, "typ": "JWT"}
    claims = token_keys.issuer.claims(sub="interop", scope="tools:read", tools=["echo"])
    signing_input = (b64e(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + b64e(json.dumps(claims, separators=(",", ":")).encode()))
    token = signing_input + "." + b64e(ML_DSA_65.sign(token_keys.python_secret, signing_input.encode()))

    call = tool_once(token_edge.pq_url, "echo", {"text": "interop"}, token=token)
    assert call.status == 200, call.response.text
    assert call.result_text == "interop"
    record = record_of(token_edge.edge_log, call)
    assert record.get("outcome") == "forwarded", record
    assert (record.get("token_alg"), record.get("token_kid"), record.get("subject")) == ("ML-DSA-65", kid, "interop")
    assert server_received(token_edge, call.rpc_id)

    # And the official SDK client works with it.
    run = sdk_session(token_edge, token_edge.pq_url, token, echo_text="interop session")
    assert run.echo_text == "interop session"
    assert {r.get("token_kid") for r in run.records} == {kid}

    # A key made by pqguard keygen, used by dilithium-py from its seed (RFC 9964 priv): accepted too.
    k65 = token_keys.by_alg["ML-DSA-65"]
    seeded = sign_with_dilithium_py(k65, {"alg": "ML-DSA-65", "kid": k65.kid, "typ": "JWT"},
                                    token_keys.issuer.claims(sub="interop-seed"))
    call = tool_once(token_edge.pq_url, "echo", {"text": "seed"}, token=seeded)
    assert call.status == 200 and call.result_text == "seed", call.response.text


# -- (d) the verified-token cache -------------------------------------------------------------------


def test_token_cache_counts_a_miss_then_hits(token_edge: Topology, token_keys: TokenKeys) -> None:
    """One connection straight to the edge (one worker, one cache): the first use of a token is a
    miss, every repetition a hit."""
    hit, miss = "wasmcustom.pqguard.token_cache.hit", "wasmcustom.pqguard.token_cache.miss"
    token = token_keys.issuer.mint(token_keys.by_alg["ML-DSA-65"], sub="cache", scope="tools:read")

    def counters() -> tuple[int, int]:
        return token_edge.edge.stat(hit), token_edge.edge.stat(miss)

    hits0, misses0 = counters()
    with McpCaller(token_edge.edge_url, ca_cert=token_edge.pki.ca_cert) as caller:
        first = caller.tool("echo", {"text": "first"}, token=token)
        assert first.status == 200, first.response.text
        wait_until(lambda: counters() == (hits0, misses0 + 1), timeout=10, what="one miss, no hit",
                   on_timeout=lambda: f"(hit, miss) = {counters()}, before {(hits0, misses0)}")
        for n in range(4):
            again = caller.tool("echo", {"text": f"again {n}"}, token=token)
            assert again.status == 200, again.response.text
    wait_until(lambda: counters() == (hits0 + 4, misses0 + 1), timeout=10, what="four hits, still one miss",
               on_timeout=lambda: f"(hit, miss) = {counters()}, before {(hits0, misses0)}")


def test_forward_token_false_keeps_the_token_from_the_mcp_server(
        request: pytest.FixtureRequest, token_edge: Topology, token_keys: TokenKeys) -> None:
    """By default the verified token goes on to the MCP server. With ``auth.forward_token: false``
    (Envoy jwt_authn's default) the server never receives it, and the decisions are the same: a
    valid token passes, a tampered one is refused before anything is forwarded."""
    token = token_keys.issuer.mint(token_keys.by_alg["ML-DSA-65"], sub="forward", scope="tools:read")

    def entry(topology: Topology, rpc_id: str) -> dict[str, Any]:
        entries = [e for e in topology.mcp_received() if e.get("id") == rpc_id]
        assert len(entries) == 1, entries
        return entries[0]

    call = tool_once(token_edge.pq_url, "echo", {"text": "forwarded"}, token=token)
    assert call.status == 200 and call.result_text == "forwarded", call.response.text
    assert entry(token_edge, call.rpc_id)["has_authorization"] is True

    config = {"auth": {"audience": AUD, "issuers": [ISS], "jwks": token_keys.jwks, "forward_token": False,
                       "resource_metadata": RESOURCE_METADATA, "resource_metadata_url": METADATA_URL}}
    stripping = start_extra_topology(request, config, label="the token topology with forward_token false",
                                     plugin_config_as_string=False)
    call = tool_once(stripping.pq_url, "echo", {"text": "stopped at the filter"}, token=token)
    assert call.status == 200 and call.result_text == "stopped at the filter", call.response.text
    assert entry(stripping, call.rpc_id)["has_authorization"] is False
    record = record_of(stripping.edge_log, call)
    assert (record.get("outcome"), record.get("subject")) == ("forwarded", "forward"), record

    refused = tool_once(stripping.pq_url, "echo", {"text": "x"}, token=tamper_signature(token))
    assert_unauthorized(stripping, refused, "bad_signature")


# -- (e) remote JWKS: rotation under continuous traffic, bad answers ----------------------------------


MAX_AGE = "max-age=5"


@dataclass
class RemoteJwks:
    topology: Topology
    server: JwksServer
    issuer: Issuer
    k1: SigningKey
    k2: SigningKey
    current: SigningKey  # the key tokens are minted with now


def pqguard_vms(topology: Topology) -> set[int]:
    """The Envoy threads running a pqguard VM, from the ``pqguard.start`` records: the main thread
    and one per worker (every one of them fetches the remote key set)."""
    expected = (topology.concurrency or 1) + 1

    def all_started() -> set[int] | None:
        vms = topology.pqguard_vm_threads()
        return vms if len(vms) == expected else None

    return wait_until(all_started, timeout=10, what=f"pqguard.start records from {expected} threads",
                      on_timeout=lambda: str(topology.pqguard_vm_threads()))


def wait_until_every_vm_installed(topology: Topology, kids: list[str], since: int, timeout: float = 20.0) -> None:
    """Wait for a ``pqguard.jwks`` "installed" record with exactly ``kids`` from every pqguard VM."""
    vms = pqguard_vms(topology)

    def installed_on() -> set[int]:
        return {r["thread"] for r in topology.pqguard_jwks_records(since)
                if r.get("outcome") == "installed" and sorted(r.get("kids", [])) == sorted(kids)}

    wait_until(lambda: vms <= installed_on(), timeout=timeout,
               what=f"every pqguard VM ({len(vms)}) to install the key set {kids}",
               on_timeout=lambda: f"installed on {installed_on()} of {vms}; jwks records: "
                                  f"{topology.pqguard_jwks_records(since)}")


@pytest.fixture(scope="module")
def remote_jwks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteJwks]:
    issuer = Issuer(tmp_path_factory.mktemp("rotation-keys"), ISS, AUD)
    k1, k2 = issuer.keygen("ML-DSA-65", "k1"), issuer.keygen("ML-DSA-65", "k2")
    with JwksServer() as server:
        server.publish(issuer.jwks(k1), cache_control=MAX_AGE)
        config = {"auth": {
            "audience": AUD,
            "issuers": [ISS],
            "remote_jwks": {"cluster": "jwks", "authority": server.authority, "path": server.path,
                            "refresh_seconds": 60, "timeout_ms": 1000},
            "resource_metadata_url": METADATA_URL,
        }}
        topology = start_extra_topology(request, config, label="the remote JWKS topology",
                                        plugin_config_as_string=False, extra_clusters=server.cluster_yaml("jwks"))
        pqguard_vms(topology)
        starts = topology.pqguard_start_records()
        assert all(s.get("remote_jwks") is True for s in starts), starts
        wait_until_every_vm_installed(topology, ["k1"], since=0)
        yield RemoteJwks(topology, server, issuer, k1, k2, current=k1)
        # The topology stops with the module (start_extra_topology); the server here, after it.


@dataclass
class TrafficLog:
    """What the client loop saw, per phase of the rotation."""

    ok: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


class ContinuousTraffic:
    """A client sending valid requests one after the other (through the PQ client Envoy) with the
    token it is currently given, until stopped (and never longer than ``limit`` seconds)."""

    def __init__(self, url: str, token: str, limit: float = 90.0) -> None:
        self.url = url
        self.token = token
        self.phase = "start"
        self.limit = limit
        self.log = TrafficLog()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="continuous-traffic", daemon=True)

    def __enter__(self) -> ContinuousTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def switch(self, *, phase: str, token: str | None = None) -> None:
        with self._lock:
            self.phase = phase
            if token is not None:
                self.token = token

    def ok_in(self, phase: str) -> int:
        with self._lock:
            return self.log.ok[phase]

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        n = 0
        with McpCaller(self.url) as caller:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    phase, token = self.phase, self.token
                n += 1
                try:
                    call = caller.tool("echo", {"text": f"request {n}"}, token=token, prefix="rotation")
                    good = call.status == 200 and call.result_text == f"request {n}"
                    what = f"HTTP {call.status}: {call.response.text[:200]}"
                except Exception as err:  # noqa: BLE001 (any failure of a valid request counts)
                    good, what = False, f"{type(err).__name__}: {err}"
                with self._lock:
                    if good:
                        self.log.ok[phase] += 1
                    else:
                        self.log.failures.append(f"{phase}: request {n}: {what}")
                self._stop.wait(0.02)  # keep the shared machine usable; not a timing assumption


def test_key_rotation_under_continuous_traffic_loses_no_request(remote_jwks: RemoteJwks) -> None:
    """Publish k2 next to k1, wait until every VM has it, mint with k2, retire k1, wait again:
    not one valid request fails, and a k1 token is refused once k1 is retired."""
    topo, server, issuer = remote_jwks.topology, remote_jwks.server, remote_jwks.issuer
    k1, k2 = remote_jwks.k1, remote_jwks.k2
    k1_token = issuer.mint(k1, sub="rotation", scope="tools:read")
    since_all = topo.edge_log_mark()

    with ContinuousTraffic(topo.pq_url, k1_token) as traffic:
        wait_until(lambda: traffic.ok_in("start") >= 5, timeout=20, what="traffic with k1 tokens")

        mark = topo.edge_log_mark()
        traffic.switch(phase="k1 and k2 published")
        server.publish(issuer.jwks(k1, k2), cache_control=MAX_AGE)
        wait_until_every_vm_installed(topo, ["k1", "k2"], since=mark)

        traffic.switch(phase="minting with k2", token=issuer.mint(k2, sub="rotation", scope="tools:read"))
        wait_until(lambda: traffic.ok_in("minting with k2") >= 5, timeout=20, what="traffic with k2 tokens")

        mark = topo.edge_log_mark()
        traffic.switch(phase="k1 retired")
        server.publish(issuer.jwks(k2), cache_control=MAX_AGE)
        wait_until_every_vm_installed(topo, ["k2"], since=mark)
        traffic.switch(phase="after rotation")
        wait_until(lambda: traffic.ok_in("after rotation") >= 5, timeout=20, what="traffic after the rotation")
    remote_jwks.current = k2
    (topo.run_dir / "rotation-traffic.json").write_text(json.dumps(
        {"ok_by_phase": traffic.log.ok, "failures": traffic.log.failures}, indent=2) + "\n")

    assert traffic.log.failures == [], traffic.log.failures
    assert all(traffic.log.ok[p] > 0 for p in ("start", "minting with k2", "after rotation")), traffic.log.ok
    def rotation_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if str(r.get("path", "")).startswith("/mcp?case=rotation-")]

    ok = sum(traffic.log.ok.values())
    records = rotation_records(wait_for_records(topo.edge_log, lambda rs: len(rotation_records(rs)) >= ok,
                                                since=since_all, what=f"{ok} records of the rotation traffic"))
    assert [r for r in records if r.get("outcome") != "forwarded"] == []
    assert {r.get("token_kid") for r in records} == {"k1", "k2"}

    # k1 is gone: its tokens are refused (the challenge and the body as for any bad token).
    refused = tool_once(topo.pq_url, "echo", {"text": "old key"}, token=k1_token)
    assert refused.status == 401, refused.response.text
    assert refused.response.headers.get("www-authenticate") == CHALLENGE
    assert record_of(topo.edge_log, refused).get("reason_code") == "unknown_kid"


def test_a_vm_without_keys_takes_the_key_set_another_vm_fetched(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The JWKS server answers one fetch only (then 500): the VM that got it publishes the key
    set in shared data, every other VM installs it from there, and every worker serves."""
    issuer = Issuer(tmp_path_factory.mktemp("shared-keys"), ISS, AUD)
    k1 = issuer.keygen("ML-DSA-65", "k1")
    with JwksServer() as server:
        server.publish_once(issuer.jwks(k1))
        config = {"auth": {
            "audience": AUD, "issuers": [ISS],
            "remote_jwks": {"cluster": "jwks", "authority": server.authority, "path": server.path,
                            "refresh_seconds": 60, "timeout_ms": 1000},
        }}
        topo = start_extra_topology(request, config, label="the one-fetch JWKS topology",
                                    plugin_config_as_string=False, extra_clusters=server.cluster_yaml("jwks"))
        wait_until_every_vm_installed(topo, ["k1"], since=0)
        installed = [r for r in topo.pqguard_jwks_records() if r.get("outcome") == "installed"]
        assert sorted(r["source"] for r in installed) == ["fetched"] + ["shared"] * (len(installed) - 1), installed
        assert len(installed) == len(pqguard_vms(topo)) >= 3, installed
        assert [f.status for f in server.fetches][0] == 200
        assert all(f.status == 500 for f in server.fetches[1:]), server.fetches
        token = issuer.mint(k1, sub="shared", scope="tools:read")
        for n in range(4):
            call = tool_once(topo.pq_url, "echo", {"text": f"shared {n}"}, token=token)
            assert call.status == 200 and call.result_text == f"shared {n}", call.response.text


def test_bad_jwks_answers_keep_the_last_good_key_set(remote_jwks: RemoteJwks) -> None:
    """An error status, then garbage instead of a key set: every VM logs the failed fetch and the
    refused key set, the metrics count them, and requests keep passing with the keys in force."""
    topo, server, issuer = remote_jwks.topology, remote_jwks.server, remote_jwks.issuer
    token = issuer.mint(remote_jwks.current, sub="resilience", scope="tools:read")
    vms = pqguard_vms(topo)

    def every_vm_logged(outcome: str, since: int) -> bool:
        return vms <= {r["thread"] for r in topo.pqguard_jwks_records(since) if r.get("outcome") == outcome}

    def requests_pass(label: str) -> None:
        with McpCaller(topo.pq_url) as caller:
            for n in range(6):
                call = caller.tool("echo", {"text": f"{label} {n}"}, token=token)
                assert call.status == 200 and call.result_text == f"{label} {n}", (label, call.response.text)

    requests_pass("before")
    cases = [
        ("fetch_failed", "wasmcustom.pqguard.jwks.fetch_failed", lambda: server.fail(500)),
        ("rejected", "wasmcustom.pqguard.jwks.rejected", lambda: server.serve_raw(b"<html>garbage</html>")),
    ]
    for outcome, metric, serve in cases:
        before = topo.edge.stat(metric)
        mark = topo.edge_log_mark()
        serve()
        wait_until(lambda: every_vm_logged(outcome, mark), timeout=30,  # noqa: B023 (used at once)
                   what=f"a {outcome!r} pqguard.jwks record from every VM",
                   on_timeout=lambda: str(topo.pqguard_jwks_records(mark)))  # noqa: B023
        assert topo.edge.stat(metric) >= before + len(vms)
        assert not any(r.get("outcome") == "installed" for r in topo.pqguard_jwks_records(mark))
        requests_pass(outcome)
    failed = [r for r in topo.pqguard_jwks_records() if r.get("outcome") == "fetch_failed"]
    assert all(r.get("reason") == "status 500" for r in failed), failed
