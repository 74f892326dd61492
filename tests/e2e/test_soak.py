"""The soak's smoke run (``just soak`` runs it for 10 minutes): 30 s of open-loop load at half of
saturation with a key rotation and a configuration push every 10 s, through real Envoy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.paths import REPO_ROOT


def test_soak_smoke_loses_no_request_and_ships_and_signs_every_record(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "soak.py"), "--minutes", "0.5", "--segment-seconds", "10",
         "--json", str(report_path)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert report_path.is_file(), result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads(report_path.read_text())
    # The soak's own verdict: "ok" also asks Envoy's RSS to grow less than 5 %, which 30 s with two
    # configuration pushes cannot judge; every other part of it must hold, and the exit code follows it.
    summary = json.dumps({k: v for k, v in report.items() if k != "segments"}, indent=1)
    assert report["ok"] or report["rss_growth_pct"] >= 5.0, summary + "\n" + result.stdout[-3000:]
    assert result.returncode == (0 if report["ok"] else 1), result.stderr[-2000:]
    assert report["requests"] > 100 and report["failures"] == {}, report
    assert report["key_rotations"] == 2 and report["configuration_pushes"] == 2, report
    assert report["configuration_rejected"] == 0
    assert [s["requests"] > 0 for s in report["segments"]] == [True, True, True], report["segments"]
    audit = report["audit"]
    assert audit["intact"], audit
    assert audit["missing"] == 0 and audit["soak_decisions"] == audit["soak_requests_sent"], audit
    # Chains of replaced configurations ship their last lines before their VM context goes.
    assert audit["shipped_before_stop"] and audit["shipped"] == audit["lines"], audit
    assert audit["chains"] >= 6, "one chain per worker and configuration"
    # Envoy RSS growth (part of "ok") is reported, not asserted here: 30 s is too short to judge it.
