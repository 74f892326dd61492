"""An independent client of pqguard's ML-KEM bound sessions, written from the README's description:
ML-KEM-768 from the pure-Python ``kyber-py`` (FIPS 203), HMAC-SHA3-256 from the standard library.

    client = BindingClient()                       # a fresh ML-KEM-768 key pair
    token = <minted with cnf = {"mlkem#S3-256": thumbprint(client.ek)}>
    binding = client.bind(http, bind_url, token)   # POST /.well-known/pqguard/bind, opened
    headers["pqguard-binding"] = binding.proof("POST", "/mcp?x", body, token,
                                               authority="edge:8443", headers=headers)

The proof is format 2: the MAC covers the method, the path, the authority, the MCP headers that
route a request (``Mcp-Session-Id``, ``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name``), the
body, the time, the nonce and the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

import httpx
from kyber_py.ml_kem import ML_KEM_768

BIND_PATH = "/.well-known/pqguard/bind"
PROOF_HEADER = "pqguard-binding"
TICKET_HEADER = "pqguard-ticket"


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sha3(data: bytes) -> bytes:
    return hashlib.sha3_256(data).digest()


def mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha3_256).digest()


# The request headers a proof covers after the authority, in order.
COVERED_HEADERS = ("mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name")


def field(value: bytes | None) -> bytes:
    """``1 ‖ length (4 bytes, big-endian) ‖ value``, or ``0`` for an absent header."""
    if value is None:
        return b"\0"
    return b"\1" + len(value).to_bytes(4, "big") + value


def thumbprint(ek: bytes) -> str:
    """The ``mlkem#S3-256`` member of a token's ``cnf`` claim for this key."""
    return b64e(sha3(ek))


@dataclass
class Binding:
    id: str
    key: bytes
    expires_at: int
    # The session ticket the edge sealed for this binding (opaque to the client), if any: sent as
    # ``PQGuard-Ticket`` instead of the token, with proofs whose ``token`` is the ticket's text.
    ticket: str | None = None

    def proof(self, method: str, path: str, body: bytes, token: str, *, authority: str | None,
              headers: Mapping[str, str] | None = None, ts: int | None = None,
              nonce: bytes | None = None) -> str:
        """The ``PQGuard-Binding`` header value of one request: ``authority`` is the ``Host`` sent,
        ``headers`` the request's headers (the covered ones are picked out, names in any case)."""
        ts = int(time.time()) if ts is None else ts
        nonce = os.urandom(16) if nonce is None else nonce
        lower = {k.lower(): v for k, v in (headers or {}).items()}
        covered = [field(None if authority is None else authority.encode())]
        covered += [field(lower[h].encode() if h in lower else None) for h in COVERED_HEADERS]
        digest = mac(self.key, b"pqguard-bind-v2 request\0", field(method.encode()), field(path.encode()),
                     *covered, sha3(body), ts.to_bytes(8, "big"), field(nonce), sha3(token.encode()))
        return f"v=2, id={self.id}, ts={ts}, nonce={b64e(nonce)}, mac={b64e(digest)}"


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
        return Binding(binding_id, key, int(answer["expires_at"]), answer.get("ticket"))

    def bind(self, http: httpx.Client, base_url: str, token: str) -> Binding:
        response = self.bind_raw(http, base_url, token)
        if response.status_code != 200:
            raise RuntimeError(f"bind: HTTP {response.status_code}: {response.text}")
        return self.open(response.json())

    def bind_raw(self, http: httpx.Client, base_url: str, token: str) -> httpx.Response:
        return http.post(base_url.rstrip("/") + BIND_PATH, content=json.dumps({"ek": b64e(self.ek)}),
                         headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
