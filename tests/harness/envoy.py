"""Envoy configuration templates, Envoy processes and the admin API."""

from __future__ import annotations

import json
import os
import re
import string
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .paths import ENVOY_CONFIG_DIR, envoy_binary
from .processes import ManagedProcess

FILTER_PLACEHOLDER = "${PQGUARD_FILTER}"
EXTRA_CLUSTERS_PLACEHOLDER = "${EXTRA_CLUSTERS}"

# Admin requests go straight to loopback, never through a proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def render_template(name: str, values: Mapping[str, Any]) -> str:
    """Fill in ``envoy/<name>`` (Python ``string.Template``; every variable must be given)."""
    text = (ENVOY_CONFIG_DIR / name).read_text()
    return string.Template(text).substitute({k: str(v) for k, v in values.items()})


def _strip_leading_comments(text: str) -> str:
    lines = text.splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("#")):
        lines.pop(0)
    return "\n".join(lines)


STRUCT_TYPE = '"@type": type.googleapis.com/google.protobuf.Struct'
STRING_VALUE_TYPE = '"@type": type.googleapis.com/google.protobuf.StringValue'


def render_pqguard_filter(
    wasm: Path | str,
    plugin_config: Mapping[str, Any] | str | None = None,
    *,
    config_as_string: bool = False,
    failure_policy: str | None = None,
) -> str:
    """The http_filters entry that loads pqguard (``envoy/pqguard-filter.yaml``), at column 0.

    ``plugin_config`` is a mapping (written as JSON, which is also YAML flow style) or
    the text of a YAML block, inserted verbatim (indented) under the Struct's ``value:``,
    the way an operator writes it in envoy.yaml.

    The template hands the configuration to the plugin as a ``google.protobuf.Struct``:
    Envoy gives a wasm plugin the *serialized protobuf* of that Struct, which pqguard
    decodes. ``config_as_string=True`` (mapping only) hands it over as a
    ``google.protobuf.StringValue`` holding the JSON text instead; pqguard reads both.
    """
    if isinstance(plugin_config, str):
        if config_as_string:
            raise ValueError("config_as_string needs a mapping, not YAML text")
        return _with_yaml_config(render_pqguard_filter(wasm, {YAML_MARKER: True}, failure_policy=failure_policy),
                                 plugin_config)
    config_json = json.dumps(dict(plugin_config or {}), sort_keys=True)
    text = render_template("pqguard-filter.yaml", {"PQGUARD_WASM": str(wasm), "PQGUARD_CONFIG": config_json})
    if failure_policy is not None:
        shipped = re.search(r"failure_policy: ([A-Z_]+)", text)
        if shipped is None:
            raise ValueError("envoy/pqguard-filter.yaml no longer sets failure_policy")
        text = text.replace(shipped.group(0), f"failure_policy: {failure_policy}")
    if config_as_string:
        struct_value = f"value: {config_json}"
        if text.count(STRUCT_TYPE) != 1 or text.count(struct_value) != 1:
            raise ValueError("envoy/pqguard-filter.yaml no longer has the Struct configuration this option rewrites")
        # A JSON string literal is also a valid YAML double-quoted scalar.
        text = text.replace(STRUCT_TYPE, STRING_VALUE_TYPE).replace(struct_value, f"value: {json.dumps(config_json)}")
    return _strip_leading_comments(text)


YAML_MARKER = "__pqguard_yaml_config__"


def _with_yaml_config(block: str, yaml_text: str) -> str:
    """Replace the rendered ``value: {"<YAML_MARKER>": true}`` line by ``value:`` and ``yaml_text`` below it."""
    marker_line = f'value: {json.dumps({YAML_MARKER: True})}'
    lines = block.splitlines()
    (index,) = [i for i, line in enumerate(lines) if line.strip() == marker_line]
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())] + "  "
    body = textwrap.dedent(yaml_text).strip("\n").splitlines()
    lines[index: index + 1] = [indent[:-2] + "value:", *(indent + line if line.strip() else "" for line in body)]
    return "\n".join(lines)


ECDS_RESOURCE = "pqguard"
WASM_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def ecds_filter_entry(xds_dir: Path) -> str:
    """An http_filters entry (at column 0) whose configuration Envoy takes from ``xds_dir/pqguard.yaml``
    and takes again whenever a new file is moved into place (file-based extension config discovery:
    a reload, not a restart). Until a valid configuration arrives the listener does not serve."""
    return f"""\
- name: {ECDS_RESOURCE}
  config_discovery:
    config_source:
      path_config_source:
        path: {xds_dir / "pqguard.yaml"}
        watched_directory: {{ path: {xds_dir} }}
    type_urls: ["{WASM_FILTER_TYPE}"]
"""


def write_ecds(xds_dir: Path, filter_entry: str) -> None:
    """Publish the wasm filter of ``filter_entry`` (a rendered pqguard filter entry) for
    :func:`ecds_filter_entry`: written aside, then renamed into place (what Envoy watches for)."""
    import yaml  # only the ECDS topologies need it

    (entry,) = yaml.safe_load(filter_entry)
    if entry["typed_config"].get("@type") != WASM_FILTER_TYPE:
        raise ValueError(f"not a wasm filter entry: {entry}")
    doc = {"resources": [{
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": ECDS_RESOURCE,
        "typed_config": entry["typed_config"],
    }]}
    xds_dir.mkdir(parents=True, exist_ok=True)
    staged = xds_dir.parent / f".{xds_dir.name}-pqguard.yaml"
    staged.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(staged, xds_dir / "pqguard.yaml")


