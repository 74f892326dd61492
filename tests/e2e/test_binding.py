"""ML-KEM bound sessions through real Envoy (two workers), with an independent client
(``harness.binding``: kyber-py for ML-KEM-768, the standard library for HMAC-SHA3-256), over
X25519MLKEM768 from the client Envoy. Each test plays the attacker the README's threat model names.

A copied token is useless for rules that demand ``bound: true``: it binds only to the key its ``cnf``
confirms, and a token without ``cnf`` binds to nothing by default. A captured request cannot be
replayed on any worker, nor sent to another host or session, nor altered; a proof made in advance is
refused; a confirmation pqguard cannot check is refused, never taken as a bearer token; the proof
never reaches the MCP server; GET and DELETE can demand a binding; two Envoys with the same secret
accept each other's bindings; the secret rotates under load without losing a request. ``pqguard
proxy`` serves only its own loopback origin.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
from conftest import start_extra_topology
from harness import Topology, wait_until
from harness.binding import PROOF_HEADER, TICKET_HEADER, Binding, BindingClient, b64d, b64e, thumbprint
from harness.calls import modern_headers, modern_message, unique
from harness.mcp_session import connect
from harness.ports import free_ports
from harness.processes import ManagedProcess
from harness.tokens import Issuer, SigningKey, pqguard_cli, run_cli

ISS = "https://issuer.test"
AUD = "https://mcp.test/mcp"
SECRET_1 = b64e(b"binding secret one, 32 bytes or more!")
SECRET_2 = b64e(b"binding secret two, 32 bytes or more!")
TICKET_SECRET = b64e(b"ticket secret, also 32 bytes or more")
PQ_GROUP = "X25519MLKEM768"


class Keys:
    def __init__(self, directory: Path) -> None:
        self.issuer = Issuer(directory, ISS, AUD)
        self.key: SigningKey = self.issuer.keygen("ML-DSA-65", "bind-65")
        self.jwks = self.issuer.jwks(self.key)

    def token(self, sub: str = "alice", **claims: Any) -> str:
        return self.issuer.mint(self.key, sub=sub, scope="tools:call", ttl=600, claims=claims or None)

    def confirmed(self, client: BindingClient, sub: str = "alice", **claims: Any) -> str:
        """A token whose ``cnf`` (RFC 7800) names ``client``'s encapsulation key."""
        return self.token(sub, cnf={"mlkem#S3-256": thumbprint(client.ek)}, **claims)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("binding-keys"))


def config(keys: Keys, *secrets: tuple[str, str], ttl: int = 600) -> dict[str, Any]:
    """The binding section with nothing but secrets and times: every other setting is the default."""
    return {
        "auth": {"audience": AUD, "issuers": [ISS], "jwks": keys.jwks, "forward_payload_header": "x-jwt-payload"},
        "binding": {"secrets": [{"kid": kid, "secret": s} for kid, s in secrets], "ttl_seconds": ttl,
                    "window_seconds": 30, "ticket_secrets": [{"kid": "t1", "secret": TICKET_SECRET}]},
        "policy": {"rules": [
            {"name": "callers", "effect": "allow",
             "match": {"methods": ["initialize", "notifications/initialized", "ping", "tools/call", "tools/list"]},
             "when": {"authenticated": True}},
            {"name": "python-bound", "effect": "require", "match": {"tools": ["run_python"]},
             "when": {"bound": True, "min_kex": "hybrid-pq"}},
            {"name": "streams-bound", "effect": "require", "match": {"http_methods": ["GET", "DELETE"]},
             "when": {"bound": True}},
        ]},
    }


@pytest.fixture(scope="module")
def edge(request: pytest.FixtureRequest, keys: Keys) -> Topology:
    return start_extra_topology(request, config(keys, ("b1", SECRET_1)), label="the binding topology")


def origin(topology: Topology) -> str:
    return topology.pq_url.rsplit("/mcp", 1)[0]


def authority(topology: Topology) -> str:
    """The ``Host`` httpx sends to ``origin(topology)`` (the client Envoy passes it on unchanged)."""
    return urlsplit(origin(topology)).netloc


