#!/usr/bin/env python3
"""Report scale benchmark: render matrix.html for a synthetic run of N cells
(default 10,000: 25 hosts x 20 images x 20 scenarios, realistic output sizes) and print the time
against the 3 s target, and the page size.

    python bench/report_scale.py [--hosts 25 --images 20 --scenarios 20] [--out DIR]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from harness.report.render import render_report
from harness.config.model import Policy
from harness.results.model import CellResult, DeliveryRecord, HostFacts, HostRecord, ImageRecord, RunResults
from harness.supportability import classify

TARGET_SECONDS = 3.0
POLICY = Policy()


def synthetic_results(n_hosts: int, n_images: int, n_scenarios: int, seed: int = 1) -> RunResults:
    rng = random.Random(seed)
    releases, arches = ("bullseye", "bookworm", "trixie"), ("amd64", "arm64", "ppc64el", "s390x")
    results = RunResults(run_id="bench", matrix="generated.yaml", started_at="2026-01-01T00:00:00Z", harness_version="bench")
    for h in range(n_hosts):
        name = f"host-{h:03d}"
        results.hosts[name] = HostRecord(
            name, releases[h % 3], arches[h % 4], "podman", "crun", boot_seconds=9.5,
            settings={"kernel": releases[h % 3], "cgroup": "v2", "lsm": "apparmor"},
            facts=HostFacts(kernel="6.1.0", engine_version="4.3.1", raw={f"fact_{k}": f"value {k} of {name}" for k in range(25)}), console_log=f"hosts/{name}/console.log", health="ok",
        )
    for i in range(n_images):
        results.images[f"image-{i:03d}"] = ImageRecord(f"image-{i:03d}", releases[i % 3], ["passwd", "nginx-light"])
    for host in results.hosts.values():
        for image in results.images.values():
            results.deliveries[f"{host.name}/{image.name}"] = DeliveryRecord(host.name, image.name, "sha256:" + "a" * 64, True, 61.2, ["podman", "load"])
            for s in range(n_scenarios):
                outcome = rng.choices(["pass", "fail", "not-applicable", "timeout"], [90, 5, 4, 1])[0]
                cell = CellResult(
                    host.name, image.name, f"scenario-{s:02d}", outcome, round(rng.uniform(1, 9), 2),
                    command=["podman", "run", "--rm", "--runtime", "crun", "sha256:" + "a" * 64, "/harness/scenario/run"],
                    exit_code=0 if outcome == "pass" else 1,
                    stdout="line of output <with markup>\n" * rng.randint(2, 20),
                    stderr="warning: something\n" if outcome != "pass" else "",
                    reproduce=["podman load --input /var/lib/harness/images/x.oci.tar", "podman run ..."],
                )
                results.cells[cell.key] = cell
            cells = [results.cells[f"{host.name}/{image.name}/scenario-{s:02d}"] for s in range(n_scenarios)]
            results.pairs[f"{host.name}/{image.name}"] = classify(POLICY, host, image, cells, results.deliveries[f"{host.name}/{image.name}"])
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=25)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--scenarios", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = synthetic_results(args.hosts, args.images, args.scenarios)
    out = args.out or Path(tempfile.mkdtemp(prefix="report-scale-"))
    started = time.perf_counter()
    page = render_report(results, out)
    seconds = time.perf_counter() - started
    print(f"{len(results.cells)} cells, {len(results.pairs)} pairs: rendered in {seconds:.2f} s "
          f"(ratio to the {TARGET_SECONDS:.0f} s target {seconds / TARGET_SECONDS:.2f}); matrix.html {page.stat().st_size / 2**20:.1f} MiB at {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
