"""Shipping tests: the OCI image through a real registry, the compose stack under podman, the Kubernetes examples.

Run with ``just test-ship`` (after ``just setup-ship``, which installs podman,
runc, docker-registry and skopeo from Debian). Environment:
  PQGUARD_WASM   the module to package and load (default: dist/pqguard.wasm)
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from harness import REPO_ROOT, wasm_path
from harness.paths import WORK_ROOT

KEEP_RUNS = 5


def pytest_report_header(config: pytest.Config) -> str:
    return f"pqguard ship tests: module {wasm_path()}"


def load_script(relative: str) -> ModuleType:
    """Import a stand-alone script of the repository (for example deploy/oci/build_layout.py) as a module."""
    path = REPO_ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def wasm() -> Path:
    path = wasm_path()
    if not path.is_file():
        pytest.fail(f"pqguard module not found at {path}: run `just build` (or set PQGUARD_WASM)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def oci_builder() -> ModuleType:
    return load_script("deploy/oci/build_layout.py")


@pytest.fixture(scope="session")
def ship_run_dir() -> Path:
    """A fresh directory under .work/ for this session's files and logs (the last few are kept)."""
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    runs = sorted(WORK_ROOT.glob("ship-*"), key=lambda p: p.stat().st_mtime)
    for old in runs[: max(0, len(runs) - KEEP_RUNS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("ship-%Y%m%d-%H%M%S-"), dir=WORK_ROOT))


@pytest.fixture
def run_dir(ship_run_dir: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A directory for one test, inside the session's run directory."""
    path = ship_run_dir / request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    path.mkdir(parents=True, exist_ok=True)
    yield path
