"""Write envoy/edge.example.yaml from the templates (``--check``: only verify that it is current)."""

from __future__ import annotations

import argparse
import sys

from harness.example import EXAMPLE_PATH, render_edge_example


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is missing or out of date")
    args = parser.parse_args(argv)
    text = render_edge_example()
    current = EXAMPLE_PATH.read_text() if EXAMPLE_PATH.exists() else None
    if args.check:
        if current != text:
            print(f"{EXAMPLE_PATH} is out of date: run python tests/render_edge_example.py", file=sys.stderr)
            return 1
        return 0
    if current != text:
        EXAMPLE_PATH.write_text(text)
        print(f"wrote {EXAMPLE_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
