"""ML-KEM bound sessions through real Envoy, with an independent client (``harness.binding``: kyber-py
for ML-KEM-768, the standard library for HMAC-SHA3-256), over X25519MLKEM768 from the client Envoy.

A stolen token without the binding key is refused; a replayed, altered or late proof is refused with
a challenge the client can act on; a token confirmed for one ML-KEM key binds that key only; two
Envoys with the same binding secret accept each other's bindings; the secret rotates under load
without losing a request.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from conftest import start_extra_topology
from harness import Topology, wait_until
from harness.binding import PROOF_HEADER, Binding, BindingClient, b64e, thumbprint
from harness.calls import modern_headers, modern_message, unique
from harness.mcp_session import connect
from harness.ports import free_ports
from harness.processes import ManagedProcess
from harness.tokens import Issuer, SigningKey, pqguard_cli, run_cli

ISS = "https://issuer.test"
AUD = "https://mcp.test/mcp"
SECRET_1 = b64e(b"binding secret one, 32 bytes or more!")
SECRET_2 = b64e(b"binding secret two, 32 bytes or more!")
PQ_GROUP = "X25519MLKEM768"


class Keys:
    def __init__(self, directory: Path) -> None:
        self.issuer = Issuer(directory, ISS, AUD)
        self.key: SigningKey = self.issuer.keygen("ML-DSA-65", "bind-65")
        self.jwks = self.issuer.jwks(self.key)

    def token(self, sub: str = "alice", **claims: Any) -> str:
        return self.issuer.mint(self.key, sub=sub, scope="tools:call", ttl=600, claims=claims or None)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("binding-keys"))


def config(keys: Keys, *secrets: tuple[str, str], ttl: int = 600) -> dict[str, Any]:
    return {
        "auth": {"audience": AUD, "issuers": [ISS], "jwks": keys.jwks},
        "binding": {"secrets": [{"kid": kid, "secret": s} for kid, s in secrets], "ttl_seconds": ttl,
                    "window_seconds": 30},
        "policy": {"rules": [
            {"name": "callers", "effect": "allow",
             "match": {"methods": ["initialize", "notifications/initialized", "ping", "tools/call", "tools/list"]},
             "when": {"authenticated": True}},
            {"name": "python-bound", "effect": "require", "match": {"tools": ["run_python"]},
             "when": {"bound": True, "min_kex": "hybrid-pq"}},
        ]},
    }


@pytest.fixture(scope="module")
def edge(request: pytest.FixtureRequest, keys: Keys) -> Topology:
    return start_extra_topology(request, config(keys, ("b1", SECRET_1)), label="the binding topology")


def origin(topology: Topology) -> str:
    return topology.pq_url.rsplit("/mcp", 1)[0]


def call(topology: Topology, token: str, tool: str = "echo", *, binding: Binding | None = None,
         tamper: str | None = None, proof: str | None = None) -> tuple[httpx.Response, str]:
    """POST one tools/call; with ``binding``, a proof over exactly what is sent (``tamper`` changes
    the body, method or path after the proof was made). Returns the answer and the proof used."""
    rpc_id = unique("bind")
    arguments = {"code": "1+1"} if tool == "run_python" else {"text": "bound"}
    params = {"name": tool, "arguments": arguments}
    body = json.dumps(modern_message("tools/call", params, rpc_id)).encode()
    path = f"/mcp?case={rpc_id}"
    headers = {**modern_headers("tools/call", params), "authorization": f"Bearer {token}"}
    if binding is not None:
        proof = binding.proof("POST", path, body, token)
    if proof is not None:
        headers[PROOF_HEADER] = proof
    if tamper == "body":
        body = body.replace(b'"bound"', b'"BOUND"')
    elif tamper == "path":
        path += "&x=1"
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


def test_a_bound_session_works_and_a_stolen_token_alone_does_not_satisfy_the_rule(
        edge: Topology, keys: Keys) -> None:
    token = keys.token()
    client = BindingClient()
    with httpx.Client(trust_env=False, timeout=30) as http:
        binding = client.bind(http, origin(edge), token)
    assert binding.id.startswith("b1.")
    ok, _ = call(edge, token, "run_python", binding=binding)
    assert ok.status_code == 200, ok.text
    # The same token without the binding key: the rule that demands binding refuses it.
    stolen, _ = call(edge, token, "run_python")
    assert stolen.status_code == 403, stolen.text
    # A guessed key: 401, and the proof never reaches the server.
    forged = Binding(binding.id, bytes(32), binding.expires_at)
    guessed, _ = call(edge, token, "echo", binding=forged)
    assert guessed.status_code == 401 and 'pqguard_binding="invalid_binding"' in challenge(guessed)
    # The edge hop of all this was post-quantum.
    assert edge.edge.stat(f"{edge.edge_listener_prefix}ssl.curves.{PQ_GROUP}") > 0
    issued = edge.edge.stat("wasmcustom.pqguard.binding.issued")
    assert issued >= 1


def test_replayed_or_altered_proofs_are_refused(request: pytest.FixtureRequest, keys: Keys) -> None:
    # One worker: the replay cache is per worker (README, "Bound sessions"), and a replay sent on a
    # new connection may land on another worker of a multi-worker Envoy.
    edge = start_extra_topology(request, config(keys, ("b1", SECRET_1)), concurrency=1,
                                label="the one-worker binding topology")
    token = keys.token()
    client = BindingClient()
    with httpx.Client(trust_env=False, timeout=30) as http:
        binding = client.bind(http, origin(edge), token)
    first, proof = call(edge, token, binding=binding)
    assert first.status_code == 200, first.text
    # Exactly the same request again (a captured one, replayed): refused.
    again = resend(edge, proof)
    assert again.status_code == 401, again.text
    assert 'pqguard_binding="invalid_binding"' in challenge(again)
    replayed = [r for r in edge.pqguard_records() if r.get("reason_code") == "binding_replayed"]
    assert replayed, "the refusal names the replay"
    for tamper in ("body", "path"):
        altered, _ = call(edge, token, binding=binding, tamper=tamper)
        assert altered.status_code == 401, (tamper, altered.text)
        assert 'pqguard_binding="invalid_binding"' in challenge(altered)
        assert altered.json()["error"]["code"] == -32001
    # A clock 5 minutes off: the client is told.
    late = binding.proof("POST", "/mcp?case=late", b"{}", token, ts=int(time.time()) - 300)
    skewed, _ = call(edge, token, proof=late)
    assert skewed.status_code == 401 and 'pqguard_binding="clock_skew"' in challenge(skewed), skewed.text


def test_a_confirmed_token_binds_its_own_key_only_and_needs_a_proof(edge: Topology, keys: Keys) -> None:
    mine, thief = BindingClient(), BindingClient()
    token = keys.token("carol", cnf={"mlkem#S3-256": thumbprint(mine.ek)})
    with httpx.Client(trust_env=False, timeout=30) as http:
        refused = thief.bind_raw(http, origin(edge), token)
        assert refused.status_code == 403, refused.text
        binding = mine.bind(http, origin(edge), token)
    bare, _ = call(edge, token)
    assert bare.status_code == 401 and 'pqguard_binding="rebind"' in challenge(bare), bare.text
    ok, _ = call(edge, token, binding=binding)
    assert ok.status_code == 200, ok.text


def test_an_expired_binding_asks_for_a_new_one(request: pytest.FixtureRequest, keys: Keys) -> None:
    topo = start_extra_topology(request, config(keys, ("b1", SECRET_1), ttl=2), label="the short binding topology")
    token = keys.token()
    client = BindingClient()
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
    token = keys.token()
    client = BindingClient()
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
    token = keys.token()
    client = BindingClient()
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
    key_file.write_text(run_cli("bind", "key"))
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
    header = run_cli("bind", "proof", "--binding", str(tmp_path / "binding.json"), "--token-file",
                     str(tmp_path / "token"), "--path", path, str(tmp_path / "body.json")).strip()
    headers = {**modern_headers("tools/call", params), "authorization": f"Bearer {token}", PROOF_HEADER: header}
    with httpx.Client(trust_env=False, timeout=30) as http:
        ok = http.post(origin(edge) + path, content=body, headers=headers)
        assert ok.status_code == 200, ok.text
        bare = http.post(origin(edge) + path, content=body,
                         headers={**modern_headers("tools/call", params), "authorization": f"Bearer {token}"})
    assert bare.status_code == 401 and 'pqguard_binding="rebind"' in challenge(bare)


# -- pqguard proxy: any MCP client, unchanged ------------------------------------------------------


class Proxy:
    """``pqguard proxy`` in front of ``topology``'s edge (TLS straight to the edge's listener)."""

    def __init__(self, topology: Topology, token: str, directory: Path) -> None:
        assert topology.pki is not None
        (self.port,) = free_ports(1)
        token_file = directory / "proxy-token"
        token_file.write_text(token + "\n")
        self.process = ManagedProcess("pqguard-proxy", [
            str(pqguard_cli()), "proxy", "--listen", f"127.0.0.1:{self.port}",
            "--upstream", f"https://127.0.0.1:{topology.ports.edge}/mcp", "--token-file", str(token_file),
            "--ca", str(topology.pki.ca_cert), "--server-name", topology.pki.edge_name,
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
    token = keys.token("erin")
    with Proxy(edge, token, tmp_path) as proxy:
        tools, echoed, python = anyio.run(sdk_session, proxy.url)
        assert proxy.bindings() == 1, proxy.log()
    assert "run_python" in tools and echoed == "through the proxy", (tools, echoed)
    # run_python demands a bound request over a hybrid post-quantum key exchange: the proxy gave both.
    assert python is not None and "would run" in python, python
    assert edge.edge.stat(listener_pq) > before, "the proxy's hop negotiated X25519MLKEM768"
    # The same token straight through the client Envoy (PQ TLS, no binding): run_python refused.
    direct, _ = call(edge, token, "run_python")
    assert direct.status_code == 403, direct.text


def test_pqguard_proxy_binds_again_when_its_binding_expires(
        request: pytest.FixtureRequest, keys: Keys, tmp_path: Path) -> None:
    topo = start_extra_topology(request, config(keys, ("b1", SECRET_1), ttl=3), label="the proxy rebind topology")
    with Proxy(topo, keys.token("frank"), tmp_path) as proxy:
        tools, echoed, python = anyio.run(lambda: sdk_session(proxy.url, pause=4.5))
        assert proxy.bindings() == 2, proxy.log()
    assert echoed == "through the proxy" and python is not None and "would run" in python, (echoed, python)
