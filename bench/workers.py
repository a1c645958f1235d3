#!/usr/bin/env python3
"""Parallel speed-up on real hosts: the same matrix of real VM hosts (default: two amd64 hosts from
the default matrix, one vCPU each, so two guests fit two cores) run with --workers 1 and then with
--workers 2 through the real CLI, builds cached beforehand. Prints both wall times and the ratio
(target >= 1.6 for 2 workers on 2 cores).

    python bench/workers.py [--hosts bookworm-amd64,bookworm-amd64-cgroup1] [--scenarios useradd,threads,locale]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.config.load import load_matrix

ROOT = Path(__file__).resolve().parents[1]


def run(matrix: Path, reports: Path, workers: int) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(matrix), "--reports", str(reports), "--quiet", f"--workers={workers}"],
        check=False,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", default=str(ROOT / "matrix.yaml"))
    parser.add_argument("--hosts", default="bookworm-amd64,bookworm-amd64-cgroup1")
    parser.add_argument("--image", default="debian-bookworm")
    parser.add_argument("--scenarios", default="useradd,threads,locale")
    args = parser.parse_args()
    source = load_matrix(Path(args.matrix))
    hosts = [source.host(name) for name in args.hosts.split(",")]
    image = source.image(args.image)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        work = Path(tmp)
        (work / "vms").symlink_to(ROOT / "vms")
        (work / "scenarios").symlink_to(ROOT / "scenarios")
        lines = ["version: 1", "retries: 0", "defaults: {vcpus: 1}", "hosts:"]
        lines += [f"  - {{name: {h.name}, release: {h.release}, arch: {h.arch}, engine: {h.engine}, runtime: {h.runtime}, cgroup: {h.cgroup}}}" for h in hosts]
        lines += ["images:", f"  - {{name: {image.name}, release: {image.release}, packages: [{', '.join(image.packages)}]}}"]
        lines += ["scenarios:", *(f"  - {s}" for s in args.scenarios.split(","))]
        matrix = work / "matrix.yaml"
        matrix.write_text("\n".join(lines) + "\n")
        run(matrix, work / "warm-up", 1)  # builds and caches everything, so only running is timed
        one = run(matrix, work / "one", 1)
        two = run(matrix, work / "two", 2)
    print(f"{len(hosts)} hosts x 1 image x {len(args.scenarios.split(','))} scenarios: 1 worker {one:.0f} s, 2 workers {two:.0f} s; "
          f"speed-up {one / two:.2f} (target >= 1.6)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
