"""An independent client of pqguard's ML-KEM bound sessions, written from the README's description:
ML-KEM-768 from the pure-Python ``kyber-py`` (FIPS 203), HMAC-SHA3-256 from the standard library.

    client = BindingClient()                       # a fresh ML-KEM-768 key pair
    binding = client.bind(http, bind_url, token)   # POST /.well-known/pqguard/bind, opened
    headers["pqguard-binding"] = binding.proof("POST", "/mcp?x", body, token)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx
from kyber_py.ml_kem import ML_KEM_768

BIND_PATH = "/.well-known/pqguard/bind"
PROOF_HEADER = "pqguard-binding"


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sha3(data: bytes) -> bytes:
    return hashlib.sha3_256(data).digest()


def mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha3_256).digest()


def thumbprint(ek: bytes) -> str:
    """The ``mlkem#S3-256`` member of a token's ``cnf`` claim for this key."""
    return b64e(sha3(ek))


@dataclass
class Binding:
    id: str
    key: bytes
    expires_at: int

    def proof(self, method: str, path: str, body: bytes, token: str, *, ts: int | None = None,
              nonce: bytes | None = None) -> str:
        """The ``PQGuard-Binding`` header value of one request."""
        ts = int(time.time()) if ts is None else ts
        nonce = os.urandom(16) if nonce is None else nonce
        digest = mac(self.key, b"pqguard-bind-v1 request\0", method.encode(), b"\0", path.encode(), b"\0",
                     sha3(body), ts.to_bytes(8, "big"), nonce, sha3(token.encode()))
        return f"id={self.id}, ts={ts}, nonce={b64e(nonce)}, mac={b64e(digest)}"


class BindingClient:
    """One ML-KEM-768 key pair (kyber-py) and the bindings made with it."""

    def __init__(self) -> None:
        self.ek, self.dk = ML_KEM_768.keygen()

    def open(self, answer: dict[str, Any]) -> Binding:
        """Decapsulates the answer of the bind endpoint and checks the key."""
        binding_id = answer["binding_id"]
        ct = b64d(answer["ciphertext"])
        ss = ML_KEM_768.decaps(self.dk, ct)
        wrap = mac(ss, b"pqguard-bind-v1 wrap\0", binding_id.encode(), b"\0", sha3(ct))
        key = bytes(a ^ b for a, b in zip(b64d(answer["wrapped_key"]), wrap, strict=True))
        check = mac(key, b"pqguard-bind-v1 check\0", binding_id.encode())[:16]
        if not hmac.compare_digest(check, b64d(answer["key_check"])):
            raise ValueError("the key check fails: not our key, or the answer was altered")
        return Binding(binding_id, key, int(answer["expires_at"]))

    def bind(self, http: httpx.Client, base_url: str, token: str) -> Binding:
        response = self.bind_raw(http, base_url, token)
        if response.status_code != 200:
            raise RuntimeError(f"bind: HTTP {response.status_code}: {response.text}")
        return self.open(response.json())

    def bind_raw(self, http: httpx.Client, base_url: str, token: str) -> httpx.Response:
        return http.post(base_url.rstrip("/") + BIND_PATH, content=json.dumps({"ek": b64e(self.ek)}),
                         headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
