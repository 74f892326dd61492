"""The Envoy configuration templates and the published example (no topology needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from harness import (
    baseline_requested,
    envoy_binary,
    free_ports,
    make_test_pki,
    render_edge,
    render_pqguard_filter,
    wasm_path,
)
from harness.example import EXAMPLE_PATH, EXAMPLE_VALUES, EXAMPLE_WASM, render_edge_example

VALUES = {**EXAMPLE_VALUES}


def http_filter_names(config: str) -> list[str]:
    """Names of the http_filters entries, in order (the edge has one HTTP connection manager)."""
    section = config.split("http_filters:", 1)[1].split("\n  clusters:", 1)[0]
    return [line.split("- name:", 1)[1].strip() for line in section.splitlines() if line.strip().startswith("- name:")]


def test_filter_order_in_edge_config() -> None:
    with_filter = render_edge(VALUES, render_pqguard_filter("/x/pqguard.wasm", {}))
    assert http_filter_names(with_filter) == [
        "envoy.filters.http.set_filter_state", "envoy.filters.http.wasm", "envoy.filters.http.router"]
    baseline = render_edge(VALUES, None)
    assert http_filter_names(baseline) == ["envoy.filters.http.set_filter_state", "envoy.filters.http.router"]
    assert "pqguard.wasm" not in baseline


def test_plugin_configuration_is_passed_as_json() -> None:
    block = render_pqguard_filter("/x/pqguard.wasm", {"max_body_bytes": 4096})
    assert 'value: {"max_body_bytes": 4096}' in block
    assert 'filename: "/x/pqguard.wasm"' in block


def test_edge_example_is_current() -> None:
    assert EXAMPLE_PATH.read_text() == render_edge_example(), "run: python tests/render_edge_example.py"


def test_edge_example_is_a_valid_envoy_configuration(tmp_path: Path) -> None:
    """``envoy --mode validate`` on the published example, with its files in a temporary directory."""
    wasm = wasm_path()
    if not wasm.is_file():
        if baseline_requested():
            pytest.skip("baseline run: no pqguard module to validate the example with")
        pytest.fail(f"pqguard module not found at {wasm}")
    pki = make_test_pki(tmp_path / "pki")
    files = tmp_path / "etc"
    files.mkdir()
    shutil.copy(pki.ca_cert, files / "ca.crt")
    shutil.copy(pki.edge_cert, files / "edge.crt")
    shutil.copy(pki.edge_key, files / "edge.key")
    shutil.copy(wasm, files / Path(EXAMPLE_WASM).name)
    config = tmp_path / "edge.yaml"
    config.write_text(EXAMPLE_PATH.read_text().replace("/etc/pqguard/", f"{files}/"))
    (base_id,) = free_ports(1)
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(config), "--base-id", str(base_id)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"configuration '{config}' OK" in result.stdout + result.stderr
