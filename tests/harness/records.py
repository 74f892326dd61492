"""The records pqguard writes to Envoy's log.

pqguard logs one line per request, one per ``tools/list`` answer it read, one
at VM start, one per alert (downgrade, pin violation, latency spike, flagged
identity) and one per JWKS fetch outcome, each a marker followed by a JSON
object on the same line; Envoy puts its own prefix before it, with the id of the
thread (one VM per thread) that logged it::

    [2026-...][1234][info][wasm] [source/extensions/common/wasm/context.cc:1192] wasm log pqguard pqguard: pqguard.request {"method": "tools/call", ...}
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .processes import wait_until

REQUEST_MARKER = "pqguard.request "
START_MARKER = "pqguard.start "
TOOLS_MARKER = "pqguard.tools "
ALERT_MARKER = "pqguard.alert "
JWKS_MARKER = "pqguard.jwks "

# Envoy's log prefix: [date time][thread id][level][component]
_THREAD = re.compile(r"^\[[^\]]*\]\[(\d+)\]")

Record = dict[str, Any]


class LogRecordError(ValueError):
    """A log line carries the marker but no valid JSON object after it."""


def log_mark(log_path: Path) -> int:
    """Current size of the log: pass it as ``since`` to see only what is logged afterwards."""
    try:
        return log_path.stat().st_size
    except FileNotFoundError:
        return 0


def _complete_lines(log_path: Path, since: int) -> list[str]:
    try:
        with open(log_path, "rb") as log:
            log.seek(since)
            data = log.read()
    except FileNotFoundError:
        return []
    # A line still being written has no newline yet: leave it for the next read.
    end = data.rfind(b"\n")
    if end < 0:
        return []
    return data[: end + 1].decode("utf-8", "replace").splitlines()


def wait_for_line(log_path: Path, text: str, *, since: int = 0, timeout: float = 10.0) -> str:
    """The first complete log line after ``since`` that contains ``text`` (waits for it)."""
    from .processes import wait_until

    def probe() -> str | None:
        return next((line for line in _complete_lines(log_path, since) if text in line), None)

    return wait_until(probe, timeout=timeout, what=f"a log line with {text!r}")


def parse_marked_lines(lines: list[str], marker: str, *, thread_key: str | None = None) -> list[Record]:
    """The JSON objects that follow ``marker``; with ``thread_key``, each also gets the id of
    the Envoy thread that logged it under that key."""
    decoder = json.JSONDecoder()
    records = []
    for line in lines:
        position = line.find(marker)
        if position < 0:
            continue
        payload = line[position + len(marker):].lstrip()
        try:
            record, _ = decoder.raw_decode(payload)
        except ValueError as err:
            raise LogRecordError(f"no JSON after {marker.strip()!r} ({err}): {line}") from None
        if not isinstance(record, dict):
            raise LogRecordError(f"{marker.strip()!r} is followed by a JSON {type(record).__name__}, not an object: {line}")
        if thread_key is not None:
            match = _THREAD.match(line)
            record[thread_key] = int(match.group(1)) if match else None
        records.append(record)
    return records


def pqguard_log_records(log_path: Path, since: int = 0) -> list[Record]:
    """All ``pqguard.request`` records of the edge log, optionally only those after ``since`` (a byte offset)."""
    return parse_marked_lines(_complete_lines(log_path, since), REQUEST_MARKER)


def pqguard_start_records(log_path: Path, since: int = 0, *, thread_key: str | None = None) -> list[Record]:
    """All ``pqguard.start`` records (one per VM start; see :func:`parse_marked_lines` for ``thread_key``)."""
    return parse_marked_lines(_complete_lines(log_path, since), START_MARKER, thread_key=thread_key)


def pqguard_alert_records(log_path: Path, since: int = 0) -> list[Record]:
    """All ``pqguard.alert`` records: ``{"kind": "downgrade"|"pin_violation"|"latency_spike"|"flagged",
    "identity": "<iss>|<sub>"|null, "tls_group": ..., "detail": ...}``."""
    return parse_marked_lines(_complete_lines(log_path, since), ALERT_MARKER)


def pqguard_jwks_records(log_path: Path, since: int = 0, *, thread_key: str | None = None) -> list[Record]:
    """All ``pqguard.jwks`` records, one per remote key set outcome of one VM:
    ``{"outcome": "installed", "kids": [...], ...}``, ``{"outcome": "rejected", "reason": ...}``
    or ``{"outcome": "fetch_failed", "reason": ..., "retry_in_s": ...}``."""
    return parse_marked_lines(_complete_lines(log_path, since), JWKS_MARKER, thread_key=thread_key)


def pqguard_tools_records(log_path: Path, since: int = 0) -> list[Record]:
    """All ``pqguard.tools`` records (one per ``tools/list`` answer pqguard read:
    ``{"id": <request id>, "tools": [{"name": ..., "digest": <SHA3-256 hex>}, ...]}``)."""
    return parse_marked_lines(_complete_lines(log_path, since), TOOLS_MARKER)


def rpc_id_is(record: Record, expected: Any) -> bool:
    """Whether the record's ``id`` is the JSON-RPC id ``expected``.

    Accepts the id as a JSON value (``"pq-1"``, ``7``) or as its JSON text
    (``'"pq-1"'``, ``"7"``).
    """
    value = record.get("id")
    return value == expected or value == json.dumps(expected)


def _describe(records: list[Record], limit: int = 20) -> str:
    shown = records[-limit:]
    lines = [json.dumps(r, sort_keys=True) for r in shown]
    return f"{len(records)} pqguard.request record(s) seen" + (":\n  " + "\n  ".join(lines) if lines else "")


def wait_for_record(
    log_path: Path,
    predicate: Callable[[Record], bool],
    *,
    since: int = 0,
    timeout: float = 10.0,
    what: str = "a matching pqguard.request record",
) -> Record:
    """Wait until a record logged after ``since`` satisfies ``predicate``; return the first one that does."""

    def probe() -> Record | None:
        return next((r for r in pqguard_log_records(log_path, since) if predicate(r)), None)

    return wait_until(probe, timeout=timeout, what=what,
                      on_timeout=lambda: _describe(pqguard_log_records(log_path, since)))


def wait_for_records(
    log_path: Path,
    condition: Callable[[list[Record]], bool],
    *,
    since: int = 0,
    timeout: float = 10.0,
    what: str = "pqguard.request records",
) -> list[Record]:
    """Wait until the list of records logged after ``since`` satisfies ``condition``; return that list."""

    def probe() -> list[Record] | None:
        records = pqguard_log_records(log_path, since)
        return records if condition(records) else None

    return wait_until(probe, timeout=timeout, what=what,
                      on_timeout=lambda: _describe(pqguard_log_records(log_path, since)))


def wait_for_tools_record(
    log_path: Path,
    predicate: Callable[[Record], bool],
    *,
    since: int = 0,
    timeout: float = 10.0,
    what: str = "a matching pqguard.tools record",
) -> Record:
    """Wait until a ``pqguard.tools`` record logged after ``since`` satisfies ``predicate``; return it."""

    def probe() -> Record | None:
        return next((r for r in pqguard_tools_records(log_path, since) if predicate(r)), None)

    def seen() -> str:
        records = pqguard_tools_records(log_path, since)
        return f"{len(records)} pqguard.tools record(s) seen" + "".join(
            "\n  " + json.dumps(r, sort_keys=True) for r in records[-20:])

    return wait_until(probe, timeout=timeout, what=what, on_timeout=seen)