def _indented(line: str, block: str) -> list[str]:
    """``block``'s lines indented to the column of the placeholder ``line``."""
    indent = line[: len(line) - len(line.lstrip())]
    return [indent + block_line if block_line else "" for block_line in block.splitlines()]


def static_cluster_yaml(name: str, port: int, connect_timeout: str = "2s") -> str:
    """A plain-HTTP static cluster to ``127.0.0.1:port`` (list item at column 0), for
    ``render_edge(extra_clusters=...)``: JWKS servers, audit collectors."""
    return f"""\
- name: {name}
  type: STATIC
  connect_timeout: {connect_timeout}
  load_assignment:
    cluster_name: {name}
    endpoints:
    - lb_endpoints:
      - endpoint:
          address:
            socket_address: {{ address: 127.0.0.1, port_value: {port} }}
"""


def render_edge(values: Mapping[str, Any], pqguard_filter: str | None, *, extra_clusters: str | None = None) -> str:
    """Fill in ``envoy/edge.yaml``; ``pqguard_filter=None`` renders the baseline without the filter.

    The filter block is indented to the column of the ``${PQGUARD_FILTER}`` placeholder.
    ``extra_clusters`` (YAML list items at column 0, for example ``- name: jwks ...``) is
    indented to the column of ``${EXTRA_CLUSTERS}``; without it that line is left out.
    """
    template = (ENVOY_CONFIG_DIR / "edge.yaml").read_text()
    lines = template.splitlines()
    out = []
    for line in lines:
        if line.strip() == FILTER_PLACEHOLDER:
            if pqguard_filter:
                out.extend(_indented(line, pqguard_filter))
            else:
                out.append(indent_comment(line, "(pqguard not loaded: baseline without the filter)"))
        elif line.strip() == EXTRA_CLUSTERS_PLACEHOLDER:
            if extra_clusters:
                out.extend(_indented(line, textwrap.dedent(extra_clusters).strip("\n")))
        else:
            out.append(line)
    text = "\n".join(out) + "\n"
    return string.Template(text).substitute({k: str(v) for k, v in values.items()})


def indent_comment(line: str, comment: str) -> str:
    indent = line[: len(line) - len(line.lstrip())]
    return f"{indent}# {comment}"


def listener_stat_prefix(port: int, host: str = "127.0.0.1") -> str:
    """Stats prefix of a listener that has no stat_prefix of its own: ``listener.<addr>_<port>.``."""
    return f"listener.{host}_{port}."


def admin_get(admin_port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    url = f"http://127.0.0.1:{admin_port}{path}"
    try:
        with _opener.open(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")


def stats(admin_port: int, filter: str | None = None) -> dict[str, int]:
    """Counters and gauges from ``/stats`` (``filter`` is Envoy's regular expression) as ``{name: value}``.

    Histograms and text readouts are left out.
    """
    path = "/stats"
    if filter:
        path += "?filter=" + urllib.request.quote(filter, safe="")
    status, body = admin_get(admin_port, path)
    if status != 200:
        raise RuntimeError(f"GET {path} on admin port {admin_port}: HTTP {status}: {body[:200]}")
    result: dict[str, int] = {}
    for line in body.splitlines():
        name, sep, value = line.partition(": ")
        if sep and re.fullmatch(r"-?\d+", value.strip()):
            result[name.strip()] = int(value)
    return result


def stat(admin_port: int, name: str) -> int:
    """One counter or gauge; 0 if Envoy has not created it (yet)."""
    return stats(admin_port, "^" + re.escape(name) + "$").get(name, 0)


class EnvoyProcess(ManagedProcess):
    """An Envoy started from a rendered configuration file."""

    def __init__(
        self,
        name: str,
        config_text: str,
        run_dir: Path,
        admin_port: int,
        base_id: int,
        concurrency: int | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.config_path = run_dir / f"{name}.yaml"
        self.config_path.write_text(config_text)
        argv = [
            str(envoy_binary()),
            "-c", str(self.config_path),
            # A starting point only: two topologies alive at once whose admin ports differ by less
            # than their Envoy count would otherwise collide ("unable to bind domain socket").
            "--base-id", str(base_id), "--use-dynamic-base-id",
            "--log-level", "info",
            "--component-log-level", "wasm:info",
        ]
        if concurrency:
            argv += ["--concurrency", str(concurrency)]
        argv += extra_args or []
        super().__init__(name, argv, run_dir / f"{name}.log")
        self.admin_port = admin_port
        self.ready_seconds: float | None = None

    def is_ready(self) -> bool:
        try:
            status, body = admin_get(self.admin_port, "/ready", timeout=1.0)
        except (OSError, urllib.error.URLError):
            return False
        return status == 200 and body.strip() == "LIVE"

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.01) -> float:
        """Poll ``GET /ready`` until Envoy answers LIVE; return seconds since the process started."""
        assert self.started_at is not None, "start() first"
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            if self.is_ready():
                self.ready_seconds = time.monotonic() - self.started_at
                return self.ready_seconds
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s; log {self.log_path}:\n{self.log_tail()}")
            time.sleep(interval)

    def stats(self, filter: str | None = None) -> dict[str, int]:
        return stats(self.admin_port, filter)

    def stat(self, name: str) -> int:
        return stat(self.admin_port, name)
