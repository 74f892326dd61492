"""Test PKI generated with the openssl command line: one CA, two server certificates.

All keys are ECDSA P-256. TLS key exchange (X25519MLKEM768) is independent of
the certificate's signature algorithm, so classical certificates are fine for
post-quantum key exchange.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

EDGE_NAME = "localhost"
SERVER_NAME = "mcp-server.local"


@dataclass(frozen=True)
class TestPki:
    directory: Path
    ca_cert: Path
    edge_cert: Path
    edge_key: Path
    server_cert: Path
    server_key: Path
    edge_name: str = EDGE_NAME
    server_name: str = SERVER_NAME


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def _issue(directory: Path, name: str, subject: str, san: str) -> tuple[Path, Path]:
    key, csr, cert, ext = (directory / f"{name}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
        f"subjectAltName = {san}\n"
    )
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key.name, "-out", csr.name, "-subj", subject, cwd=directory)
    _openssl("x509", "-req", "-in", csr.name, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-sha256", "-extfile", ext.name, "-out", cert.name, cwd=directory)
    return cert, key


def make_test_pki(directory: Path) -> TestPki:
    """Create a CA and the certificates of the edge (``localhost``, 127.0.0.1) and the
    server-side Envoy (``mcp-server.local``) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-sha256",
             "-subj", "/CN=pqguard test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=directory)
    edge_cert, edge_key = _issue(directory, "edge", f"/CN={EDGE_NAME}", f"DNS:{EDGE_NAME}, IP:127.0.0.1")
    server_cert, server_key = _issue(directory, "server", f"/CN={SERVER_NAME}", f"DNS:{SERVER_NAME}")
    return TestPki(directory=directory, ca_cert=directory / "ca.crt", edge_cert=edge_cert, edge_key=edge_key,
                   server_cert=server_cert, server_key=server_key)
