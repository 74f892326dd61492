"""`pqguard pin` against an independent computation of the tool digests.

The digest of a tool is SHA3-256 over the canonical JSON of its name, title,
description, inputSchema, outputSchema and annotations (those present): keys
sorted, no whitespace, non-ASCII kept as UTF-8. Python's json module produces
the same text, so hashlib gives the expected pins.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = Path(os.environ.get("PQGUARD_CLI", REPO / "target" / "debug" / "pqguard"))
MEMBERS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")

TOOLS = [
    {"name": "echo", "description": "Échо text", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
    {"name": "run_python", "title": "Run", "description": "Pretends", "inputSchema": {"type": "object"},
     "annotations": {"destructiveHint": True}, "_meta": {"ignored": 1}},
]


def expected() -> dict[str, str]:
    out = {}
    for tool in TOOLS:
        canonical = {k: tool[k] for k in MEMBERS if k in tool}
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        out[tool["name"]] = hashlib.sha3_256(text.encode()).hexdigest()
    return out


def pin(stdin: bytes) -> dict[str, str]:
    done = subprocess.run([str(CLI), "pin"], input=stdin, capture_output=True, check=True)
    return json.loads(done.stdout)["pins"]


def test_pins_of_a_json_answer_match_an_independent_digest() -> None:
    answer = {"jsonrpc": "2.0", "id": 3, "result": {"tools": TOOLS}}
    assert pin(json.dumps(answer, indent=2).encode()) == expected()


def test_pins_of_an_event_stream_answer_match_an_independent_digest() -> None:
    answer = {"jsonrpc": "2.0", "id": 3, "result": {"tools": TOOLS}}
    stream = f": ping\n\nevent: message\ndata: {json.dumps(answer)}\n\n".encode()
    assert pin(stream) == expected()


def test_a_body_without_a_tools_list_answer_is_an_error() -> None:
    done = subprocess.run([str(CLI), "pin"], input=b'{"jsonrpc":"2.0","id":1,"result":{}}', capture_output=True)
    assert done.returncode == 2
    assert b"no tools/list answer" in done.stderr
