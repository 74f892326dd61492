"""pqguard soak: real Envoy with pqguard under steady load for minutes, while the token keys rotate
and the plugin configuration is pushed again and again.

    .venv/bin/python tests/soak.py [--minutes 10] [--segment-seconds 60] [--json FILE]

The edge runs pqguard with tokens from a remote JWKS, a policy, and an audit trail shipped to a
collector; its configuration comes through Envoy's file-based extension config discovery. Load is
open loop (a fixed request rate, latency counted from each request's scheduled time) at half of the
rate this machine saturates at (measured first, closed loop), through the post-quantum client Envoy:
``tools/call echo`` with a fresh ML-DSA-65 token, each answer checked.

At every segment boundary (60 s by default):
- key rotation: a new key is published next to the current one, every VM must install it, tokens are
  minted with it from then on, and the key before the current one is retired;
- a configuration push: a changed plugin configuration (a reload, not a restart).

The report gives, per segment: requests, failures by cause, p50 and p99 latency, Envoy's RSS and the
VM's linear memory; at the end the audit log is verified and its decision records counted against
the requests sent. The exit status is non-zero if a valid request failed, the audit trail does not
verify or misses a request, or Envoy's RSS grew 5% or more from the end of the first segment.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402

from harness import Topology, wait_until  # noqa: E402
from harness.calls import modern_headers, modern_message  # noqa: E402
from harness.collector import Collector  # noqa: E402
from harness.envoy import static_cluster_yaml  # noqa: E402
from harness.jwks_server import JwksServer  # noqa: E402
from harness.tokens import Issuer, SigningKey, pqguard_cli, run_cli  # noqa: E402

ISS = "https://issuer.soak"
AUD = "https://mcp.soak/mcp"
AUDIT_PREFIX = "pqguard.audit "
RELOAD = "extension_config_discovery.http_filter.pqguard.config_reload"
REJECTED = "extension_config_discovery.http_filter.pqguard.config_fail"
RULES = [
    {"name": "session", "effect": "allow", "match": {"methods": ["initialize", "tools/list", "ping"]},
     "when": {"authenticated": True}},
    {"name": "python-needs-pq", "effect": "require", "match": {"tools": ["run_python"]},
     "when": {"min_kex": "hybrid-pq", "token_algs": ["ML-DSA-65"]}},
    {"name": "readers", "effect": "allow", "match": {"methods": ["tools/call"], "tools": ["echo", "read_*"]},
     "when": {"scopes": ["tools:read"]}},
]


def plugin_config(generation: int, audit_key: dict[str, Any], jwks_authority: str) -> dict[str, Any]:
    """The configuration pushed at ``generation``: the same decisions, different settings."""
    return {
        "auth": {"audience": AUD, "issuers": [ISS],
                 "remote_jwks": {"cluster": "jwks", "authority": jwks_authority, "path": "/.well-known/jwks.json",
                                 "refresh_seconds": 5, "timeout_ms": 1000},
                 "cache_capacity": 256 + generation},
        "policy": {"rules": RULES, "flag_seconds": 600 + generation},
        "request_log": "refused" if generation % 2 else "all",
        "audit": {"signing_key": audit_key, "checkpoint_every": 200, "checkpoint_seconds": 5,
                  "collector": {"cluster": "audit", "authority": "audit.soak", "path": "/v1/audit",
                                "flush_ms": 500, "max_batch": 500, "queue_capacity": 100000}},
    }


@dataclass
class Sample:
    segment: int
    latency_ms: float
    cause: str | None  # None: a valid answer


@dataclass
class Load:
    """Open-loop load: requests scheduled at a fixed rate, served by a pool of client threads."""

    url: str
    rate: float
    token: str
    threads: int = 16
    segment: int = 0
    samples: list[Sample] = field(default_factory=list)
    sent: int = 0

    def __post_init__(self) -> None:
        self._slots: queue.Queue[float | None] = queue.Queue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(self.threads)]
        self._clock = threading.Thread(target=self._schedule, daemon=True)

    def start(self) -> None:
        for w in self._workers:
            w.start()
        self._clock.start()

    def stop(self) -> None:
        self._stop.set()
        self._clock.join(timeout=10)
        for _ in self._workers:
            self._slots.put(None)
        for w in self._workers:
            w.join(timeout=60)

    def switch(self, *, token: str | None = None, segment: int | None = None) -> None:
        with self._lock:
            if token is not None:
                self.token = token
            if segment is not None:
                self.segment = segment

    def _schedule(self) -> None:
        start, n = time.monotonic(), 0
        while not self._stop.is_set():
            due = start + n / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
                if self._stop.is_set():
                    return
            self._slots.put(due)
            n += 1

    def _work(self, index: int) -> None:
        n = 0
        with httpx.Client(trust_env=False, timeout=30.0) as http:
            while True:
                due = self._slots.get()
                if due is None:
                    return
                n += 1
                with self._lock:
                    token, segment = self.token, self.segment
                    self.sent += 1
                text = f"soak {index}-{n}"
                params = {"name": "echo", "arguments": {"text": text}}
                rpc_id = f"soak-{index}-{n}"
                headers = {**modern_headers("tools/call", params), "authorization": f"Bearer {token}"}
                cause: str | None
                try:
                    r = http.post(self.url, content=json.dumps(modern_message("tools/call", params, rpc_id)),
                                  headers=headers)
                    if r.status_code != 200:
                        cause = f"HTTP {r.status_code}"
                    else:
                        answer = r.json()
                        got = answer.get("result", {}).get("content", [{}])[0].get("text")
                        cause = None if got == text else f"wrong answer: {str(answer)[:80]}"
                except Exception as err:  # noqa: BLE001 (every failure of a valid request counts)
                    cause = type(err).__name__
                latency = (time.monotonic() - due) * 1000
                with self._lock:
                    self.samples.append(Sample(segment, latency, cause))


def saturation_rps(url: str, token: str, seconds: float = 6.0, threads: int = 16) -> float:
    """Closed loop: as many valid requests as ``threads`` clients get through in ``seconds``."""
    done = Counter()
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        n = 0
        with httpx.Client(trust_env=False, timeout=30.0) as http:
            while time.monotonic() < stop:
                n += 1
                params = {"name": "echo", "arguments": {"text": f"probe {i}-{n}"}}
                r = http.post(url, content=json.dumps(modern_message("tools/call", params, f"probe-{i}-{n}")),
                              headers={**modern_headers("tools/call", params), "authorization": f"Bearer {token}"})
                with lock:
                    done["ok" if r.status_code == 200 else "failed"] += 1

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if done["failed"]:
        raise RuntimeError(f"the saturation probe saw failures: {done}")
    return done["ok"] / seconds


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.issuer = Issuer(work / "keys", ISS, AUD)
        self.keys: list[SigningKey] = [self.issuer.keygen("ML-DSA-65", "soak-0")]
        self.audit_private = json.loads(run_cli("keygen", "--alg", "ML-DSA-65", "--kid", "soak-audit"))
        key_file = work / "audit.jwk"
        key_file.write_text(json.dumps(self.audit_private))
        self.audit_jwks = work / "audit-jwks.json"
        self.audit_jwks.write_text(run_cli("jwks", str(key_file)))
        self.jwks = JwksServer().start()
        self.jwks.publish(self.issuer.jwks(self.keys[0]), cache_control="max-age=5")
        self.collector = Collector()
        self.generation = 0
        self.topo = Topology(
            plugin_config=plugin_config(0, self.audit_private, self.jwks.authority),
            plugin_config_via_ecds=True,
            extra_clusters=self.jwks.cluster_yaml("jwks") + static_cluster_yaml("audit", self.collector.port),
        )

    def token(self) -> str:
        return self.issuer.mint(self.keys[-1], sub="soak", scope="tools:read", ttl=3600)

    def vm_threads(self) -> set[int]:
        return self.topo.pqguard_vm_threads()

    def rotate(self) -> float:
        """Publish a new key next to the current one, retire the one before; returns the seconds
        until every VM had the new set."""
        began = time.monotonic()
        new = self.issuer.keygen("ML-DSA-65", f"soak-{len(self.keys)}")
        self.keys.append(new)
        live = self.keys[-2:]
        kids = sorted(k.kid for k in live)
        mark = self.topo.edge_log_mark()
        self.jwks.publish(self.issuer.jwks(*live), cache_control="max-age=5")
        threads = self.vm_threads()

        def installed() -> bool:
            have = {r["thread"] for r in self.topo.pqguard_jwks_records(mark)
                    if r.get("outcome") == "installed" and sorted(r.get("kids", [])) == kids}
            return threads <= have

        wait_until(installed, timeout=60, interval=0.5, what=f"every VM to install {kids}")
        return time.monotonic() - began

    def push(self) -> float:
        began = time.monotonic()
        before = self.topo.edge.stat(RELOAD)
        self.generation += 1
        self.topo.push_plugin_config(plugin_config(self.generation, self.audit_private, self.jwks.authority))
        wait_until(lambda: self.topo.edge.stat(RELOAD) > before, timeout=60, interval=0.2,
                   what=f"configuration {self.generation} applied")
        return time.monotonic() - began

    def run(self) -> dict[str, Any]:
        a = self.args
        self.topo.start()
        pid = self.topo.edge.pid
        assert pid is not None
        url = self.topo.pq_url
        wait_until(lambda: self.topo.pqguard_jwks_records() and self.probe_ok(url), timeout=60, interval=0.5,
                   what="the first key set installed")
        saturation = saturation_rps(url, self.token())
        rate = a.rate or max(5.0, saturation / 2)
        load = Load(url, rate, self.token())
        segments: list[dict[str, Any]] = []
        started = time.monotonic()
        load.start()
        for segment in range(a.segments):
            end = started + (segment + 1) * a.segment_seconds
            time.sleep(max(0.0, end - time.monotonic()))
            row: dict[str, Any] = {"segment": segment + 1, "rss_mib": round(rss_mib(pid), 1),
                                   "vm_memory_mib": round(self.topo.edge.stat("wasmcustom.pqguard.vm.memory_bytes")
                                                          / 2**20, 1)}
            if segment + 1 < a.segments:
                # Boundary: the next segment's requests are counted from here.
                load.switch(segment=segment + 1)
                row["rotation_s"] = round(self.rotate(), 2)
                load.switch(token=self.token())
                row["push_s"] = round(self.push(), 2)
            segments.append(row)
        load.switch(segment=a.segments)
        load.stop()
        sent = load.sent
        for row in segments:
            mine = [s for s in load.samples if s.segment == row["segment"] - 1]
            lat = [s.latency_ms for s in mine]
            row.update({
                "requests": len(mine),
                "failures": dict(Counter(s.cause for s in mine if s.cause)),
                "p50_ms": round(percentile(lat, 0.50), 2),
                "p99_ms": round(percentile(lat, 0.99), 2),
            })
        tail = [s for s in load.samples if s.segment >= a.segments]
        failures = Counter(s.cause for s in load.samples if s.cause)
        rejected = self.topo.edge.stat(REJECTED)
        audit = self.check_audit(started_requests=sent)
        first, last = segments[0]["rss_mib"], segments[-1]["rss_mib"]
        report = {
            "minutes": round(a.segments * a.segment_seconds / 60, 2),
            "saturation_rps": round(saturation, 1),
            "rate_rps": round(rate, 1),
            "requests": len(load.samples),
            "failures": dict(failures),
            "p50_ms": round(percentile([s.latency_ms for s in load.samples], 0.5), 2),
            "p99_ms": round(percentile([s.latency_ms for s in load.samples], 0.99), 2),
            "after_last_segment": len(tail),
            "key_rotations": len(self.keys) - 1,
            "configuration_pushes": self.generation,
            "configuration_rejected": rejected,
            "rss_mib_first_segment": first,
            "rss_mib_last_segment": last,
            "rss_growth_pct": round((last - first) / first * 100, 2),
            "segments": segments,
            "audit": audit,
        }
        report["ok"] = (not failures and audit["intact"] and audit["missing"] == 0
                        and audit["shipped_before_stop"] and report["rss_growth_pct"] < 5.0)
        return report

    def probe_ok(self, url: str) -> bool:
        params = {"name": "echo", "arguments": {"text": "ready?"}}
        r = httpx.post(url, content=json.dumps(modern_message("tools/call", params, "soak-ready")),
                       headers={**modern_headers("tools/call", params), "authorization": f"Bearer {self.token()}"},
                       timeout=10)
        return r.status_code == 200

    def edge_audit_lines(self) -> list[str]:
        text = self.topo.edge_log.read_text(errors="replace")
        return [line[line.index(AUDIT_PREFIX):] for line in text.splitlines() if AUDIT_PREFIX in line]

    def check_audit(self, *, started_requests: int) -> dict[str, Any]:
        """Wait until the collector holds every line Envoy logged, stop the edge (its VMs sign their
        last checkpoints), verify Envoy's log and count its decision records."""
        try:
            wait_until(lambda: set(self.edge_audit_lines()) <= set(self.collector.received()), timeout=60,
                       interval=0.5, what="every audit line at the collector")
            shipped_all = True
        except TimeoutError:
            shipped_all = False
        received = set(self.collector.received())
        unshipped = [json.loads(line[len(AUDIT_PREFIX):]) for line in self.edge_audit_lines() if line not in received]
        self.topo.edge.stop(timeout=20)
        lines = self.edge_audit_lines()
        log = self.work / "audit.log"
        log.write_text("\n".join(lines) + "\n")
        verified = subprocess.run([str(pqguard_cli()), "audit", "verify", "--jwks", str(self.audit_jwks), str(log)],
                                  capture_output=True, text=True, timeout=600)
        records = [json.loads(line[len(AUDIT_PREFIX):]) for line in lines]
        soak = sum(1 for r in records if r.get("kind") == "decision" and str(r.get("rpc_id", "")).startswith("soak-"))
        return {
            "intact": verified.returncode == 0,
            "verify": (verified.stdout or verified.stderr).strip().splitlines()[-1:],
            "lines": len(lines),
            "chains": len({r.get("chain") for r in records}),
            "soak_requests_sent": started_requests,
            "soak_decisions": soak,
            "missing": started_requests - soak,
            "shipped_before_stop": shipped_all,
            "not_shipped_before_stop": dict(Counter(f"{r.get('kind')} of chain {r.get('chain')}" for r in unshipped)),
            "shipped": len(self.collector.received()),
        }

    def stop(self) -> None:
        self.topo.stop()
        self.jwks.stop()
        self.collector.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10, help="length of the soak (default 10)")
    ap.add_argument("--segment-seconds", type=float, default=60, help="rotation and push period (default 60)")
    ap.add_argument("--rate", type=float, default=0, help="requests per second (default: half of saturation)")
    ap.add_argument("--json", type=Path, help="also write the report here")
    a = ap.parse_args()
    a.segments = max(2, round(a.minutes * 60 / a.segment_seconds))
    work = Path(tempfile.mkdtemp(prefix="pqguard-soak-"))
    soak = Soak(a, work)
    try:
        report = soak.run()
    finally:
        soak.stop()
    text = json.dumps(report, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    print(f"soak {'passed' if report['ok'] else 'FAILED'}: {report['requests']} requests at {report['rate_rps']} "
          f"req/s, failures {report['failures'] or 'none'}, RSS {report['rss_mib_first_segment']} -> "
          f"{report['rss_mib_last_segment']} MiB, audit {'intact' if report['audit']['intact'] else 'BROKEN'}, "
          f"{report['audit']['missing']} requests without a record; logs in {soak.topo.run_dir}", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
