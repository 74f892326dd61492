"""`just demo` tells the story it claims: its `--json` form (act 2: tokens, policy, refusals, the
downgrade alert, the audit trail), run as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.paths import wasm_path


def test_the_demo_shows_allowed_refused_alerted_and_audited() -> None:
    demo = Path(__file__).resolve().parents[1] / "demo.py"
    done = subprocess.run([sys.executable, str(demo), "--json", "--wasm", str(wasm_path())],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    act = json.loads(done.stdout)
    steps = {s["step"]: s for s in act["steps"]}
    assert steps["pq: tools/list"]["tools"] == ["echo", "read_record", "run_python"]
    assert steps["pq: run_python"]["status"] == 200
    assert steps["pq: run_python"]["group"] == "X25519MLKEM768" and steps["pq: run_python"]["token_alg"] == "ML-DSA-65"
    assert steps["classical: tools/list"]["tools"] == ["echo", "read_record"]
    assert (steps["classical: run_python"]["status"], steps["classical: run_python"]["reason"]) == (403, "requirement_not_met")
    assert (steps["pq: forged token"]["status"], steps["pq: forged token"]["reason"]) == (401, "bad_signature")
    assert (steps["pq: expired token"]["status"], steps["pq: expired token"]["reason"]) == (401, "expired")
    assert act["alerts"] and all(a["kind"] == "downgrade" and a["identity"].endswith("|alice") for a in act["alerts"])
    assert act["audit_verify"]["exit"] == 0 and "intact" in act["audit_verify"]["output"]
    assert "Still using classical cryptography" in act["inventory"] and "alice: kex:X25519" in act["inventory"]
    assert act["problems"] == []
