#!/usr/bin/env python3
"""Scale benchmark: a generated matrix of HOSTS x IMAGES x SCENARIOS cells (default 10 x 10 x 10 =
1,000) run through the real CLI, pytest plugin, scheduler (xdist with --workers), result recording
and report, with stub hosts that answer at once (bench/stub_provider.py). Prints the wall time,
the harness's own cost per cell, the speed-up of 2 workers over 1, and what an unchanged rerun
with --reuse (2 workers) costs per cell (issue 19: the default matrix's 2,352 cells in < 60 s).

    python bench/scale.py [--hosts 10 --images 10 --scenarios 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def generate(directory: Path, hosts: int, images: int, scenarios: int) -> Path:
    lines = ["version: 1", "retries: 0", "hosts:"]
    for h in range(hosts):
        arch = ("amd64", "arm64")[h % 2]
        lines.append(f"  - {{name: host-{h:03d}, release: bookworm, arch: {arch}, engine: podman}}")
    lines.append("images:")
    lines += [f"  - {{name: image-{i:03d}, release: bookworm}}" for i in range(images)]
    lines.append("scenarios:")
    for s in range(scenarios):
        name = f"scenario-{s:03d}" + ("-fails" if s % 10 == 9 else "")
        path = directory / "scenarios" / name
        path.mkdir(parents=True)
        (path / "run").write_text("#!/bin/sh\nexit 0\n")
        (path / "run").chmod(0o755)
        (path / "scenario.yaml").write_text(f"purpose: generated scenario {s}\ndimension: engine\n")
        lines.append(f"  - {name}")
    (directory / "vms").symlink_to(ROOT / "vms")
    matrix = directory / "matrix.yaml"
    matrix.write_text("\n".join(lines) + "\n")
    return matrix


def run(matrix: Path, workers: int, *extra: str) -> tuple[float, int]:
    reports = matrix.parent / f"reports-{workers}{''.join(extra)}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(matrix.parent / "cache")}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(matrix), "--reports", str(reports), "--workers", str(workers), "--quiet", "-p", "bench.stub_provider", *extra],
        capture_output=True, text=True, env=env,
    )
    seconds = time.monotonic() - started
    cells = len(json.loads((reports / "results.json").read_text())["cells"])
    if not (reports / "matrix.html").exists():
        raise SystemExit(f"no report with {workers} workers:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return seconds, cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--scenarios", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="harness-scale-") as tmp:
        matrix = generate(Path(tmp), args.hosts, args.images, args.scenarios)
        one, cells = run(matrix, 1)
        two, cells2 = run(matrix, 2)
        reused, cells3 = run(matrix, 2, "--reuse")
    print(f"{cells} cells (stub hosts): 1 worker {one:.1f} s ({one / cells * 1000:.0f} ms per cell), "
          f"2 workers {two:.1f} s ({cells2} cells); speed-up {one / two:.2f}")
    print(f"unchanged rerun with --reuse, 2 workers: {reused:.1f} s ({reused / cells3 * 1000:.1f} ms per cell, {cells3} cells); "
          f"2,352 cells (the default matrix) at that rate: {reused / cells3 * 2352:.0f} s")
    return 0 if cells == cells2 == cells3 == args.hosts * args.images * args.scenarios else 1


if __name__ == "__main__":
    sys.exit(main())
