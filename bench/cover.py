#!/usr/bin/env python3
"""Covering arrays of the default matrix: cells run and value combinations covered, at strengths
2 and 3, and how long choosing them takes.

    python bench/cover.py [--matrix matrix.yaml]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.cells.cover import cover
from harness.config.load import load_matrix

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", default=str(ROOT / "matrix.yaml"))
    matrix = load_matrix(parser.parse_args().matrix)
    cells = [(h.name, i.name, s.name) for h in matrix.hosts for i in matrix.images for s in matrix.scenarios]
    for strength in (2, 3):
        started = time.monotonic()
        found = cover(matrix, cells, strength)
        print(f"strength {strength}: {found.summary(len(cells))}; {len(found.chosen) / len(cells):.2f} of the cells, chosen in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