def call(topology: Topology, token: str, tool: str = "echo", *, binding: Binding | None = None,
         tamper: str | None = None, proof: str | None = None, ts: int | None = None,
         ticket: str | None = None) -> tuple[httpx.Response, str]:
    """POST one tools/call; with ``binding``, a proof over exactly what is sent (``tamper`` changes
    the body, path, ``Host`` or ``Mcp-Session-Id`` after the proof was made). Returns the answer and
    the proof used."""
    rpc_id = unique("bind")
    arguments = {"code": "1+1"} if tool == "run_python" else {"text": "bound"}
    params = {"name": tool, "arguments": arguments}
    body = json.dumps(modern_message("tools/call", params, rpc_id)).encode()
    path = f"/mcp?case={rpc_id}"
    headers = {**modern_headers("tools/call", params)}
    if ticket is None:
        headers["authorization"] = f"Bearer {token}"
    else:
        # The ticket instead of the token; the proof covers the ticket (pass it as ``token``).
        headers[TICKET_HEADER] = ticket
    if binding is not None:
        proof = binding.proof("POST", path, body, token, authority=authority(topology), headers=headers, ts=ts)
    if proof is not None:
        headers[PROOF_HEADER] = proof
    if tamper == "body":
        body = body.replace(b'"bound"', b'"BOUND"')
    elif tamper == "path":
        path += "&x=1"
    elif tamper == "host":
        headers["host"] = "another-host.test"
    elif tamper == "session":
        headers["mcp-session-id"] = "another-session"
    with httpx.Client(trust_env=False, timeout=30) as http:
        response = http.post(origin(topology) + path, content=body, headers=headers)
    SENT[proof or ""] = (path, body, headers)
    return response, proof or ""


# What was sent with each proof, so a test can send exactly the same request again.
SENT: dict[str, tuple[str, bytes, dict[str, str]]] = {}


def resend(topology: Topology, proof: str) -> httpx.Response:
    path, body, headers = SENT[proof]
    with httpx.Client(trust_env=False, timeout=30) as http:
        return http.post(origin(topology) + path, content=body, headers=headers)


def challenge(response: httpx.Response) -> str:
    return response.headers.get("www-authenticate", "")


def records_with(topology: Topology, code: str) -> list[dict[str, Any]]:
    return [r for r in topology.pqguard_records() if r.get("reason_code") == code]


def test_a_bound_session_works_and_the_proof_never_reaches_the_server(edge: Topology, keys: Keys) -> None:
    client = BindingClient()
    token = keys.confirmed(client)
    with httpx.Client(trust_env=False, timeout=30) as http:
        binding = client.bind(http, origin(edge), token)
    assert binding.id.startswith("b1.")
    ok, _ = call(edge, token, "run_python", binding=binding)
    assert ok.status_code == 200, ok.text
    # The copied token without the binding key: the confirmed token needs a proof.
    stolen, _ = call(edge, token, "run_python")
    assert stolen.status_code == 401 and 'pqguard_binding="rebind"' in challenge(stolen), stolen.text
    # A guessed key: 401.
    forged = Binding(binding.id, bytes(32), binding.expires_at)
    guessed, _ = call(edge, token, "echo", binding=forged)
    assert guessed.status_code == 401 and 'pqguard_binding="invalid_binding"' in challenge(guessed)
    # The proof is pqguard's: the MCP server never saw one.
    received = edge.mcp_received()
    assert received and not any(r.get("has_binding_proof") for r in received), received[-3:]
    # The edge hop of all this was post-quantum.
    assert edge.edge.stat(f"{edge.edge_listener_prefix}ssl.curves.{PQ_GROUP}") > 0
    assert edge.edge.stat("wasmcustom.pqguard.binding.issued") >= 1


def test_a_thief_cannot_bind_a_copied_token_to_a_key_of_their_own(edge: Topology, keys: Keys) -> None:
    """The README's defaults: a token without cnf binds to nothing, so a thief's own key cannot make
    the thief's requests bound; a confirmed token binds its owner's key only."""
    owner, thief = BindingClient(), BindingClient()
    unconfirmed = keys.token("bob")
    confirmed = keys.confirmed(owner, "carol")
    with httpx.Client(trust_env=False, timeout=30) as http:
        refused = thief.bind_raw(http, origin(edge), unconfirmed)
        assert refused.status_code == 403, refused.text
        assert thief.bind_raw(http, origin(edge), confirmed).status_code == 403
    assert records_with(edge, "binding_unconfirmed_token") and records_with(edge, "binding_key_not_confirmed")
    python, _ = call(edge, unconfirmed, "run_python")
    assert python.status_code == 403, python.text


