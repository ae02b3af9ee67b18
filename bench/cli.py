"""``bench`` console script (the benchmark harness lands with the bench-spine issue)."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description="DefocusBench evaluation harness")
    parser.add_argument("--version", action="version", version="defocus-bench 0.1.0")
    parser.parse_args(argv)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
