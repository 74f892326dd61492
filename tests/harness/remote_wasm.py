"""The edge loading pqguard over HTTP (``vm_config.code.remote``), for example from an OCI registry.

Envoy fetches the module once at start-up through a cluster, checks its
SHA-256 and refuses it if the digest differs. In an OCI registry the *oci*
variant's module layer is the raw module, so its blob URL
(``/v2/<repository>/blobs/sha256:<hex>``) serves exactly pqguard.wasm and the
blob digest is the ``sha256`` Envoy checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .envoy import EnvoyProcess
from .processes import ManagedProcess
from .topology import Topology

REGISTRY_CLUSTER = "pqguard_code"
_LOCAL_CODE = re.compile(r"^(?P<indent> *)code: \{ local: \{ filename: \"[^\"]*\" \} \}$", re.MULTILINE)


@dataclass(frozen=True)
class RemoteCode:
    """Where Envoy fetches the module: an ``http://127.0.0.1:<port>/…`` URL and the module's SHA-256 (hex)."""

    url: str
    sha256: str
    timeout_seconds: int = 10

    @property
    def host_port(self) -> tuple[str, int]:
        match = re.fullmatch(r"http://(127\.0\.0\.1):(\d+)/.*", self.url)
        if not match:
            raise ValueError(f"remote code URL must be http://127.0.0.1:<port>/...: {self.url}")
        return match.group(1), int(match.group(2))


def remote_code_block(code: RemoteCode, indent: str) -> str:
    """``code: remote`` for ``vm_config``, at ``indent``."""
    lines = [
        "code:",
        "  remote:",
        "    http_uri:",
        f"      uri: {code.url}",
        f"      cluster: {REGISTRY_CLUSTER}",
        f"      timeout: {code.timeout_seconds}s",
        f"    sha256: {code.sha256}",
        "    retry_policy: { num_retries: 3 }",
    ]
    return "\n".join(indent + line for line in lines)


def code_cluster(code: RemoteCode, indent: str = "  ") -> str:
    host, port = code.host_port
    lines = [
        f"- name: {REGISTRY_CLUSTER}",
        "  type: STATIC",
        "  connect_timeout: 5s",
        "  load_assignment:",
        f"    cluster_name: {REGISTRY_CLUSTER}",
        "    endpoints:",
        "    - lb_endpoints:",
        "      - endpoint:",
        "          address:",
        f"            socket_address: {{ address: {host}, port_value: {port} }}",
    ]
    return "\n".join(indent + line for line in lines)


def with_remote_code(edge_config: str, code: RemoteCode) -> str:
    """An edge configuration (rendered from envoy/edge.yaml) with pqguard's code fetched from ``code``.

    Replaces the one ``code: { local: … }`` line of the pqguard filter and adds
    the cluster the fetch goes through. Fails if the configuration does not
    have exactly one such line or one ``clusters:`` section.
    """
    matches = list(_LOCAL_CODE.finditer(edge_config))
    if len(matches) != 1:
        raise ValueError(f"expected one pqguard 'code: {{ local: ... }}' line, found {len(matches)}")
    text = _LOCAL_CODE.sub(lambda m: remote_code_block(code, m.group("indent")), edge_config)
    marker = "\n  clusters:\n"
    if text.count(marker) != 1:
        raise ValueError("expected one static_resources.clusters section")
    return text.replace(marker, marker + code_cluster(code) + "\n", 1)


class RemoteCodeTopology(Topology):
    """The e2e topology (tests/harness/topology.py) whose edge fetches pqguard from ``code`` instead of a file.

    ``wasm`` is still required by Topology (it checks the file exists) but the
    edge configuration no longer refers to it.
    """

    def __init__(self, code: RemoteCode, **kwargs: Any) -> None:
        super().__init__(with_filter=True, **kwargs)
        self.code = code

    def _launch(self, process: ManagedProcess) -> None:
        if isinstance(process, EnvoyProcess) and process.name == "edge-envoy":
            process.config_path.write_text(with_remote_code(process.config_path.read_text(), self.code))
        super()._launch(process)
