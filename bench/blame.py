#!/usr/bin/env python3
"""Blame's cost: the same real run with --no-blame and with blame (the default), on one host
(bookworm-amd64, cached) with debian-bookworm and ten scenarios of which one fails (10% of cells).
Prints both wall times and their ratio (target <= 1.5), and the verdict blame reached.

    python bench/blame.py                 # a failure a container swap explains (seccomp)
    python bench/blame.py --unexplained   # one nothing on the host explains: image swaps, then variant hosts
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ["useradd", "package-db", "threads", "new-syscalls", "dynamic-linking", "locale", "timezone", "tls-trust-store", "non-root-user"]
MATRIX = """version: 1
retries: 0
hosts:
  - {name: bookworm-amd64, release: bookworm, arch: amd64, engine: podman, runtime: crun}
images:
  - {name: debian-bookworm, release: bookworm, packages: [passwd]}
scenarios: [%s, fails]
"""


def run(directory: Path, *flags: str) -> tuple[float, dict]:
    reports = directory / f"reports{''.join(flags)}"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "harness.cli", "run", str(directory / "matrix.yaml"), "--reports", str(reports), "--quiet", *flags],
                   capture_output=True, text=True)
    return time.monotonic() - started, json.loads((reports / "results.json").read_text())


FAILS = {
    False: ("#!/bin/sh\nsetarch \"$(uname -m)\" -R true\n", "fails under the default seccomp profile"),
    # Passes only on a cgroup v1 host: only a variant host explains it.
    True: ("#!/bin/sh\ntest -d /sys/fs/cgroup/memory\n", "fails on a cgroup v2 host whatever the container or image"),
}


def main() -> int:
    unexplained = "--unexplained" in sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="bench-blame-") as tmp:
        directory = Path(tmp)
        shutil.copytree(ROOT / "vms", directory / "vms")
        shutil.copytree(ROOT / "scenarios", directory / "scenarios")
        (directory / "scenarios" / "fails").mkdir()
        script, purpose = FAILS[unexplained]
        (directory / "scenarios" / "fails" / "run").write_text(script)
        (directory / "scenarios" / "fails" / "run").chmod(0o755)
        (directory / "scenarios" / "fails" / "scenario.yaml").write_text(f"purpose: {purpose}\ndimension: kernel\n")
        (directory / "matrix.yaml").write_text(MATRIX % ", ".join(SCENARIOS))
        without, _ = run(directory, "--no-blame")
        with_blame, data = run(directory)
    verdicts = [v["summary"] + (" (confirmed)" if v["confirmed"] else "") for v in data["verdicts"].values()]
    print(f"{len(data['cells'])} cells, 1 failing: without blame {without:.1f} s, with blame {with_blame:.1f} s; ratio {with_blame / without:.2f} (target <= 1.5)")
    print(f"verdicts: {verdicts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