def test_a_captured_request_is_refused_on_every_worker(edge: Topology, keys: Keys) -> None:
    """One bound request captured and sent again on 24 new connections (Envoy spreads connections
    over its workers): not one is accepted."""
    assert edge.concurrency is not None and edge.concurrency >= 2
    client = BindingClient()
    token = keys.confirmed(client, "dana")
    with httpx.Client(trust_env=False, timeout=30) as http:
        binding = client.bind(http, origin(edge), token)
    first, proof = call(edge, token, binding=binding)
    assert first.status_code == 200, first.text
    before = len(records_with(edge, "binding_replayed"))
    statuses = [resend(edge, proof).status_code for _ in range(24)]
    assert statuses == [401] * 24, statuses
    wait_until(lambda: len(records_with(edge, "binding_replayed")) >= before + 24, timeout=10,
               what="24 replay refusals logged")


def test_a_captured_request_cannot_be_altered_or_sent_to_another_host_or_session(
        edge: Topology, keys: Keys) -> None:
    client = BindingClient()
    token = keys.confirmed(client, "erin")
    with httpx.Client(trust_env=False, timeout=30) as http:
        binding = client.bind(http, origin(edge), token)
    for tamper in ("body", "path", "host", "session"):
        altered, _ = call(edge, token, binding=binding, tamper=tamper)
        assert altered.status_code == 401, (tamper, altered.text)
        assert 'pqguard_binding="invalid_binding"' in challenge(altered)
        assert altered.json()["error"]["code"] == -32001
    assert len(records_with(edge, "binding_bad_mac")) >= 4


def test_proofs_made_in_advance_or_too_late_are_refused(edge: Topology, keys: Keys) -> None:
    client = BindingClient()
    token = keys.confirmed(client, "fay")
    with httpx.Client(trust_env=False, timeout=30) as http:
        binding = client.bind(http, origin(edge), token)
    for offset in (55, 10, -300):
        skewed, _ = call(edge, token, binding=binding, ts=int(time.time()) + offset)
        assert skewed.status_code == 401 and 'pqguard_binding="clock_skew"' in challenge(skewed), (offset, skewed.text)
    assert call(edge, token, binding=binding, ts=int(time.time()) + 2)[0].status_code == 200


def test_a_format_1_proof_is_refused_by_name(edge: Topology, keys: Keys) -> None:
    client = BindingClient()
    token = keys.confirmed(client, "gil")
    with httpx.Client(trust_env=False, timeout=30) as http:
        binding = client.bind(http, origin(edge), token)
    proof = binding.proof("POST", "/mcp", b"{}", token, authority=authority(edge))
    old, _ = call(edge, token, proof=proof.replace("v=2, ", ""))
    assert old.status_code == 401, old.text
    assert any("format 1" in r.get("detail", "") for r in records_with(edge, "binding_malformed"))


@pytest.fixture(scope="module")
def no_binding_edge(request: pytest.FixtureRequest, keys: Keys) -> Topology:
    plain = config(keys, ("b1", SECRET_1))
    del plain["binding"]
    return start_extra_topology(request, plain, label="the topology without a binding section")


