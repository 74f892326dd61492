"""`pqguard inspect` as a policy author uses it, and the command line's behaviour (clap).

Tokens are minted with dilithium-py (an independent ML-DSA implementation), so the dry run checks a
token the filter's own code did not make. The same engine decides inside Envoy; tests/e2e compares
the two on every case of the refusal table.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from dilithium_py.ml_dsa import ML_DSA_65

REPO = Path(__file__).resolve().parents[2]
CLI = Path(os.environ.get("PQGUARD_CLI", REPO / "target" / "debug" / "pqguard"))
AUD = "https://mcp.test/mcp"
ISS = "https://issuer.test"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], input=stdin.decode() if stdin else None,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inspect")
    pk, sk = ML_DSA_65.keygen()
    jwk = {"kty": "AKP", "alg": "ML-DSA-65", "kid": "py-1", "pub": b64(pk)}
    header = b64(json.dumps({"alg": "ML-DSA-65", "kid": "py-1", "typ": "JWT"}).encode())
    now = int(time.time())
    claims = b64(json.dumps({"iss": ISS, "aud": AUD, "sub": "alice", "scope": "tools:call",
                             "iat": now, "exp": now + 600}).encode())
    signing_input = f"{header}.{claims}".encode()
    token = f"{header}.{claims}.{b64(ML_DSA_65.sign(sk, signing_input))}"
    config = {
        "auth": {"audience": AUD, "issuers": [ISS], "jwks": {"keys": [jwk]}},
        "policy": {"rules": [
            {"name": "python-needs-pq", "effect": "require", "match": {"tools": ["run_python"]},
             "when": {"min_kex": "hybrid-pq", "token_algs": ["ML-DSA-65"]}},
            {"name": "callers", "effect": "allow", "match": {"methods": ["tools/call"]},
             "when": {"scopes": ["tools:call"]}},
        ]},
    }
    paths = {"config": d / "config.json", "token": d / "alice.jwt", "call": d / "call.json"}
    paths["config"].write_text(json.dumps(config))
    paths["token"].write_text(token + "\n")
    paths["call"].write_text(json.dumps({"jsonrpc": "2.0", "id": "c-1", "method": "tools/call",
                                         "params": {"name": "run_python", "arguments": {"code": "1"}}}))
    return paths


def inspect(setup: dict[str, Path], *extra: str) -> tuple[int, dict]:
    done = run("inspect", "--json", "--config", str(setup["config"]), "--token", str(setup["token"]),
               *extra, str(setup["call"]))
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_the_dangerous_tool_is_allowed_over_hybrid_pq_and_refused_over_classical(setup: dict[str, Path]) -> None:
    code, pq = inspect(setup, "--tls-group", "X25519MLKEM768")
    assert (code, pq["outcome"], pq["reply"]) == (0, "forwarded", None), pq
    assert pq["record"]["token_alg"] == "ML-DSA-65" and pq["record"]["subject"] == "alice", pq
    assert pq["counters"]["pqguard.token_cache.miss"] == 1, pq
    code, classical = inspect(setup, "--tls-group", "X25519")
    assert (code, classical["outcome"]) == (1, "refused"), classical
    assert classical["reply"]["status"] == 403
    assert classical["reply"]["body"] == {"jsonrpc": "2.0", "id": "c-1", "error": {"code": -32003, "message": "Forbidden"}}
    assert classical["record"]["reason_code"] == "requirement_not_met", classical
    assert "python-needs-pq" in classical["record"]["detail"], classical


def test_an_expired_token_at_the_given_time_is_refused(setup: dict[str, Path]) -> None:
    code, later = inspect(setup, "--tls-group", "X25519MLKEM768", "--now", str(int(time.time()) + 7200))
    assert (code, later["reply"]["status"]) == (1, 401), later
    assert later["record"]["reason_code"] == "expired", later


def test_readable_report_names_the_decision_and_rule(setup: dict[str, Path]) -> None:
    done = run("inspect", "--config", str(setup["config"]), "--token", str(setup["token"]),
               "--tls-group", "X25519", str(setup["call"]))
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("decision  REFUSED  HTTP 403\n"), done.stdout
    assert 'require rule "python-needs-pq"' in done.stdout, done.stdout


def test_every_subcommand_has_help_and_a_typo_is_named_with_a_suggestion() -> None:
    for sub in ("inspect", "check-config", "keygen", "jwks", "mint", "verify", "pin", "audit", "completions"):
        done = run(sub, "--help")
        assert done.returncode == 0 and "Usage: pqguard" in done.stdout, (sub, done.stderr)
    done = run("inspect", "--tls-grup", "X25519")
    assert done.returncode == 2, done
    assert "--tls-grup" in done.stderr and "--tls-group" in done.stderr, done.stderr
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("pqguard "), version
    completions = run("completions", "bash")
    assert completions.returncode == 0 and "pqguard" in completions.stdout and "inspect" in completions.stdout
