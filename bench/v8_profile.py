#!/usr/bin/env python3
"""Where a wasm32-wasip1 benchmark binary spends its time in V8, by function.

    CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --locked \\
        --target wasm32-wasip1 -p pqguard-bench --bin decision-costs
    python3 bench/v8_profile.py target/wasm32-wasip1/release/decision-costs.wasm \\
        [--under MlDsaKey6verify] [--top 25]

Runs the module with `node --cpu-prof` through `bench/run-wasm.mjs` (TurboFan only, as in Envoy),
then prints each function's share of the samples taken while FRAME (a substring of a mangled
name, for example `MlDsaKey6verify` or `decision_costs8exchange`) was on the stack, or of all
samples without `--under`. Build with symbols kept (the release profile strips them), or every
function is `wasm-function[N]`. Self time only: a function's callees are listed separately.
Figures only, like every benchmark here: nothing is asserted.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def demangle(name: str) -> str:
    """Rust legacy mangling (`_ZN...E`) to a readable path without the hash; others unchanged."""
    m = re.fullmatch(r"_ZN(.*)E", name)
    if not m:
        return name
    rest, parts = m.group(1), []
    while rest and rest[0].isdigit():
        n = int(re.match(r"\d+", rest).group(0))  # type: ignore[union-attr]
        rest = rest[len(str(n)):]
        parts.append(rest[:n])
        rest = rest[n:]
    if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()
    text = "::".join(parts)
    for code, char in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$RF$", "&"), ("$C$", ","),
                       ("$u5b$", "["), ("$u5d$", "]"), ("$u7b$", "{"), ("$u7d$", "}"), ("$LP$", "("),
                       ("$RP$", ")"), ("..", "::")):
        text = text.replace(code, char)
    return re.sub(r"(^|::)_<", r"\1<", text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wasm", type=Path)
    ap.add_argument("--under", default="", help="only samples with a frame whose mangled name contains this")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pqguard-v8prof-") as out:
        run = subprocess.run(["node", "--cpu-prof", f"--cpu-prof-dir={out}", "--cpu-prof-interval", "50",
                              str(REPO / "bench" / "run-wasm.mjs"), "--wasm", str(a.wasm)],
                             capture_output=True, text=True, check=False)
        if run.returncode != 0:
            sys.exit(f"the benchmark failed:\n{run.stderr}")
        profiles = list(Path(out).glob("*.cpuprofile"))
        if not profiles:
            sys.exit("node wrote no profile")
        profile = json.loads(profiles[0].read_text())
    nodes = {n["id"]: n for n in profile["nodes"]}
    parent = {c: n["id"] for n in profile["nodes"] for c in n.get("children", [])}

    def on_stack(nid: int | None) -> bool:
        while nid is not None:
            if a.under in nodes[nid]["callFrame"]["functionName"]:
                return True
            nid = parent.get(nid)
        return False

    by_function: collections.Counter[str] = collections.Counter()
    for nid, count in collections.Counter(profile["samples"]).items():
        if not a.under or on_stack(nid):
            by_function[nodes[nid]["callFrame"]["functionName"] or "(V8)"] += count
    total = sum(by_function.values())
    if total == 0:
        sys.exit(f"no samples with {a.under!r} on the stack")
    print(f"{total} samples" + (f" with {a.under!r} on the stack" if a.under else ""))
    for name, count in by_function.most_common(a.top):
        print(f"{100 * count / total:5.1f}%  {demangle(name)[:160]}")
    print(run.stdout, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
