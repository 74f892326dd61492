"""`pqguard audit verify` and `pqguard audit report` on logs written by an
independent implementation of the audit format.

The writer below is plain Python: canonical lines are
``json.dumps(record, separators=(",", ":"), ensure_ascii=False)`` of a dict
holding the members in the documented order, digests are hashlib's SHA3-256,
and checkpoints are signed with dilithium-py's ML-DSA-65 (deterministic, empty
context), from the documentation in filter/core/src/audit/mod.rs alone. If
pqguard accepts these logs, other tools can write and check them too.

Run from the repository root:
    .venv/bin/python -m pytest tests/audit
Environment:
    PQGUARD_CLI  the pqguard binary (default: build with ``cargo build -p pqguard-cli``
                 and use target/debug/pqguard)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from dilithium_py.ml_dsa import ML_DSA_65

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "pqguard.audit "
ENVOY = "[2026-11-20 10:00:00.123][42][info][wasm] [source/extensions/common/wasm/context.cc:1192] wasm log pqguard pqguard: "
ZERO = "0" * 64


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def canon(record: dict[str, object]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def sha3(data: bytes) -> str:
    return hashlib.sha3_256(data).hexdigest()


class PyChain:
    """A chain written the way the documentation says, with no pqguard code."""

    def __init__(self, chain: str, seed: bytes, kid: str, every: int, t0: int) -> None:
        self.chain, self.kid, self.every = chain, kid, every
        self.pk, self.sk = ML_DSA_65.key_derive(seed)
        self.next, self.since, self.head = 0, 0, ZERO
        self.lines: list[str] = []
        self._record(
            "genesis",
            t0,
            {
                "vm_start_ms": t0,
                "config_sha3": sha3(b'{"audit":{}}'),
                "version": "python",
                "build": "interop",
                "kid": kid,
                "checkpoint_every": every,
                "checkpoint_ms": 0,
            },
        )
        self.checkpoint(t0)

    def _record(self, kind: str, time_ms: int, members: dict[str, object]) -> None:
        record = {"v": 1, "kind": kind, "chain": self.chain, "seq": self.next, "prev": self.head, "time_ms": time_ms}
        record.update(members)
        line = canon(record)
        self.head = sha3(line.encode())
        self.next += 1
        self.since += 1
        self.lines.append(PREFIX + line)

    def decision(self, time_ms: int, *, sub: str | None, group: str, kex_class: str, token_alg: str | None,
                 tool: str, decision: str = "allowed", reason: str | None = None, code: str | None = None) -> None:
        args = json.dumps({"text": f"héllo {time_ms}"}, ensure_ascii=False)
        self._record(
            "decision",
            time_ms,
            {
                "request_id": f"req-{time_ms}\u0001",
                "rpc_id": time_ms,
                "identity": None if sub is None else {"iss": "https://issuer.example", "sub": sub},
                "method": "tools/call",
                "target": {"kind": "tool", "name": tool},
                "batch": None,
                "decision": decision,
                "reason": reason,
                "reason_code": code,
                "crypto": {
                    "tls_version": "TLSv1.3",
                    "tls_group": group,
                    "tls_cipher": "TLS_AES_256_GCM_SHA384",
                    "kex_class": kex_class,
                    "token_alg": token_alg,
                    "token_kid": None if token_alg is None else "t1",
                },
                "body_sha3": sha3(f"body {time_ms}".encode()),
                "args_sha3": sha3(args.encode()),
                "args": args,
                "upstream_status": 200 if decision == "allowed" else None,
                "latency_ms": 4 if decision == "allowed" else None,
            },
        )
        if self.since >= self.every:
            self.checkpoint(time_ms)

    def checkpoint(self, time_ms: int) -> None:
        cp = {"v": 1, "kind": "checkpoint", "chain": self.chain, "seq": self.next - 1, "head": self.head,
              "count": self.next, "time_ms": time_ms, "alg": "ML-DSA-65", "kid": self.kid}
        signed = canon(cp).encode()
        sig = ML_DSA_65.sign(self.sk, signed, ctx=b"", deterministic=True)
        assert ML_DSA_65.verify(self.pk, signed, sig)
        cp["sig"] = b64e(sig)
        self.since = 0
        self.lines.append(PREFIX + canon(cp))

    def jwks(self) -> dict[str, object]:
        return {"keys": [{"kty": "AKP", "alg": "ML-DSA-65", "kid": self.kid, "pub": b64e(self.pk)}]}


@pytest.fixture(scope="session")
def cli() -> Path:
    configured = os.environ.get("PQGUARD_CLI")
    if configured:
        path = Path(configured)
    else:
        subprocess.run(["cargo", "build", "--quiet", "-p", "pqguard-cli"], cwd=ROOT, check=True)
        path = ROOT / "target" / "debug" / "pqguard"
    if not path.is_file():
        pytest.fail(f"pqguard binary not found at {path} (set PQGUARD_CLI)", pytrace=False)
    return path


def run(cli: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=120)


def write_chain(chain: str, seed: int, n: int) -> PyChain:
    c = PyChain(chain, bytes([seed]) * 32, "audit-1", every=3, t0=1_790_000_000_000)
    for i in range(1, n + 1):
        t = 1_790_000_000_000 + i
        if i % 4 == 0:
            c.decision(t, sub="bob", group="X25519", kex_class="classical", token_alg="EdDSA", tool="résumé",
                       decision="denied", reason="forbidden", code="pqc_required")
        elif i % 5 == 0:
            c.decision(t, sub=None, group="X25519MLKEM768", kex_class="hybrid-pq", token_alg=None, tool="echo")
        else:
            c.decision(t, sub="ålice", group="X25519MLKEM768", kex_class="hybrid-pq", token_alg="ML-DSA-65", tool="echo")
    return c


@pytest.fixture()
def logs(tmp_path: Path) -> tuple[Path, Path, PyChain]:
    a, b = write_chain("1790000000000-1", 1, 10), write_chain("1790000000000-2", 1, 7)
    lines = ["[info][main] starting"]
    for i in range(max(len(a.lines), len(b.lines))):
        for c in (a, b):
            if i < len(c.lines):
                lines.append(ENVOY + c.lines[i])
        lines.append("[debug][http] [C1][S2] request end stream")
    log = tmp_path / "envoy.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(a.jwks()))
    return log, jwks, a


def test_a_log_written_independently_verifies(cli: Path, logs: tuple[Path, Path, PyChain]) -> None:
    log, jwks, _ = logs
    out = run(cli, "audit", "verify", "--jwks", str(jwks), "--json", str(log))
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["intact"] is True
    assert [c["chain"] for c in report["chains"]] == ["1790000000000-1", "1790000000000-2"]
    first = report["chains"][0]
    assert (first["records"], first["verified_through"], first["unverified"]) == (11, 9, 1)
    assert first["config_sha3"] == sha3(b'{"audit":{}}')
    text = run(cli, "audit", "verify", "--jwks", str(jwks), str(log))
    assert text.returncode == 0
    assert "intact: 2 chain(s), 19 records" in text.stdout
    # The same log from stdin.
    piped = subprocess.run([str(cli), "audit", "verify", "--jwks", str(jwks)], input=log.read_text(),
                           capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0, piped.stdout


@pytest.mark.parametrize("needle", ['"seq":2,', "ålice", "X25519MLKEM768", "héllo", '"decision":"allowed"'])
def test_one_byte_changed_is_rejected(cli: Path, logs: tuple[Path, Path, PyChain], needle: str) -> None:
    log, jwks, _ = logs
    lines = log.read_text(encoding="utf-8").split("\n")
    # The first record of chain -1 after its genesis checkpoint holding the needle.
    index = next(i for i, l in enumerate(lines)
                 if '"chain":"1790000000000-1"' in l and '"kind":"decision"' in l and needle in l)
    pos = lines[index].index(needle) + 1
    original = lines[index][pos]
    lines[index] = lines[index][:pos] + ("x" if original != "x" else "y") + lines[index][pos + 1:]
    log.write_text("\n".join(lines), encoding="utf-8")
    out = run(cli, "audit", "verify", "--jwks", str(jwks), "--json", str(log))
    assert out.returncode == 1, out.stdout
    report = json.loads(out.stdout)
    first = report["errors"][0]
    assert first["chain"] == "1790000000000-1"
    assert first["source"] == str(log)
    assert first["line"] >= index + 1
    text = run(cli, "audit", "verify", "--jwks", str(jwks), str(log))
    assert text.returncode == 1
    assert "TAMPERED: 1 problem(s); the first: chain 1790000000000-1" in text.stdout


def test_a_jwks_without_the_chain_key_is_refused(cli: Path, logs: tuple[Path, Path, PyChain], tmp_path: Path) -> None:
    log, _, _ = logs
    other = PyChain("x", bytes([9]) * 32, "audit-1", every=3, t0=0)
    jwks = tmp_path / "other.json"
    jwks.write_text(json.dumps(other.jwks()))
    out = run(cli, "audit", "verify", "--jwks", str(jwks), "--json", str(log))
    assert out.returncode == 1
    assert json.loads(out.stdout)["errors"][0]["problem"] == "bad_signature"


def test_truncation_is_caught_against_an_anchor(cli: Path, logs: tuple[Path, Path, PyChain], tmp_path: Path) -> None:
    log, jwks, _ = logs
    report = json.loads(run(cli, "audit", "verify", "--jwks", str(jwks), "--json", str(log)).stdout)
    anchor = report["chains"][0]["anchor"]
    lines = log.read_text(encoding="utf-8").split("\n")
    cut = tmp_path / "cut.log"
    cut.write_text("\n".join(lines[: len(lines) // 2]), encoding="utf-8")
    assert run(cli, "audit", "verify", "--jwks", str(jwks), str(cut)).returncode == 0
    out = run(cli, "audit", "verify", "--jwks", str(jwks), "--anchor", anchor, "--json", str(cut))
    assert out.returncode == 1
    assert json.loads(out.stdout)["errors"][0]["problem"] == "anchor_not_reached"


def test_max_unverified_fails_a_tail_without_a_checkpoint(cli: Path, logs: tuple[Path, Path, PyChain]) -> None:
    log, jwks, _ = logs
    # Chain -1 ends 1 record after its last checkpoint, chain -2 also 1 (7 records, every 3).
    assert run(cli, "audit", "verify", "--jwks", str(jwks), "--max-unverified", "1", str(log)).returncode == 0
    out = run(cli, "audit", "verify", "--jwks", str(jwks), "--max-unverified", "0", str(log))
    assert out.returncode == 1, out.stdout
    assert "FAILED: 2 chain(s) with more than 0 unverified record(s)" in out.stdout
    assert "intact: 2 chain(s)" in out.stdout, "no tampering is claimed"
    as_json = json.loads(run(cli, "audit", "verify", "--jwks", str(jwks), "--max-unverified", "0", "--json",
                             str(log)).stdout)
    assert as_json["intact"] is True
    assert as_json["over_max_unverified"] == ["1790000000000-1", "1790000000000-2"]
    bad = run(cli, "audit", "verify", "--jwks", str(jwks), "--max-unverified", "many", str(log))
    assert bad.returncode == 2 and "--max-unverified" in bad.stderr


def test_an_empty_log_is_not_a_pass(cli: Path, logs: tuple[Path, Path, PyChain], tmp_path: Path) -> None:
    _, jwks, _ = logs
    empty = tmp_path / "empty.log"
    empty.write_text("[info][main] nothing audited\n")
    out = run(cli, "audit", "verify", "--jwks", str(jwks), str(empty))
    assert out.returncode == 1
    assert "no pqguard.audit lines found" in out.stdout


def test_report_names_the_clients_still_using_classical_cryptography(cli: Path, logs: tuple[Path, Path, PyChain]) -> None:
    log, _, _ = logs
    out = run(cli, "audit", "report", "--json", str(log))
    assert out.returncode == 0, out.stderr
    inv = json.loads(out.stdout)
    assert inv["decisions"] == 17
    assert inv["classical"] == ["https://issuer.example|bob"]
    bob = inv["identities"]["https://issuer.example|bob"]
    assert bob["classical"] == ["kex:X25519", "token:EdDSA"]
    assert bob["refusals"] == {"denied/forbidden/pqc_required": bob["denied"]}
    alice = inv["identities"]["https://issuer.example|ålice"]
    assert alice["groups"] == {"X25519MLKEM768": alice["requests"]}
    assert inv["identities"]["anonymous"]["token_algs"] == {"none": 3}
    table = run(cli, "audit", "report", str(log))
    assert "Still using classical cryptography:" in table.stdout
    assert "https://issuer.example|bob: kex:X25519, token:EdDSA" in table.stdout


# --- The audit trail at an operator's desk: nothing overwrites a log; rotated and compressed logs. ---

def verify_json(cli: Path, jwks: Path, *logs: Path | str) -> tuple[int, dict[str, object]]:
    out = run(cli, "audit", "verify", "--jwks", str(jwks), "--json", *map(str, logs))
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def rotate(log: Path, parts: int = 3) -> list[Path]:
    """The log as logrotate leaves it: envoy.log.2.gz, envoy.log.1 (compressed in place, no .gz name:
    gzip is told by its magic bytes), envoy.log; oldest first."""
    import gzip

    lines = log.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // parts)
    chunks = [b"".join(lines[i:i + size]) for i in range(0, len(lines), size)]
    assert len(chunks) == 3
    older, old, current = log.with_name("envoy.log.2.gz"), log.with_name("envoy.log.1"), log.with_name("envoy.log.0")
    older.write_bytes(gzip.compress(chunks[0]))
    old.write_bytes(gzip.compress(chunks[1], mtime=0))
    current.write_bytes(chunks[2])
    return [older, old, current]


def test_report_html_over_an_audit_log_is_refused_and_the_log_kept(cli: Path, logs: tuple[Path, Path, PyChain]) -> None:
    log, _, _ = logs
    before = log.read_bytes()
    # The mistake of the issue: --html takes the page to write, so this names the log as the output.
    out = subprocess.run([str(cli), "audit", "report", "--html", str(log)], input="", capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 3, out.stdout + out.stderr
    assert f"{log} exists: not overwritten" in out.stderr
    assert log.read_bytes() == before
    # Even with --force: a file holding pqguard.audit records is never replaced, plain or gzip.
    import gzip

    compressed = log.with_name("envoy.log.3.gz")
    compressed.write_bytes(gzip.compress(before))
    for target, source in ((log, compressed), (compressed, log)):
        kept = target.read_bytes()
        out = run(cli, "audit", "report", "--html", str(target), "--force", str(source))
        assert out.returncode == 3, out.stdout + out.stderr
        assert "holds pqguard.audit records" in out.stderr and "even with --force" in out.stderr
        assert target.read_bytes() == kept
    # Nor a log being read, audit records or not.
    quiet = log.with_name("quiet.log")
    quiet.write_text("[info][main] no audit records here\n")
    out = run(cli, "audit", "report", "--html", str(quiet), "--force", str(quiet))
    assert out.returncode == 3 and "being read" in out.stderr, out.stderr
    assert quiet.read_text() == "[info][main] no audit records here\n"
    assert sorted(p.name for p in log.parent.iterdir()) == ["envoy.log", "envoy.log.3.gz", "jwks.json", "quiet.log"]


def test_report_html_over_another_file_needs_force_and_replaces_it_atomically(
        cli: Path, logs: tuple[Path, Path, PyChain]) -> None:
    log, _, _ = logs
    page = log.with_name("inventory.html")
    page.write_text("last week's page\n")
    out = run(cli, "audit", "report", "--html", str(page), str(log))
    assert out.returncode == 3 and "--force replaces it" in out.stderr, out.stderr
    assert page.read_text() == "last week's page\n"
    # With --force: replaced by a rename (a new inode; whoever had the old file open still reads it
    # whole), never truncated in place, and no temporary file left behind.
    inode = page.stat().st_ino
    with page.open("rb") as held:
        out = run(cli, "audit", "report", "--html", str(page), "--force", str(log))
        assert out.returncode == 0, out.stderr
        assert held.read() == b"last week's page\n"
    assert page.stat().st_ino != inode
    assert page.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert sorted(p.name for p in log.parent.iterdir()) == ["envoy.log", "inventory.html", "jwks.json"]
    # A new file needs nothing; --force alone (no --html) is a usage error.
    fresh = log.with_name("new.html")
    assert run(cli, "audit", "report", "--html", str(fresh), str(log)).returncode == 0
    assert fresh.read_bytes() == page.read_bytes()
    assert run(cli, "audit", "report", "--force", str(log)).returncode == 2


def test_rotated_and_gzipped_logs_verify_as_the_concatenated_log(cli: Path, logs: tuple[Path, Path, PyChain]) -> None:
    log, jwks, _ = logs
    code, whole = verify_json(cli, jwks, log)
    assert code == 0
    parts = rotate(log)
    code, rotated = verify_json(cli, jwks, *parts)
    assert code == 0, rotated
    strip = lambda r: [{k: v for k, v in c.items() if k != "first_line"} for c in r["chains"]]  # noqa: E731
    assert strip(rotated) == strip(whole)
    assert rotated["audit_lines"] == whole["audit_lines"]
    # The order given is the order read: newest first breaks every chain.
    code, backwards = verify_json(cli, jwks, *reversed(parts))
    assert code == 1 and backwards["intact"] is False
    # A gzip log on stdin too.
    import gzip

    piped = subprocess.run([str(cli), "audit", "verify", "--jwks", str(jwks)], input=gzip.compress(log.read_bytes()),
                           capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stdout
    # Errors name the file and line they are in.
    lines = parts[1].read_bytes()
    plain_middle = gzip.decompress(lines).decode().split("\n")
    index = next(i for i, l in enumerate(plain_middle) if '"kind":"decision"' in l and '"chain":"1790000000000-1"' in l)
    plain_middle[index] = plain_middle[index].replace('"decision":"', '"decision":" ', 1)
    parts[1].write_bytes(gzip.compress("\n".join(plain_middle).encode()))
    code, tampered = verify_json(cli, jwks, *parts)
    assert code == 1
    assert (tampered["errors"][0]["source"], tampered["errors"][0]["line"]) == (str(parts[1]), index + 1)


def test_a_corrupt_or_truncated_gzip_log_is_an_error_not_a_verdict(cli: Path, logs: tuple[Path, Path, PyChain]) -> None:
    import gzip

    log, jwks, _ = logs
    data = gzip.compress(log.read_bytes())
    corrupt = log.with_name("envoy.log.1.gz")
    corrupt.write_bytes(data[:len(data) // 2] + bytes(b ^ 0x5A for b in data[len(data) // 2:len(data) // 2 + 32])
                        + data[len(data) // 2 + 32:])
    truncated = log.with_name("envoy.log.2.gz")
    truncated.write_bytes(data[: len(data) * 2 // 3])
    for bad, what in ((corrupt, "corrupt gzip stream"), (truncated, "truncated gzip stream")):
        for command in (("verify", "--jwks", str(jwks)), ("report",)):
            out = run(cli, "audit", *command, str(bad))
            assert out.returncode == 2, (command, out.stdout, out.stderr)
            assert out.stderr.startswith(f"pqguard: reading {bad}: {what}"), out.stderr
            assert "intact" not in out.stdout


def test_report_over_gzip_equals_report_over_plain(cli: Path, logs: tuple[Path, Path, PyChain]) -> None:
    log, _, _ = logs
    plain = run(cli, "audit", "report", "--json", str(log))
    parts = rotate(log)
    rotated = run(cli, "audit", "report", "--json", *map(str, parts))
    assert plain.returncode == rotated.returncode == 0
    assert json.loads(rotated.stdout) == json.loads(plain.stdout)
    assert run(cli, "audit", "report", *map(str, parts)).stdout == run(cli, "audit", "report", str(log)).stdout
    pages = [log.with_name("plain.html"), log.with_name("rotated.html")]
    assert run(cli, "audit", "report", "--html", str(pages[0]), str(log)).returncode == 0
    assert run(cli, "audit", "report", "--html", str(pages[1]), *map(str, parts)).returncode == 0
    assert pages[0].read_bytes() == pages[1].read_bytes()


def test_what_the_http_collector_received_verifies_as_the_same_chains(
        cli: Path, logs: tuple[Path, Path, PyChain], tmp_path: Path) -> None:
    """The collector's copy: each VM POSTs its chain's lines in batches (bare `pqguard.audit {…}` lines,
    no Envoy prefix) to the e2e harness's HTTP collector; the file it keeps, plain or gzipped after
    rotation, verifies to the same chains as Envoy's log."""
    import gzip
    import urllib.request

    from harness.collector import Collector

    log, jwks, _ = logs
    a, b = write_chain("1790000000000-1", 1, 10), write_chain("1790000000000-2", 1, 7)
    collector = Collector()
    try:
        for i in range(0, max(len(a.lines), len(b.lines)), 4):
            for c in (a, b):
                batch = c.lines[i:i + 4]
                if batch:
                    request = urllib.request.Request(f"http://127.0.0.1:{collector.port}/v1/audit", method="POST",
                                                     data="".join(line + "\n" for line in batch).encode())
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        assert answer.status == 204
        received = collector.received()
    finally:
        collector.stop()
    assert len(received) == len(a.lines) + len(b.lines)
    shipped = tmp_path / "collector.log"
    shipped.write_text("\n".join(received) + "\n", encoding="utf-8")
    rotated = tmp_path / "collector.log.1.gz"
    rotated.write_bytes(gzip.compress(shipped.read_bytes()))
    strip = lambda r: [{k: v for k, v in c.items() if k != "first_line"} for c in r["chains"]]  # noqa: E731
    _, envoy = verify_json(cli, jwks, log)
    for copy in (shipped, rotated):
        code, report = verify_json(cli, jwks, copy)
        assert code == 0, report
        assert strip(report) == strip(envoy)
