"""Interoperability of pqguard's tokens with an independent ML-DSA implementation.

dilithium-py (PyPI, pure Python FIPS 204) signs RFC 9964 JWS that ``pqguard verify``
must accept, and verifies JWS that ``pqguard mint`` produces. Both directions use
only the standard interchange formats: JWK ``AKP`` keys with ``priv`` = the 32-byte
seed, compact JWS, the empty FIPS 204 context string.

For the composite algorithm (draft-ietf-jose-pq-composite-sigs-05) the ML-DSA
component of a ``pqguard mint`` token is checked with dilithium-py over the
message representative M' = Prefix || Label || 0x00 || SHA-512(signing input),
context = Label; with the ``cryptography`` package installed the Ed25519
component is checked too, and a composite token built entirely in Python is
verified by pqguard.

Run from the repository root:
    .venv/bin/python -m pytest tests/interop
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
import time
from pathlib import Path

import pytest
from dilithium_py.ml_dsa import ML_DSA_44, ML_DSA_65, ML_DSA_87

ROOT = Path(__file__).resolve().parents[2]
ISS = "https://issuer.example"
AUD = "https://mcp.example/mcp"
ML_DSA = {"ML-DSA-44": ML_DSA_44, "ML-DSA-65": ML_DSA_65, "ML-DSA-87": ML_DSA_87}
PREFIX = b"CompositeAlgorithmSignatures2025"
LABEL_65_ED25519 = b"COMPSIG-MLDSA65-Ed25519-SHA512"
ML_DSA_65_SIG_LEN = 3309
ML_DSA_65_PK_LEN = 1952


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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


def claims(**extra: object) -> dict[str, object]:
    now = int(time.time())
    return {"iss": ISS, "aud": AUD, "sub": "interop", "iat": now, "exp": now + 300, **extra}


def compact(header: dict[str, object], payload: dict[str, object], sign) -> str:
    signing_input = (
        b64e(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64e(json.dumps(payload, separators=(",", ":")).encode())
    )
    return signing_input + "." + b64e(sign(signing_input.encode()))


def message_representative(label: bytes, signing_input: bytes) -> bytes:
    return PREFIX + label + b"\x00" + hashlib.sha512(signing_input).digest()


@pytest.mark.parametrize("alg", sorted(ML_DSA))
def test_token_signed_by_dilithium_py_verifies_with_pqguard(cli: Path, tmp_path: Path, alg: str) -> None:
    scheme = ML_DSA[alg]
    pk, sk = scheme.key_derive(os.urandom(32))
    jwk = {"kty": "AKP", "alg": alg, "kid": "py-1", "pub": b64e(pk)}
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    body = claims(scope="tools:call", tools=["echo"])
    # Hedged (randomized) signing, the FIPS 204 default, with the empty context.
    token = compact({"alg": alg, "kid": "py-1", "typ": "JWT"}, body, lambda m: scheme.sign(sk, m))

    ok = run(cli, "verify", "--jwks", str(tmp_path / "jwks.json"), "--aud", AUD, "--iss", ISS, token)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == body
    assert f"alg {alg} (pq)" in ok.stderr

    head, payload, sig = token.split(".")
    forged = b64e(json.dumps({**body, "sub": "mallory"}, separators=(",", ":")).encode())
    bad = run(cli, "verify", "--jwks", str(tmp_path / "jwks.json"), f"{head}.{forged}.{sig}")
    assert bad.returncode == 1
    assert "bad_signature" in bad.stderr


@pytest.mark.parametrize("alg", sorted(ML_DSA))
def test_token_minted_by_pqguard_verifies_with_dilithium_py(cli: Path, tmp_path: Path, alg: str) -> None:
    scheme = ML_DSA[alg]
    keygen = run(cli, "keygen", "--alg", alg, "--kid", "rs-1")
    assert keygen.returncode == 0, keygen.stderr
    jwk = json.loads(keygen.stdout)
    assert (jwk["kty"], jwk["alg"], jwk["kid"]) == ("AKP", alg, "rs-1")
    # RFC 9964: priv is the seed; both implementations derive the same public key.
    seed = b64d(jwk["priv"])
    assert len(seed) == 32
    pk, _ = scheme.key_derive(seed)
    assert b64e(pk) == jwk["pub"]

    key_file = tmp_path / "key.jwk"
    key_file.write_text(keygen.stdout)
    minted = run(cli, "mint", "--key", str(key_file), "--iss", ISS, "--aud", AUD, "--ttl", "60",
                 "--sub", "alice", "--claim", "tenant=acme")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    head, payload, sig = token.split(".")
    assert json.loads(b64d(head)) == {"alg": alg, "kid": "rs-1", "typ": "JWT"}
    assert json.loads(b64d(payload))["tenant"] == "acme"
    signing_input = f"{head}.{payload}".encode()
    assert scheme.verify(pk, signing_input, b64d(sig))
    assert not scheme.verify(pk, signing_input + b"x", b64d(sig))
    assert not scheme.verify(pk, signing_input, b64d(sig), ctx=b"other")

    # And pqguard accepts its own token through the public JWKS.
    jwks = run(cli, "jwks", str(key_file))
    assert jwks.returncode == 0, jwks.stderr
    assert "priv" not in jwks.stdout
    (tmp_path / "jwks.json").write_text(jwks.stdout)
    assert run(cli, "verify", "--jwks", str(tmp_path / "jwks.json"), "--aud", AUD, token).returncode == 0


def test_composite_ml_dsa_component_verifies_with_dilithium_py(cli: Path, tmp_path: Path) -> None:
    keygen = run(cli, "keygen", "--alg", "ML-DSA-65-Ed25519", "--kid", "hyb")
    assert keygen.returncode == 0, keygen.stderr
    jwk = json.loads(keygen.stdout)
    pub, priv = b64d(jwk["pub"]), b64d(jwk["priv"])
    assert (len(pub), len(priv)) == (ML_DSA_65_PK_LEN + 32, 32 + 32)
    pk, _ = ML_DSA_65.key_derive(priv[:32])
    assert pk == pub[:ML_DSA_65_PK_LEN]

    key_file = tmp_path / "hyb.jwk"
    key_file.write_text(keygen.stdout)
    token = run(cli, "mint", "--key", str(key_file), "--iss", ISS, "--aud", AUD, "--ttl", "60").stdout.strip()
    head, payload, sig = token.split(".")
    signing_input = f"{head}.{payload}".encode()
    sig = b64d(sig)
    assert len(sig) == ML_DSA_65_SIG_LEN + 64
    m_prime = message_representative(LABEL_65_ED25519, signing_input)
    assert ML_DSA_65.verify(pk, m_prime, sig[:ML_DSA_65_SIG_LEN], ctx=LABEL_65_ED25519)
    # The label is the context: the component does not verify as plain ML-DSA.
    assert not ML_DSA_65.verify(pk, m_prime, sig[:ML_DSA_65_SIG_LEN])

    from cryptography.hazmat.primitives.asymmetric import ed25519
    ed_pub = ed25519.Ed25519PublicKey.from_public_bytes(pub[ML_DSA_65_PK_LEN:])
    ed_pub.verify(sig[ML_DSA_65_SIG_LEN:], m_prime)  # raises if invalid


def test_composite_token_built_in_python_verifies_with_pqguard(cli: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives import serialization

    pk, sk = ML_DSA_65.key_derive(os.urandom(32))
    ed_sk = ed25519.Ed25519PrivateKey.generate()
    ed_pk = ed_sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kty": "AKP", "alg": "ML-DSA-65-Ed25519", "kid": "py-hyb", "pub": b64e(pk + ed_pk)}
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))

    def sign(signing_input: bytes) -> bytes:
        m_prime = message_representative(LABEL_65_ED25519, signing_input)
        return ML_DSA_65.sign(sk, m_prime, ctx=LABEL_65_ED25519) + ed_sk.sign(m_prime)

    body = claims()
    token = compact({"alg": "ML-DSA-65-Ed25519", "kid": "py-hyb"}, body, sign)
    ok = run(cli, "verify", "--jwks", str(tmp_path / "jwks.json"), "--aud", AUD, token)
    assert ok.returncode == 0, ok.stderr
    assert "(hybrid-pq)" in ok.stderr
    assert json.loads(ok.stdout) == body
