"""Writes the fuzz targets' seed corpora into fuzz/corpus/<target>/ (committed; re-run after the
formats change). Seeds come from the project's own evidence: the e2e refusal tables' bodies and
headers, SDK-shaped MCP traffic, tokens minted by the pqguard CLI for every algorithm and by
dilithium-py, key sets, plugin configurations, and an audit log written by the Python chain writer
of tests/audit (an independent implementation).

    .venv/bin/python fuzz/make_corpus.py [--cli target/debug/pqguard]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "tests" / "audit"))

CORPUS = REPO / "fuzz" / "corpus"
ALGS = ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87", "ML-DSA-65-Ed25519", "ML-DSA-65-ES256", "EdDSA", "ES256"]


def put(target: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)


def mcp_bodies() -> list[bytes]:
    import test_inspection as t  # the e2e tables (imports only; nothing starts)

    bodies = [c.body(f"{name}-1") for name, c in t.BODY_CASES.items()]
    bodies += [c.body for c in t.HEAD_CASES.values()]
    sdk_like = [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
         "capabilities": {}, "clientInfo": {"name": "mcp", "version": "1.0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hé😀"}}},
        {"jsonrpc": "2.0", "id": "r", "method": "resources/read", "params": {"uri": "records://index"}},
        {"jsonrpc": "2.0", "id": 3, "method": "prompts/get", "params": {"name": "summarize", "arguments": {"topic": "x"}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "query_region", "arguments":
         {"region": "eu", "query": "q"}, "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}},
        [{"jsonrpc": "2.0", "id": 5, "method": "tools/list"}, {"jsonrpc": "2.0", "method": "notifications/progress",
                                                               "params": {"progressToken": 1, "progress": 0.5}}],
    ]
    bodies += [json.dumps(b).encode() for b in sdk_like]
    return bodies


def tools_answers() -> list[bytes]:
    answer = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [
        {"name": "echo", "description": "Echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
        {"name": "query_region", "inputSchema": {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"}, "limit": {"type": "integer", "x-mcp-header": "Limit"}}}},
    ]}}
    text = json.dumps(answer).encode()
    return [text, b"event: message\ndata: " + text + b"\n\n", b": ping\n\nid: 7\ndata: " + text + b"\r\n\r\n"]


def tokens_and_keys(cli: Path) -> tuple[list[bytes], list[bytes]]:
    tokens, keys = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for alg in ALGS:
            key = Path(tmp) / f"{alg}.jwk"
            key.write_text(subprocess.run([str(cli), "keygen", "--alg", alg, "--kid", alg], check=True,
                                          capture_output=True, text=True).stdout)
            keys.append(subprocess.run([str(cli), "jwks", str(key)], check=True, capture_output=True).stdout)
            tokens.append(subprocess.run([str(cli), "mint", "--key", str(key), "--iss", "https://issuer.test",
                                          "--aud", "mcp", "--sub", "alice", "--ttl", "600"], check=True,
                                         capture_output=True).stdout.strip())
    try:
        from dilithium_py.ml_dsa import ML_DSA_65

        pk, sk = ML_DSA_65.keygen()
        b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
        head = b64(json.dumps({"alg": "ML-DSA-65", "kid": "py"}).encode())
        claims = b64(json.dumps({"iss": "x", "aud": "mcp", "exp": int(time.time()) + 600}).encode())
        sig = ML_DSA_65.sign(sk, f"{head}.{claims}".encode())
        tokens.append(f"{head}.{claims}.{b64(sig)}".encode())
        keys.append(json.dumps({"keys": [{"kty": "AKP", "alg": "ML-DSA-65", "kid": "py", "pub": b64(pk)}]}).encode())
    except ImportError:
        pass
    return tokens, keys


def configs(keys: list[bytes]) -> list[bytes]:
    jwks = json.loads(keys[1])
    out = [
        {},
        {"limits": {"max_body_bytes": 4096}, "request_log": "refused"},
        {"auth": {"audience": "mcp", "issuers": ["https://issuer.test"], "jwks": jwks},
         "p2p_connectivity": {"threat_detection": {"block_downgrade_attempts": True}},
         "policy": {"rules": [{"name": "r", "effect": "allow", "match": {"tools": ["echo", "read_*"]},
                               "when": {"min_kex": "hybrid-pq", "token_algs": ["ML-DSA-65"]}}],
                    "pins": {"echo": "00" * 32}}},
        {"auth": {"audience": "mcp", "remote_jwks": {"cluster": "jwks", "authority": "a", "path": "/k"}}},
    ]
    return [json.dumps(c).encode() for c in out]


def audit_log() -> list[bytes]:
    import test_audit_cli as a

    chain = a.write_chain("100-1", 3, 9)
    return ["\n".join(chain.lines).encode()] if hasattr(chain, "lines") else []


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", type=Path, default=REPO / "target" / "debug" / "pqguard")
    a = ap.parse_args()
    bodies = mcp_bodies()
    for b in bodies:
        put("json_scan", b)
        put("mcp_body", b)
        for selector in (0x00, 0x05, 0x0D, 0x45, 0x21):
            put("engine_request", bytes([selector]) + b)
    for t in tools_answers():
        put("tools_list", t)
        put("json_scan", t)
    tokens, keys = tokens_and_keys(a.cli)
    for t in tokens:
        put("jws", t)
    for k in keys:
        put("jwks", k)
    for c in configs(keys):
        put("config", c)
    for log in audit_log():
        put("audit_line", log)
        for line in log.splitlines():
            put("audit_line", line.split(b"pqguard.audit ", 1)[-1])
    # ML-KEM binding: a proof header, a bind answer, an encapsulation key's worth of bytes.
    put("bind_proof", b"id=b1.2000.AAAAAAAAAAAAAAAAAAAAAA, ts=1000, nonce=BQUFBQUFBQUFBQUFBQUFBQ, "
                      b"mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    put("bind_proof", json.dumps({"binding_id": "b1.1.x", "expires_at": 1, "kem": "ML-KEM-768",
                                  "ciphertext": "AA", "wrapped_key": "AA", "key_check": "AA"}).encode())
    put("bind_proof", bytes(1184))
    for target in sorted(p.name for p in CORPUS.iterdir()):
        print(f"{target}: {len(list((CORPUS / target).iterdir()))} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
