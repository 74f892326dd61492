"""Prints the figures of one `just bench` run side by side.

    python3 bench/summary.py DIR

DIR holds what `just bench` wrote: parse-native.json and parse-wasm.json
(`parse-throughput --json`, natively and as wasm in V8) and rps.json
(`envoy_rps.py --json`). A missing file is skipped. Only the standard library
is used.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

OPERATIONS = [
    ("inspect_body", "inspect_body (the filter's body path)"),
    ("json_scan", "json::scan (strict scanner alone)"),
    ("serde_json_value", "serde_json::Value (value tree, for comparison)"),
]


def load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def parse_tables(native: dict[str, Any] | None, wasm: dict[str, Any] | None) -> None:
    runs = [(label, data) for label, data in (("native", native), ("wasm in V8", wasm)) if data]
    if not runs:
        return
    print("Request body inspection, MB/s (10^6 bytes/s) and µs per body, medians")
    for label, data in runs:
        print(f"  {label}: {data['platform']}")
    sizes = [r["size"] for r in runs[0][1]["results"]]
    for key, title in OPERATIONS:
        print()
        head = f"  {title:<48}" + "".join(f"{label:>22}" for label, _ in runs)
        if native and wasm:
            head += f"{'wasm/native':>13}"
        print(head)
        for size in sizes:
            cells = []
            figures = []
            for _, data in runs:
                row = next((r for r in data["results"] if r["size"] == size), None)
                if row is None:
                    cells.append(f"{'-':>22}")
                    continue
                m = row[key]
                figures.append(m["mb_per_s"])
                us = m["median_us"]
                cells.append(f"{m['mb_per_s']:>10.1f} MB/s {us:>8.{2 if us < 100 else 0}f} µs")
            line = f"  {size:<48}" + "".join(cells)
            if native and wasm and len(figures) == 2:
                line += f"{figures[1] / figures[0]:>13.2f}"
            print(line)
    print()


def rps_table(rps: dict[str, Any] | None) -> None:
    if not rps:
        return
    s = rps["settings"]
    print(f"Envoy 1.40 requests/s: --concurrency {s['concurrency']}, wrk {s['threads']} thread, "
          f"{s['connections']} connections, {s['duration']} s per run, direct_response route")
    print(f"  {'scenario':<13} {'filter':<12} {'requests/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'rps ratio':>9} "
          f"{'Envoy CPU µs/req':>16} {'added µs/req':>12}")
    for row in rps["summary"]:
        print(f"  {row['scenario']:<13} {row['filter']:<12} {row['rps']:>10.0f} {row['p50_ms']:>7.2f} "
              f"{row['p99_ms']:>7.2f} {row['rps_ratio']:>9.3f} {row['envoy_cpu_us_per_request']:>16.1f} "
              f"{row['added_cpu_us_per_request']:>12.1f}")
    if rps.get("problems"):
        print("  problems: " + "; ".join(rps["problems"]))
    print()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    directory = Path(argv[1])
    native, wasm, rps = (load(directory / name) for name in ("parse-native.json", "parse-wasm.json", "rps.json"))
    if not (native or wasm or rps):
        print(f"summary.py: no benchmark results in {directory}", file=sys.stderr)
        return 1
    print(f"== pqguard benchmark summary ({os.cpu_count()} CPUs, load average now {os.getloadavg()[0]:.2f}; "
          "figures from a busy or small machine are noisy: compare runs, not digits)")
    print()
    parse_tables(native, wasm)
    rps_table(rps)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
