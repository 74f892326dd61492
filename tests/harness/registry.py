"""A real OCI registry on loopback (Debian's ``docker-registry``), skopeo, and OCI layouts on disk.

The registry is the CNCF Distribution registry, configured to listen on
127.0.0.1:<free port> with its storage in the run directory and no TLS; skopeo
talks to it with ``--*-tls-verify=false``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ports import free_ports
from .processes import ManagedProcess, wait_until

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

WASM_CONTENT_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
OCI_LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def require_tool(name: str) -> str:
    """The path of a command, or a clear error naming the recipe that installs it."""
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found: run `just setup-ship` (Debian packages podman, runc, "
                                "docker-registry, skopeo)")
    return path


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Registry(ManagedProcess):
    """``docker-registry serve`` on 127.0.0.1:<port>, storage and log under ``run_dir``."""

    def __init__(self, run_dir: Path, port: int | None = None) -> None:
        self.port = port or free_ports(1)[0]
        self.storage = run_dir / "registry-storage"
        self.config_path = run_dir / "registry.yml"
        self.storage.mkdir(parents=True, exist_ok=True)
        # Distribution's YAML configuration; JSON is valid YAML.
        self.config_path.write_text(json.dumps({
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}},
            "http": {"addr": f"127.0.0.1:{self.port}"},
        }, indent=2) + "\n")
        super().__init__("registry", [require_tool("docker-registry"), "serve", str(self.config_path)],
                         run_dir / "registry.log")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def get(self, path: str, accept: str | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"http://{self.host}{path}", headers={"Accept": accept} if accept else {})
        try:
            with _opener.open(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def wait_ready(self, timeout: float = 20.0) -> None:
        def answers() -> bool:
            self.check_running()
            try:
                return self.get("/v2/")[0] == 200
            except OSError:
                return False

        wait_until(answers, timeout=timeout, what="the registry to answer GET /v2/",
                   on_timeout=self.log_tail)

    def blob_url(self, repository: str, digest: str) -> str:
        return f"http://{self.host}/v2/{repository}/blobs/{digest}"

    def manifest(self, repository: str, reference: str) -> tuple[str, bytes]:
        """``(Docker-Content-Digest, raw manifest)`` of ``repository:reference``."""
        status, headers, body = self.get(f"/v2/{repository}/manifests/{reference}",
                                         accept="application/vnd.oci.image.manifest.v1+json")
        if status != 200:
            raise RuntimeError(f"GET manifest {repository}:{reference}: HTTP {status}: {body[:200]!r}")
        return headers.get("Docker-Content-Digest", ""), body

    def blob_requests(self) -> list[str]:
        """Access-log lines of blob GETs, in order."""
        return [line for line in self.log_tail(100000).splitlines()
                if '"GET /v2/' in line and "/blobs/" in line]


def skopeo(*args: str, timeout: float = 120.0) -> str:
    """Run skopeo; return its stdout, raise with its stderr on failure."""
    argv = [require_tool("skopeo"), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class LayoutImage:
    """One image of an OCI layout: its tag, manifest digest and parsed manifest."""

    layout: Path
    ref_name: str
    digest: str
    manifest: dict[str, Any]

    def blob(self, digest: str) -> bytes:
        algorithm, _, encoded = digest.partition(":")
        return (self.layout / "blobs" / algorithm / encoded).read_bytes()

    def wasm(self) -> bytes:
        """The module: the *oci* variant's wasm layer, or ``plugin.wasm`` in the *compat* variant's tar+gzip layer."""
        layers = self.manifest["layers"]
        for layer in layers:
            if layer["mediaType"] == WASM_CONTENT_LAYER:
                return self.blob(layer["digest"])
        last = layers[-1]
        if last["mediaType"] != OCI_LAYER_TAR_GZIP:
            raise ValueError(f"{self.ref_name}: no wasm layer and last layer is {last['mediaType']}")
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(self.blob(last["digest"])))) as tar:
            member = tar.extractfile("plugin.wasm")
            if member is None:
                raise ValueError(f"{self.ref_name}: plugin.wasm is not a regular file")
            return member.read()


def layout_images(layout: Path) -> dict[str, LayoutImage]:
    """``{ref name: image}`` of an OCI layout's index.json."""
    index = json.loads((layout / "index.json").read_text())
    images = {}
    for entry in index["manifests"]:
        ref = entry.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
        algorithm, _, encoded = entry["digest"].partition(":")
        manifest = json.loads((layout / "blobs" / algorithm / encoded).read_bytes())
        images[ref] = LayoutImage(layout, ref, entry["digest"], manifest)
    return images
