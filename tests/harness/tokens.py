"""Keys and bearer tokens for the end-to-end tests.

Keys are made and tokens minted with the ``pqguard`` command line (the same
core code as the filter), in the standard interchange formats: private JWKs
(RFC 9964 ``AKP`` keys with ``priv`` = the 32-byte seed), a public JWKS, compact
JWS. Tokens the command line will not mint (already expired, ``alg: none``, a
hand-chosen header) are signed here with dilithium-py, an independent ML-DSA
implementation, from the same private JWK.

The binary is ``$PQGUARD_CLI``, else ``target/debug/pqguard``, built with
``cargo build -p pqguard-cli`` when it is missing.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .paths import REPO_ROOT

ALGORITHMS = ("ML-DSA-44", "ML-DSA-65", "ML-DSA-87", "EdDSA", "ES256", "ML-DSA-65-Ed25519", "ML-DSA-65-ES256")


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@cache
def pqguard_cli() -> Path:
    """The ``pqguard`` binary (built on first use unless ``$PQGUARD_CLI`` names one)."""
    configured = os.environ.get("PQGUARD_CLI")
    if configured:
        path = Path(configured)
    else:
        subprocess.run(["cargo", "build", "--quiet", "--locked", "-p", "pqguard-cli"], cwd=REPO_ROOT, check=True)
        path = REPO_ROOT / "target" / "debug" / "pqguard"
    if not path.is_file():
        raise FileNotFoundError(f"pqguard binary not found at {path} (set PQGUARD_CLI)")
    return path


def run_cli(*args: str) -> str:
    """Run ``pqguard ARGS``; its stdout, or an error with its stderr."""
    result = subprocess.run([str(pqguard_cli()), *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"pqguard {' '.join(args[:2])} … failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class SigningKey:
    """A private key in a file (private JWK), and its public JWK."""

    alg: str
    kid: str
    path: Path
    private_jwk: dict[str, Any]

    @property
    def public_jwk(self) -> dict[str, Any]:
        return {k: v for k, v in self.private_jwk.items() if k not in ("priv", "d")}


class Issuer:
    """Makes keys and mints tokens for one issuer and audience; key files live in ``directory``."""

    def __init__(self, directory: Path, iss: str, aud: str) -> None:
        self.directory = directory
        self.iss = iss
        self.aud = aud
        directory.mkdir(parents=True, exist_ok=True)

    def keygen(self, alg: str, kid: str) -> SigningKey:
        text = run_cli("keygen", "--alg", alg, "--kid", kid)
        path = self.directory / f"{kid}.jwk"
        path.write_text(text)
        return SigningKey(alg, kid, path, json.loads(text))

    def jwks(self, *keys: SigningKey) -> dict[str, Any]:
        """The public JWKS of ``keys`` (``pqguard jwks``), as a JSON object."""
        return json.loads(run_cli("jwks", *(str(key.path) for key in keys)))

    def mint(self, key: SigningKey, *, sub: str, scope: str | None = None, ttl: int = 300,
             iss: str | None = None, aud: str | None = None, claims: dict[str, Any] | None = None) -> str:
        """A compact JWS from ``pqguard mint``."""
        args = ["mint", "--key", str(key.path), "--iss", iss or self.iss, "--aud", aud or self.aud,
                "--ttl", str(ttl), "--sub", sub]
        if scope is not None:
            args += ["--scope", scope]
        for name, value in (claims or {}).items():
            args += ["--claim", f"{name}={json.dumps(value) if not isinstance(value, str) else value}"]
        return run_cli(*args).strip()

    def claims(self, *, sub: str, scope: str | None = None, ttl: int = 300, **extra: Any) -> dict[str, Any]:
        """A claims set like ``mint`` writes (``iat`` now, ``exp`` now + ``ttl``), for hand-made tokens."""
        now = int(time.time())
        body: dict[str, Any] = {"iss": self.iss, "aud": self.aud, "sub": sub, "iat": now, "exp": now + ttl}
        if scope is not None:
            body["scope"] = scope
        body.update(extra)
        return body


def ml_dsa_scheme(alg: str) -> Any:
    from dilithium_py.ml_dsa import ML_DSA_44, ML_DSA_65, ML_DSA_87

    return {"ML-DSA-44": ML_DSA_44, "ML-DSA-65": ML_DSA_65, "ML-DSA-87": ML_DSA_87}[alg]


def sign_with_dilithium_py(key: SigningKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A compact JWS whose ML-DSA signature dilithium-py computes from ``key``'s seed (RFC 9964:
    ``priv`` is the seed; empty context string). Header and claims are taken as given."""
    scheme = ml_dsa_scheme(key.alg)
    _, secret = scheme.key_derive(b64d(key.private_jwk["priv"]))
    signing_input = b64e(compact_json(header)) + "." + b64e(compact_json(claims))
    return signing_input + "." + b64e(scheme.sign(secret, signing_input.encode()))


def unsecured_token(claims: dict[str, Any], kid: str | None = None) -> str:
    """An RFC 7515 unsecured JWS (``"alg": "none"``, empty signature)."""
    header: dict[str, Any] = {"alg": "none", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    return b64e(compact_json(header)) + "." + b64e(compact_json(claims)) + "."


def tamper_signature(token: str) -> str:
    """The same token with one bit of its signature flipped."""
    head, payload, signature = token.split(".")
    raw = bytearray(b64d(signature))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{payload}.{b64e(bytes(raw))}"


def token_header(token: str) -> dict[str, Any]:
    return json.loads(b64d(token.split(".")[0]))


def token_claims(token: str) -> dict[str, Any]:
    return json.loads(b64d(token.split(".")[1]))
