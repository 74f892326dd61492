"""The end-to-end topology: MCP server, server-side Envoy, edge Envoy, client Envoy.

::

  MCP SDK / httpx ─http─> client Envoy ──TLS──> edge Envoy ──TLS 1.3──> server-side Envoy ─http─> MCP server
                          pq_client      X25519MLKEM768   (pqguard)    X25519MLKEM768 only          /mcp
                          pq_h2_client   X25519MLKEM768, HTTP/2
                          classical_client  X25519
  Python (OpenSSL 3.0) ──────TLS, X25519─────> edge Envoy
  raw socket ─http/1.1 + trailers─> trailer relay ──TLS, HTTP/2 + trailers──> edge Envoy   (on demand)

Every process logs to its own file in the run directory; ``stop()`` ends them
all (process groups) whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .certs import TestPki, make_test_pki
from .envoy import (EnvoyProcess, ecds_filter_entry, listener_stat_prefix, render_edge, render_pqguard_filter,
                    render_template, write_ecds)
from .paths import MCP_SERVER_SCRIPT, WORK_ROOT, wasm_path
from .ports import free_ports
from .processes import ManagedProcess, tail, wait_until
from .records import (
    Record,
    log_mark,
    pqguard_alert_records,
    pqguard_jwks_records,
    pqguard_log_records,
    pqguard_start_records,
    pqguard_tools_records,
)
from .relay import TrailerRelay

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

PluginConfig = Mapping[str, Any] | str

KEEP_RUNS = 10  # run directories kept under .work/ (configs, certificates, logs of recent runs)

# Run directories of this process's topologies that have not stopped: never pruned (a test
# session may start more topologies than KEEP_RUNS, and its first one is still running).
_LIVE_RUN_DIRS: set[Path] = set()


def _prune_old_runs(root: Path, keep: int) -> None:
    runs = sorted(root.glob("e2e-*"), key=lambda p: p.stat().st_mtime)
    for old in runs[: max(0, len(runs) - keep + 1)]:
        if old not in _LIVE_RUN_DIRS:
            shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class Ports:
    mcp: int
    server_envoy: int
    server_admin: int
    edge: int
    edge_admin: int
    client_admin: int
    pq_client: int
    pq_h2_client: int
    classical_client: int

    @classmethod
    def allocate(cls) -> Ports:
        return cls(*free_ports(9))


class Topology:
    """Start with ``with Topology() as topo:`` (or ``start()`` / ``stop()``)."""

    def __init__(
        self,
        *,
        with_filter: bool = True,
        wasm: Path | None = None,
        plugin_config: PluginConfig | Callable[[Topology], PluginConfig] | None = None,
        plugin_config_as_string: bool = False,
        run_dir: Path | None = None,
        concurrency: int | None = 2,
        with_client: bool = True,
        extra_clusters: str | None = None,
        mcp_server_args: tuple[str, ...] = (),
        failure_policy: str | None = None,
        plugin_config_via_ecds: bool = False,
    ) -> None:
        """``plugin_config``: a mapping, the text of a YAML block (see :func:`render_pqguard_filter`),
        or a function of the topology that returns either; a function is called once the MCP
        server answers (and before the edge starts), so the configuration can depend on what
        the server offers (for example pinned tool digests). ``plugin_config_as_string`` hands
        a mapping over as a ``StringValue`` instead of the template's ``Struct``.
        ``extra_clusters`` are more clusters for the edge (see :func:`render_edge`);
        ``mcp_server_args`` go to the MCP server (for example ``--routing-tool``).
        ``failure_policy`` replaces the shipped one (``FAIL_CLOSED``, ``FAIL_RELOAD``).
        ``plugin_config_via_ecds`` gives the edge pqguard's filter through a file Envoy watches,
        so :meth:`push_plugin_config` changes it while Envoy runs."""
        self.with_filter = with_filter
        self.wasm = (wasm or wasm_path()) if with_filter else None
        self._plugin_config_source = plugin_config if callable(plugin_config) else None
        self.plugin_config: PluginConfig = (
            {} if callable(plugin_config) or plugin_config is None
            else plugin_config if isinstance(plugin_config, str) else dict(plugin_config))
        self.plugin_config_as_string = plugin_config_as_string
        self.extra_clusters = extra_clusters
        self.mcp_server_args = tuple(mcp_server_args)
        self.failure_policy = failure_policy
        self.plugin_config_via_ecds = plugin_config_via_ecds
        self.concurrency = concurrency
        self.with_client = with_client
        if run_dir is None:
            WORK_ROOT.mkdir(parents=True, exist_ok=True)
            _prune_old_runs(WORK_ROOT, keep=KEEP_RUNS)
            run_dir = Path(tempfile.mkdtemp(prefix=time.strftime("e2e-%Y%m%d-%H%M%S-"), dir=WORK_ROOT))
        self.run_dir = run_dir
        _LIVE_RUN_DIRS.add(run_dir)
        self.ports = Ports.allocate()
        self.pki: TestPki | None = None
        self.mcp_server: ManagedProcess | None = None
        self.server_envoy: EnvoyProcess | None = None
        self.edge: EnvoyProcess | None = None
        self.client: EnvoyProcess | None = None
        self.trailer_relay: TrailerRelay | None = None
        self._processes: list[ManagedProcess] = []

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> Topology:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.with_filter and not (self.wasm and self.wasm.is_file()):
            raise FileNotFoundError(f"pqguard module not found at {self.wasm} (build it, or set PQGUARD_WASM)")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        p = self.ports
        self.pki = make_test_pki(self.run_dir / "pki")
        # Distinct base ids let several Envoys (and several test runs) share the machine.
        base_id = p.edge_admin

        self.mcp_server = ManagedProcess(
            "mcp-server",
            [sys.executable, "-u", str(MCP_SERVER_SCRIPT), "--port", str(p.mcp), *self.mcp_server_args],
            self.run_dir / "mcp-server.log",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._launch(self.mcp_server)

        self.server_envoy = EnvoyProcess(
            "server-envoy",
            render_template("server.yaml", {
                "ADMIN_PORT": p.server_admin, "LISTEN_PORT": p.server_envoy, "MCP_PORT": p.mcp,
                "CERT_CHAIN": self.pki.server_cert, "PRIVATE_KEY": self.pki.server_key,
            }),
            self.run_dir, p.server_admin, base_id + 1, self.concurrency,
        )
        self._launch(self.server_envoy)

        # The client Envoy needs nothing from the others to start: it starts now, and every
        # process comes up in parallel; readiness is awaited once, below.
        if self.with_client:
            self.client = EnvoyProcess(
                "client-envoy",
                render_template("client.yaml", {
                    "ADMIN_PORT": p.client_admin, "PQ_PORT": p.pq_client, "PQ_H2_PORT": p.pq_h2_client,
                    "CLASSICAL_PORT": p.classical_client, "EDGE_PORT": p.edge, "EDGE_SNI": self.pki.edge_name,
                    "CA_CERT": self.pki.ca_cert,
                }),
                self.run_dir, p.client_admin, base_id + 3, self.concurrency,
            )
            self._launch(self.client)

        if self._plugin_config_source is not None:
            self._wait_for_mcp_server()
            config = self._plugin_config_source(self)
            self.plugin_config = config if isinstance(config, str) else dict(config)
        pqguard = (render_pqguard_filter(self.wasm, self.plugin_config, config_as_string=self.plugin_config_as_string,
                                         failure_policy=self.failure_policy)
                   if self.with_filter else None)
        if pqguard is not None and self.plugin_config_via_ecds:
            write_ecds(self.xds_dir, pqguard)
            pqguard = ecds_filter_entry(self.xds_dir)
        edge_config = render_edge({
                "ADMIN_PORT": p.edge_admin, "LISTEN_PORT": p.edge,
                "CERT_CHAIN": self.pki.edge_cert, "PRIVATE_KEY": self.pki.edge_key,
                "UPSTREAM_PORT": p.server_envoy, "UPSTREAM_SNI": self.pki.server_name, "CA_CERT": self.pki.ca_cert,
            }, pqguard, extra_clusters=self.extra_clusters)
        if self.plugin_config_via_ecds:
            # Dynamic resources need a node identity.
            edge_config = "node: { id: pqguard-edge, cluster: pqguard-edge }\n" + edge_config
        self.edge = EnvoyProcess("edge-envoy", edge_config, self.run_dir, p.edge_admin, base_id + 2, self.concurrency)
        self._launch(self.edge)

        for process in self._processes:
            if isinstance(process, EnvoyProcess):
                process.wait_ready()
        # Everything listens; the MCP server must answer too (it started first, but Python is slow).
        self._wait_for_mcp_server()
        (self.run_dir / "ready.json").write_text(json.dumps(self.ready_seconds(), indent=2) + "\n")

    def start_trailer_relay(self) -> TrailerRelay:
        """Start (once) the test-only relay that sends HTTP/2 requests with trailers to the edge
        (see :mod:`harness.relay`); ``stop()`` ends it with the rest."""
        if self.trailer_relay is None:
            assert self.pki is not None and self.edge is not None, "start() first"
            port, admin_port = free_ports(2)
            relay = TrailerRelay(self.run_dir, port=port, admin_port=admin_port, edge_port=self.ports.edge,
                                 edge_sni=self.pki.edge_name, ca_cert=self.pki.ca_cert, base_id=admin_port)
            self._launch(relay)
            relay.wait_ready()
            self.trailer_relay = relay
        return self.trailer_relay

    def ready_seconds(self) -> dict[str, float | None]:
        """Seconds from process start to ``GET /ready`` = LIVE, for each Envoy."""
        return {p.name: p.ready_seconds for p in self._processes if isinstance(p, EnvoyProcess)}

    def _launch(self, process: ManagedProcess) -> None:
        """Start a process without waiting for it (``_start`` waits for all of them at once)."""
        self._processes.append(process)
        process.start()

    def kill_mcp_server(self) -> None:
        """Stop the MCP server (SIGKILL: no goodbye to its clients); :meth:`restart_mcp_server` brings it back."""
        assert self.mcp_server is not None and self.mcp_server.proc is not None, "start() first"
        self.mcp_server.proc.kill()
        self.mcp_server.proc.wait(timeout=10)

    def restart_mcp_server(self) -> None:
        """Start the MCP server again on the same port (a new process: every session it had is gone)."""
        assert self.mcp_server is not None, "start() first"
        self.mcp_server.start()
        self._wait_for_mcp_server()

    def _wait_for_mcp_server(self) -> None:
        wait_until(self._mcp_server_answers, timeout=30, what="the MCP server",
                   on_timeout=lambda: self.mcp_server.log_tail() if self.mcp_server else "")

    def _mcp_server_answers(self) -> bool:
        assert self.mcp_server is not None
        self.mcp_server.check_running()
        try:
            self.mcp_received()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        for process in reversed(self._processes):
            try:
                process.stop()
            except Exception as err:  # keep stopping the others
                print(f"warning: stopping {process.name}: {err}", file=sys.stderr)
        _LIVE_RUN_DIRS.discard(self.run_dir)

    # -- addresses ---------------------------------------------------------------------------

    @property
    def pq_url(self) -> str:
        """MCP endpoint through the client Envoy, X25519MLKEM768 to the edge, HTTP/1.1."""
        return f"http://127.0.0.1:{self.ports.pq_client}/mcp"

    @property
    def pq_h2_url(self) -> str:
        """MCP endpoint through the client Envoy, X25519MLKEM768 to the edge, HTTP/2."""
        return f"http://127.0.0.1:{self.ports.pq_h2_client}/mcp"

    @property
    def classical_url(self) -> str:
        """MCP endpoint through the client Envoy, X25519 to the edge."""
        return f"http://127.0.0.1:{self.ports.classical_client}/mcp"

    @property
    def edge_url(self) -> str:
        """The edge itself (TLS; verify with ``pki.ca_cert``, whose edge certificate covers 127.0.0.1)."""
        return f"https://127.0.0.1:{self.ports.edge}/mcp"

    @property
    def mcp_direct_url(self) -> str:
        """The MCP server itself (plain HTTP, no Envoy, no pqguard): what the server answers unfiltered."""
        return f"http://127.0.0.1:{self.ports.mcp}/mcp"

    @property
    def server_envoy_listener_prefix(self) -> str:
        return listener_stat_prefix(self.ports.server_envoy)

    @property
    def edge_listener_prefix(self) -> str:
        return listener_stat_prefix(self.ports.edge)

    # -- observations ------------------------------------------------------------------------

    @property
    def edge_log(self) -> Path:
        assert self.edge is not None
        return self.edge.log_path

    def edge_log_mark(self) -> int:
        return log_mark(self.edge_log)

    def pqguard_records(self, since: int = 0) -> list[Record]:
        return pqguard_log_records(self.edge_log, since)

    def pqguard_start_records(self) -> list[Record]:
        return pqguard_start_records(self.edge_log)

    def pqguard_tools_records(self, since: int = 0) -> list[Record]:
        return pqguard_tools_records(self.edge_log, since)

    def pqguard_alert_records(self, since: int = 0) -> list[Record]:
        return pqguard_alert_records(self.edge_log, since)

    def pqguard_jwks_records(self, since: int = 0) -> list[Record]:
        """``pqguard.jwks`` records, each with the id of the Envoy thread (VM) that logged it under ``"thread"``."""
        return pqguard_jwks_records(self.edge_log, since, thread_key="thread")

    def pqguard_vm_threads(self) -> set[int]:
        """The Envoy threads that started a pqguard VM (from the ``pqguard.start`` records): the main
        thread and one per worker."""
        return {r["thread"] for r in pqguard_start_records(self.edge_log, thread_key="thread") if r["thread"]}

    def set_tool_description(self, tool: str, description: str | None) -> dict[str, Any]:
        """Change what the MCP server says a tool does (``None``: back to the original), asked directly,
        not through Envoy; returns the server's answer ``{"tool", "description", "original"}``.
        A server that changes a tool after it was approved is a "rug pull"."""
        url = f"http://127.0.0.1:{self.ports.mcp}/debug/tools/{tool}"
        body = json.dumps({"description": description}).encode()
        request = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})
        with _opener.open(request, timeout=5) as response:
            return json.loads(response.read())

    @property
    def xds_dir(self) -> Path:
        """Where the edge's file-based dynamic configuration lives (``plugin_config_via_ecds``)."""
        return self.run_dir / "xds"

    def push_plugin_config(self, plugin_config: PluginConfig, *, wasm: Path | None = None) -> None:
        """Publish a new pqguard filter configuration to the running edge (``plugin_config_via_ecds``).
        Envoy applies it to new requests, or rejects it and keeps the one in force; watch
        ``extension_config_discovery.http_filter.pqguard.config_reload`` / ``config_fail``."""
        if not self.plugin_config_via_ecds:
            raise RuntimeError("this topology takes pqguard's configuration from envoy.yaml")
        self.plugin_config = plugin_config if isinstance(plugin_config, str) else dict(plugin_config)
        write_ecds(self.xds_dir, render_pqguard_filter(
            wasm or self.wasm, self.plugin_config, config_as_string=self.plugin_config_as_string,
            failure_policy=self.failure_policy))

    def mcp_received(self) -> list[dict[str, Any]]:
        """What the MCP server received on /mcp, in order (asked directly, not through Envoy)."""
        url = f"http://127.0.0.1:{self.ports.mcp}/debug/received"
        with _opener.open(url, timeout=2) as response:
            return json.loads(response.read())

    @property
    def processes(self) -> list[ManagedProcess]:
        """The processes started so far, in start order."""
        return list(self._processes)

    def logs(self) -> dict[str, Path]:
        return {process.name: process.log_path for process in self._processes}

    def dump_logs(self, lines: int = 80) -> str:
        """The tail of every process log, for a failure report."""
        parts = [f"run directory: {self.run_dir}"]
        for name, path in self.logs().items():
            parts.append(f"----- {name} ({path}), last {lines} lines -----\n{tail(path, lines)}")
        return "\n".join(parts)
