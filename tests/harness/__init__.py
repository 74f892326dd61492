"""End-to-end test harness for pqguard: certificates, processes, Envoy configurations, log records.

Used by the pytest suite in tests/e2e and by tests/demo.py.
"""

from .certs import TestPki, make_test_pki
from .envoy import EnvoyProcess, admin_get, listener_stat_prefix, render_edge, render_pqguard_filter, stat, stats
from .paths import REPO_ROOT, baseline_requested, envoy_binary, wasm_path
from .ports import free_ports
from .processes import ManagedProcess, wait_until
from .records import (
    LogRecordError,
    log_mark,
    pqguard_log_records,
    pqguard_start_records,
    pqguard_tools_records,
    rpc_id_is,
    wait_for_record,
    wait_for_records,
    wait_for_tools_record,
)
from .topology import Topology

__all__ = [
    "REPO_ROOT",
    "EnvoyProcess",
    "LogRecordError",
    "ManagedProcess",
    "TestPki",
    "Topology",
    "admin_get",
    "baseline_requested",
    "envoy_binary",
    "free_ports",
    "listener_stat_prefix",
    "log_mark",
    "make_test_pki",
    "pqguard_log_records",
    "pqguard_start_records",
    "pqguard_tools_records",
    "render_edge",
    "render_pqguard_filter",
    "rpc_id_is",
    "stat",
    "stats",
    "wait_for_record",
    "wait_for_records",
    "wait_for_tools_record",
    "wait_until",
    "wasm_path",
]
