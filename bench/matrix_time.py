#!/usr/bin/env python3
"""Whole-matrix time: a matrix (default: the default one) run for real through the CLI, warm (the
build caches as they are) or cold (a fresh, empty cache directory: every host and image built).
Prints the wall time, the cells by outcome, the time per cell, the utilisation (the guests' CPU
time over cores x wall time), and the hosts' own figures (boot, deliveries, cells), so a slice of a
matrix can be measured by itself with pytest's -k.

    python bench/matrix_time.py [--matrix matrix.yaml] [--cold] [--workers auto] [-- -k "bookworm-amd64 and not docker"]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", default=str(ROOT / "matrix.yaml"))
    parser.add_argument("--cold", action="store_true", help="build everything into a fresh cache directory")
    parser.add_argument("--workers", default="auto")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest (-k to take a slice)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="matrix-time-") as tmp:
        env = {**os.environ, **({"HARNESS_CACHE": str(Path(tmp) / "cache")} if args.cold else {})}
        reports = Path(tmp) / "reports"
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "harness.cli", "run", args.matrix, "--reports", str(reports), "--quiet", "--workers", args.workers, *args.pytest_args],
            env=env, capture_output=True, text=True,
        )
        seconds = time.monotonic() - started
        try:
            results = json.loads((reports / "results.json").read_text())
        except OSError:
            raise SystemExit(f"the run left no results:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}") from None
    cells = results["cells"].values()
    outcomes = collections.Counter(c["outcome"] for c in cells)
    print(f"{'cold' if args.cold else 'warm'} run of {args.matrix} {' '.join(args.pytest_args)} with --workers {args.workers}: "
          f"{seconds:.0f} s wall ({seconds / 60:.1f} min), {len(cells)} cells, {seconds / max(len(cells), 1):.2f} s per cell")
    print("  outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    # How busy the guests kept the machine: their CPU time (from libvirt, when each stopped) over
    # all the cores for the whole wall time.
    busy = sum(h.get("cpu_seconds") or 0 for h in results["hosts"].values())
    print(f"  utilisation: guests busy {busy:.0f} s of {os.cpu_count()} cores x {seconds:.0f} s = {busy / (os.cpu_count() * seconds):.2f}")
    by_host = collections.defaultdict(float)
    for c in cells:
        by_host[c["host"]] += c["duration"]
    for name, host in sorted(results["hosts"].items()):
        if name not in by_host:
            continue  # outside the slice
        deliveries = [d for d in results.get("deliveries", {}).values() if d["host"] == name]
        print(f"  {name}: ready in {host.get('boot_seconds')} s ({host.get('accel')}), {len(deliveries)} deliveries "
              f"{sum(d['duration'] for d in deliveries):.0f} s, cells {by_host[name]:.0f} s{'; error: ' + host['error'][:200] if host.get('error') else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
