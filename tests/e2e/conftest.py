"""One topology for the whole session: MCP server, server-side Envoy, edge Envoy with pqguard, client Envoy.

Tests that need another plugin configuration start their own topology with
:func:`start_extra_topology` (its logs are added to failure reports too).

Environment:
  PQGUARD_WASM            the module to load (default: dist/pqguard.wasm)
  PQGUARD_E2E_NO_FILTER=1 run the edge without pqguard: the traffic tests run,
                          the tests about what pqguard sees are skipped
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from harness import Topology, baseline_requested, wasm_path
from harness.relay import TrailerRelay

NO_FILTER = baseline_requested()
_TOPOLOGY = pytest.StashKey["Topology"]()
_EXTRA_TOPOLOGIES = pytest.StashKey["list[tuple[str, Topology]]"]()


def pytest_report_header(config: pytest.Config) -> str:
    if NO_FILTER:
        return "pqguard e2e: baseline, edge WITHOUT the pqguard filter"
    return f"pqguard e2e: module {wasm_path()}"


@pytest.fixture(scope="session")
def topology(request: pytest.FixtureRequest) -> Iterator[Topology]:
    if not NO_FILTER and not wasm_path().is_file():
        pytest.fail(
            f"pqguard module not found at {wasm_path()}: build dist/pqguard.wasm (or set PQGUARD_WASM), "
            "or set PQGUARD_E2E_NO_FILTER=1 to run only the tests that do not need the filter",
            pytrace=False,
        )
    topo = Topology(with_filter=not NO_FILTER)
    request.config.stash[_TOPOLOGY] = topo
    with topo:
        yield topo


@pytest.fixture
def pqguard(topology: Topology) -> Topology:
    """The topology, for tests about what the filter sees (skipped in a baseline run)."""
    if not topology.with_filter:
        pytest.skip("baseline run: the edge has no pqguard filter")
    return topology


@pytest.fixture(scope="session")
def trailer_relay(topology: Topology) -> TrailerRelay:
    """The relay that turns HTTP/1.1 trailers into HTTP/2 trailers towards the edge (see harness.relay)."""
    return topology.start_trailer_relay()


@pytest.fixture(scope="session")
def small_cap_pqguard(request: pytest.FixtureRequest) -> Topology:
    """A second topology whose pqguard caps request bodies at 4096 bytes (``limits.max_body_bytes``).

    The default cap (1 MiB) equals Envoy's own per-connection buffer limit, so with the
    defaults Envoy's buffer limit and pqguard's cap race for bodies just over 1 MiB; with
    a small cap pqguard decides alone. Skipped in a baseline run.
    """
    if NO_FILTER:
        pytest.skip("baseline run: the edge has no pqguard filter")
    return start_extra_topology(request, {"limits": {"max_body_bytes": 4096}})


def start_extra_topology(
    request: pytest.FixtureRequest,
    plugin_config: Mapping[str, Any] | str | Callable[[Topology], Mapping[str, Any] | str],
    *,
    label: str | None = None,
    plugin_config_as_string: bool = True,
    **topology_options: Any,
) -> Topology:
    """Start another topology whose edge runs pqguard with ``plugin_config``; it stops with the
    requesting fixture (a module-scoped fixture: at the end of the module). Fails like the
    session topology when the module is missing.

    ``plugin_config_as_string=False`` hands the configuration over as the template's
    ``google.protobuf.Struct`` (what an operator writes in envoy.yaml; required for YAML text
    and configuration functions, see :class:`Topology`); the default passes the JSON as a
    ``StringValue``. ``label`` names the topology in failure reports (default: its configuration);
    ``topology_options`` go to :class:`Topology` (for example ``extra_clusters``)."""
    if not wasm_path().is_file():
        pytest.fail(f"pqguard module not found at {wasm_path()}", pytrace=False)
    as_string = plugin_config_as_string and not callable(plugin_config) and not isinstance(plugin_config, str)
    topo = Topology(plugin_config=plugin_config, plugin_config_as_string=as_string, **topology_options)
    extras = request.config.stash.setdefault(_EXTRA_TOPOLOGIES, [])
    extras.append((label or f"the topology with {plugin_config}", topo))
    request.addfinalizer(topo.stop)
    topo.start()
    return topo


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        topo = item.config.stash.get(_TOPOLOGY, None)
        if topo is not None and topo.processes:
            report.sections.append(("process logs (tails)", topo.dump_logs(lines=60)))
        for label, extra in item.config.stash.get(_EXTRA_TOPOLOGIES, []):
            if extra.processes:
                report.sections.append((f"process logs of {label} (tails)", extra.dump_logs(lines=60)))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    topo = config.stash.get(_TOPOLOGY, None)
    if topo is None or topo.edge is None or topo.edge.ready_seconds is None:
        return
    what = "with pqguard" if topo.with_filter else "without pqguard (baseline)"
    terminalreporter.write_sep("-", "pqguard e2e topology")
    terminalreporter.write_line(f"edge Envoy {what}: ready {topo.edge.ready_seconds:.3f} s after process start")
    terminalreporter.write_line(f"run directory (configs, certificates, logs): {topo.run_dir}")
