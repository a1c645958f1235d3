#!/usr/bin/env python3
"""Kept image stores: the same one-host matrix (bookworm-amd64, cached; debian-bookworm and an
application image on it; useradd) run with a fresh store, then again warm. Prints each image's
delivery time and the bytes the guest received, cold and warm, the warm/cold delivery ratio
(target <= 0.05) and the bytes a warm rerun of the unchanged matrix received for its images
(target 0).

    python bench/image_store.py
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
MATRIX = """version: 1
hosts:
  - {name: bookworm-amd64, release: bookworm, arch: amd64, engine: podman, runtime: crun}
images:
  - {name: debian-bookworm, release: bookworm, packages: [passwd]}
  - {name: bookworm-python3, base: debian-bookworm, packages: [python3]}
scenarios: [useradd]
"""


def run(directory: Path, name: str, *flags: str) -> tuple[float, dict]:
    reports = directory / name
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "harness.cli", "run", str(directory / "matrix.yaml"), "--reports", str(reports), "--quiet", "--no-blame", *flags],
                   capture_output=True, text=True)
    return time.monotonic() - started, json.loads((reports / "results.json").read_text())


def deliveries(data: dict) -> dict[str, dict]:
    return {d["image"]: d for d in data["deliveries"].values() if d["image"] != "harness-probe"}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        directory = Path(tmp)
        shutil.copytree(ROOT / "vms", directory / "vms")
        shutil.copytree(ROOT / "scenarios", directory / "scenarios")
        (directory / "matrix.yaml").write_text(MATRIX)
        cold_wall, cold = run(directory, "cold", "--image-stores", "fresh")
        warm_wall, warm = run(directory, "warm")
    cold_d, warm_d = deliveries(cold), deliveries(warm)
    for image in sorted(cold_d):
        c, w = cold_d[image], warm_d[image]
        print(f"{image}: cold {c['store']} {c['duration']:.1f} s, {c['received_bytes'] or 0:,} bytes; warm {w['store']} {w['duration']:.1f} s, {w['received_bytes'] or 0:,} bytes")
    cold_time, warm_time = sum(d["duration"] for d in cold_d.values()), sum(d["duration"] for d in warm_d.values())
    received = sum(d["received_bytes"] or 0 for d in warm_d.values())
    print(f"deliveries: cold {cold_time:.1f} s, warm {warm_time:.1f} s; ratio {warm_time / cold_time:.3f} (target <= 0.05)")
    print(f"bytes received by the warm rerun for its images: {received} (target 0)")
    print(f"whole runs: cold {cold_wall:.0f} s, warm {warm_wall:.0f} s ({warm['hosts']['bookworm-amd64']['image_store']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