@pytest.mark.parametrize("cnf", [
    {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
    {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"},
    {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}},
    {"mlkem#S3-256": "AAAA", "jkt": "AAAA"},
])
def test_a_token_confirmed_for_what_pqguard_cannot_check_is_refused_not_taken_as_bearer(
        edge: Topology, no_binding_edge: Topology, keys: Keys, cnf: dict[str, Any]) -> None:
    token = keys.token("hal", cnf=cnf)
    for topo in (edge, no_binding_edge):
        refused, _ = call(topo, token)
        assert refused.status_code == 401, (cnf, refused.text)
    codes = {r.get("reason_code") for r in edge.pqguard_records()[-20:]}
    assert codes & {"cnf_unsupported", "cnf_certificate_mismatch"}, codes


def test_an_ml_kem_confirmation_where_no_binding_is_configured_is_refused(
        no_binding_edge: Topology, keys: Keys) -> None:
    token = keys.confirmed(BindingClient(), "ivy")
    refused, _ = call(no_binding_edge, token)
    assert refused.status_code == 401, refused.text
    assert records_with(no_binding_edge, "cnf_unsupported")


def bucket_of(proof: str) -> int:
    """The replay bucket of a proof, as the README gives it: the first two bytes of its MAC, modulo 4096."""
    mac = b64d(dict(p.split("=", 1) for p in proof.split(", "))["mac"])
    return int.from_bytes(mac[:2], "big") % 4096


def test_one_binding_cannot_flood_the_replay_set_and_a_full_set_answers_503(
        request: pytest.FixtureRequest, keys: Keys) -> None:
    """A flooding binding gets 429 beyond its quota (per worker: seven proofs on two workers with a
    quota of three); a replay set with no room answers 503; both with Retry-After, and neither request
    reaches the server."""
    cfg = config(keys, ("b1", SECRET_1))
    cfg["binding"].update(replay_per_binding=3, replay_capacity=1)
    topo = start_extra_topology(request, cfg, label="the small replay set topology")
    client = BindingClient()
    token = keys.confirmed(client, "max")
    with httpx.Client(trust_env=False, timeout=30) as http:
        binding = client.bind(http, origin(topo), token)
    # Room for one live proof per bucket: two proofs in one bucket, the second finds it full.
    first, proof = call(topo, token, binding=binding)
    assert first.status_code == 200, first.text
    target = bucket_of(proof)
    path, body, headers = SENT[proof]
    for _ in range(200_000):
        twin = binding.proof("POST", path, body, token, authority=authority(topo), headers=headers)
        if bucket_of(twin) == target:
            break
    else:
        pytest.fail("no proof fell in the same bucket")
    with httpx.Client(trust_env=False, timeout=30) as http:
        full = http.post(origin(topo) + path, content=body, headers={**headers, PROOF_HEADER: twin})
    assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1, (full.status_code, full.text)
    assert records_with(topo, "binding_busy")
    # Quota: seven proofs on two workers with three each: at least one 429.
    statuses = [call(topo, token, binding=binding)[0] for _ in range(7)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    assert {r.status_code for r in statuses} <= {200, 429, 503}, [r.status_code for r in statuses]
    assert records_with(topo, "binding_quota")


def test_get_and_delete_can_demand_a_binding(edge: Topology, keys: Keys) -> None:
    """``streams-bound`` demands a binding for GET (the server's stream) and DELETE (ending a
    session): without one pqguard refuses; with one the request reaches the MCP server."""
    client = BindingClient()
    token = keys.confirmed(client, "jo")
    unconfirmed = keys.token("kim")
    with httpx.Client(trust_env=False, timeout=30) as http:
        binding = client.bind(http, origin(edge), token)
        for method in ("GET", "DELETE"):
            headers = {"authorization": f"Bearer {unconfirmed}", "accept": "text/event-stream",
                       "mcp-session-id": "no-such-session", "mcp-protocol-version": "2025-11-25"}
            refused = http.request(method, origin(edge) + "/mcp", headers=headers)
            assert refused.status_code == 403, (method, refused.text)
            headers["authorization"] = f"Bearer {token}"
            headers[PROOF_HEADER] = binding.proof(method, "/mcp", b"", token, authority=authority(edge),
                                                  headers=headers)
            reached = http.request(method, origin(edge) + "/mcp", headers=headers)
            # The server's own answer for an unknown session: pqguard let it through.
            assert reached.status_code not in (401, 403), (method, reached.status_code, reached.text)


def test_a_session_ticket_replaces_the_token_only_with_a_proof_of_its_binding(edge: Topology, keys: Keys) -> None:
    """The bind answer carries a sealed ticket; a request may send it with a proof over it instead of
    the 4.6 KB token. A thief holding the ticket (or the token) without the binding key gets
    nothing; the ticket never reaches the MCP server, the verified claims do."""
    client = BindingClient()
    token = keys.confirmed(client, "lee")
    with httpx.Client(trust_env=False, timeout=30) as http:
        binding = client.bind(http, origin(edge), token)
        other = client.bind(http, origin(edge), token)
    ticket = binding.ticket
    assert ticket is not None and ticket.startswith("t1.") and "lee" not in ticket
    assert len(ticket) < len(token) // 3, (len(ticket), len(token))
    ok, proof = call(edge, ticket, "run_python", binding=binding, ticket=ticket)
    assert ok.status_code == 200, ok.text
    received = edge.mcp_received()[-1]
    assert received["method"] == "tools/call" and not received["has_ticket"] and not received["has_binding_proof"]
    assert received["payload_sub"] == "lee" and not received["has_authorization"], received
    # Replayed on 24 new connections: refused on every worker.
    assert [resend(edge, proof).status_code for _ in range(24)] == [401] * 24
    # Without a proof, with a proof made for the token, with another binding's proof, altered.
    bare, _ = call(edge, ticket, ticket=ticket)
    assert bare.status_code == 401, bare.text
    token_proof = binding.proof("POST", "/mcp", b"{}", token, authority=authority(edge))
    assert call(edge, ticket, ticket=ticket, proof=token_proof)[0].status_code == 401
    assert call(edge, ticket, binding=other, ticket=ticket)[0].status_code == 401
    altered = ticket[:-4] + ("AAAA" if not ticket.endswith("AAAA") else "BBBB")
    assert call(edge, altered, binding=binding, ticket=altered)[0].status_code == 401
    assert len(records_with(edge, "binding_ticket")) >= 3


def test_an_expired_binding_asks_for_a_new_one(request: pytest.FixtureRequest, keys: Keys) -> None:
    topo = start_extra_topology(request, config(keys, ("b1", SECRET_1), ttl=2), label="the short binding topology")
    client = BindingClient()
    token = keys.confirmed(client)
    with httpx.Client(trust_env=False, timeout=30) as http:
        binding = client.bind(http, origin(topo), token)
        assert call(topo, token, binding=binding)[0].status_code == 200
        wait_until(lambda: time.time() > binding.expires_at + 1, timeout=10, interval=0.2, what="the binding to expire")
        expired, _ = call(topo, token, binding=binding)
        assert expired.status_code == 401 and 'pqguard_binding="rebind"' in challenge(expired), expired.text
        fresh = client.bind(http, origin(topo), token)
    assert call(topo, token, binding=fresh)[0].status_code == 200


def test_two_envoys_with_the_same_secret_accept_each_others_bindings(
        request: pytest.FixtureRequest, edge: Topology, keys: Keys) -> None:
    other = start_extra_topology(request, config(keys, ("b1", SECRET_1)), label="the second Envoy")
    stranger = start_extra_topology(request, config(keys, ("b1", SECRET_2)), label="an Envoy with another secret")
    client = BindingClient()
    token = keys.confirmed(client)
    with httpx.Client(trust_env=False, timeout=30) as http:
        binding = client.bind(http, origin(edge), token)
    there, _ = call(other, token, binding=binding)
    assert there.status_code == 200, there.text
    elsewhere, _ = call(stranger, token, binding=binding)
    assert elsewhere.status_code == 401, elsewhere.text


def test_the_binding_secret_rotates_under_load_without_losing_a_request(
        request: pytest.FixtureRequest, keys: Keys) -> None:
    topo = start_extra_topology(request, config(keys, ("b1", SECRET_1)), plugin_config_via_ecds=True,
                                plugin_config_as_string=False, label="the binding rotation topology")
    client = BindingClient()
    token = keys.confirmed(client)
    with httpx.Client(trust_env=False, timeout=30) as http:
        old = client.bind(http, origin(topo), token)
    failures: list[str] = []
    done = {"n": 0}
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            response, _ = call(topo, token, binding=old)
            if response.status_code != 200:
                failures.append(f"{response.status_code}: {response.text[:200]}")
            done["n"] += 1

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        wait_until(lambda: done["n"] >= 5, timeout=30, what="bound traffic")
        reloads = topo.edge.stat("extension_config_discovery.http_filter.pqguard.config_reload")
        # The new secret first (it binds from now on), the old one still verifies.
        topo.push_plugin_config(config(keys, ("b2", SECRET_2), ("b1", SECRET_1)))
        wait_until(lambda: topo.edge.stat("extension_config_discovery.http_filter.pqguard.config_reload") > reloads,
                   timeout=30, what="the rotated secrets applied")
        mark = done["n"]
        wait_until(lambda: done["n"] >= mark + 10, timeout=30, what="bound traffic after the rotation")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert failures == [], failures
    with httpx.Client(trust_env=False, timeout=30) as http:
        new = client.bind(http, origin(topo), token)
    assert new.id.startswith("b2."), new.id
    # The old secret retired: its bindings are told to bind again.
    reloads = topo.edge.stat("extension_config_discovery.http_filter.pqguard.config_reload")
    topo.push_plugin_config(config(keys, ("b2", SECRET_2)))
    wait_until(lambda: topo.edge.stat("extension_config_discovery.http_filter.pqguard.config_reload") > reloads,
               timeout=30, what="the old secret retired")
    wait_until(lambda: call(topo, token, binding=old)[0].status_code == 401, timeout=20, interval=0.2,
               what="the retired secret's binding refused")
    retired, _ = call(topo, token, binding=old)
    assert 'pqguard_binding="rebind"' in challenge(retired)
    assert call(topo, token, binding=new)[0].status_code == 200


def test_the_command_line_client_binds_and_proves_through_envoy(edge: Topology, keys: Keys, tmp_path: Path) -> None:
    """``pqguard bind key|open|proof`` (the core's own client code) with plain HTTP in between, and a
    token confirmed for the CLI's key."""
    key_file = tmp_path / "client.json"
    run_cli("bind", "key", "--out", str(key_file))
    assert key_file.stat().st_mode & 0o777 == 0o600
    client = json.loads(key_file.read_text())
    token = keys.token("dave", cnf=client["cnf"])
    (tmp_path / "token").write_text(token + "\n")
    with httpx.Client(trust_env=False, timeout=30) as http:
        answer = http.post(origin(edge) + "/.well-known/pqguard/bind", content=json.dumps({"ek": client["ek"]}),
                           headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    (tmp_path / "answer.json").write_text(answer.text)
    (tmp_path / "binding.json").write_text(
        run_cli("bind", "open", "--key", str(key_file), str(tmp_path / "answer.json")))
    rpc_id = unique("cli-bind")
    params = {"name": "echo", "arguments": {"text": "from the command line"}}
    body = json.dumps(modern_message("tools/call", params, rpc_id)).encode()
    (tmp_path / "body.json").write_bytes(body)
    path = f"/mcp?case={rpc_id}"
    mirrored = modern_headers("tools/call", params)
    header = run_cli("bind", "proof", "--binding", str(tmp_path / "binding.json"), "--token-file",
                     str(tmp_path / "token"), "--path", path, "--authority", authority(edge),
                     "--protocol-version", mirrored["mcp-protocol-version"], "--mcp-method", mirrored["mcp-method"],
                     "--mcp-name", mirrored["mcp-name"], str(tmp_path / "body.json")).strip()
    headers = {**mirrored, "authorization": f"Bearer {token}", PROOF_HEADER: header}
    with httpx.Client(trust_env=False, timeout=30) as http:
        ok = http.post(origin(edge) + path, content=body, headers=headers)
        assert ok.status_code == 200, ok.text
        bare = http.post(origin(edge) + path, content=body,
                         headers={**modern_headers("tools/call", params), "authorization": f"Bearer {token}"})
    assert bare.status_code == 401 and 'pqguard_binding="rebind"' in challenge(bare)


# -- pqguard proxy: any MCP client, unchanged ------------------------------------------------------


def proxy_key(directory: Path) -> tuple[Path, dict[str, Any]]:
    """A key from ``pqguard bind key`` for the proxy, and its JSON (``cnf`` for the token)."""
    key_file = directory / "proxy-key.json"
    if not key_file.exists():
        run_cli("bind", "key", "--out", str(key_file))
    return key_file, json.loads(key_file.read_text())


class Proxy:
    """``pqguard proxy`` in front of ``topology``'s edge (TLS straight to the edge's listener), with
    the ML-KEM key its token confirms."""

    def __init__(self, topology: Topology, keys: Keys, sub: str, directory: Path) -> None:
        assert topology.pki is not None
        (self.port,) = free_ports(1)
        key_file, key = proxy_key(directory)
        self.token = keys.token(sub, cnf=key["cnf"])
        token_file = directory / "proxy-token"
        token_file.write_text(self.token + "\n")
        self.process = ManagedProcess("pqguard-proxy", [
            str(pqguard_cli()), "proxy", "--listen", f"127.0.0.1:{self.port}",
            "--upstream", f"https://127.0.0.1:{topology.ports.edge}/mcp", "--token-file", str(token_file),
            "--ca", str(topology.pki.ca_cert), "--server-name", topology.pki.edge_name, "--key", str(key_file),
        ], directory / "proxy.log")

    def __enter__(self) -> Proxy:
        self.process.start()
        wait_until(lambda: "listening on" in self.log(), timeout=30, what="pqguard proxy to listen",
                   on_timeout=self.log)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def log(self) -> str:
        self.process.check_running()
        return self.process.log_path.read_text(errors="replace")

    def bindings(self) -> int:
        return self.log().count("pqguard proxy: bound as ")

    def ticket_bindings(self) -> int:
        return self.log().count(", with a session ticket")


async def sdk_session(url: str, *, pause: float = 0.0) -> tuple[list[str], str | None, str | None]:
    """The official MCP SDK client: tools/list, echo, run_python (after ``pause`` seconds)."""
    async with connect(url) as client:
        tools = await client.list_tools()
        echoed = await client.call_tool("echo", {"text": "through the proxy"})
        if pause:
            await anyio.sleep(pause)
        python = await client.call_tool("run_python", {"code": "1+1"})
        first = lambda r: r.content[0].text if r.content and hasattr(r.content[0], "text") else None  # noqa: E731
        return [t.name for t in tools.tools], first(echoed), first(python)


def test_the_mcp_sdk_client_unchanged_behind_pqguard_proxy(edge: Topology, keys: Keys, tmp_path: Path) -> None:
    listener_pq = f"{edge.edge_listener_prefix}ssl.curves.{PQ_GROUP}"
    before = edge.edge.stat(listener_pq)
    with Proxy(edge, keys, "erin", tmp_path) as proxy:
        token = proxy.token
        tools, echoed, python = anyio.run(sdk_session, proxy.url)
        assert proxy.bindings() == 1 and proxy.ticket_bindings() == 1, proxy.log()
    assert "run_python" in tools and echoed == "through the proxy", (tools, echoed)
    # run_python demands a bound request over a hybrid post-quantum key exchange: the proxy gave both.
    assert python is not None and "would run" in python, python
    assert edge.edge.stat(listener_pq) > before, "the proxy's hop negotiated X25519MLKEM768"
    # The same token straight through the client Envoy (PQ TLS, no binding): refused.
    direct, _ = call(edge, token, "run_python")
    assert direct.status_code == 401, direct.text


def test_pqguard_proxy_binds_again_when_its_binding_expires(
        request: pytest.FixtureRequest, keys: Keys, tmp_path: Path) -> None:
    topo = start_extra_topology(request, config(keys, ("b1", SECRET_1), ttl=3), label="the proxy rebind topology")
    with Proxy(topo, keys, "frank", tmp_path) as proxy:
        tools, echoed, python = anyio.run(lambda: sdk_session(proxy.url, pause=4.5))
        assert proxy.bindings() == 2, proxy.log()
    assert echoed == "through the proxy" and python is not None and "would run" in python, (echoed, python)


def test_pqguard_proxy_serves_only_its_own_loopback_origin(edge: Topology, keys: Keys, tmp_path: Path) -> None:
    """A web page that reaches the proxy through DNS rebinding (another Host) or posts to it from
    another site (Origin) gets 403; the proxy never adds the token for it."""
    body = json.dumps(modern_message("tools/list", {}, "origin-1")).encode()
    with Proxy(edge, keys, "gus", tmp_path) as proxy, httpx.Client(trust_env=False, timeout=30) as http:
        base = modern_headers("tools/list", {})
        same = http.post(proxy.url, content=body, headers={**base, "origin": f"http://127.0.0.1:{proxy.port}"})
        assert same.status_code == 200, same.text
        for extra in ({"host": f"attacker.example:{proxy.port}"}, {"origin": "https://attacker.example"},
                      {"host": f"localhost:{proxy.port}", "origin": "null"}):
            refused = http.post(proxy.url, content=body, headers={**base, **extra})
            assert refused.status_code == 403, (extra, refused.text)
        assert proxy.bindings() == 1, proxy.log()


def test_pqguard_proxy_refuses_a_non_loopback_listener_unless_asked(edge: Topology, keys: Keys, tmp_path: Path) -> None:
    key_file, key = proxy_key(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(keys.token("hank", cnf=key["cnf"]))
    (port,) = free_ports(1)
    assert edge.pki is not None
    refused = subprocess.run([str(pqguard_cli()), "proxy", "--listen", f"0.0.0.0:{port}", "--upstream",
                              f"https://127.0.0.1:{edge.ports.edge}/mcp", "--token-file", str(token_file),
                              "--ca", str(edge.pki.ca_cert), "--key", str(key_file)],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2, refused
    assert "not a loopback address" in refused.stderr and "--allow-remote" in refused.stderr
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "nothing listens"
