#!/usr/bin/env python3
"""Per-cell cost on a real booted host (default: the matrix's bookworm-amd64), three ways, N times each:

  harness: MatrixSession.run_cell of a scenario that only exits 0 (what a cell costs in the harness);
  direct:  the same `podman run` command line sent through the same guest agent channel;
  bare:    the host's own runtime (crun or runc) running `true` in a prepared bundle of the same image,
           timed inside the guest.

Prints harness/direct (target <= 1.2) and harness/bare (target <= 2.0), medians.

    python bench/cell_cost.py [--matrix matrix.yaml] [--host bookworm-amd64] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness.cache import default_root
from harness.config.load import load_matrix
from harness.session import MatrixSession

TRUE_SCENARIO = "#!/bin/sh\nexit 0\n"
# Inside the guest: unpack the loaded image's root file system once, then time the bare runtime.
BARE = """set -e
runtime=$1 image=$2 runs=$3
dir=/var/tmp/bare-bundle; rm -rf $dir; mkdir -p $dir/rootfs
cid=$(podman create --network none "$image" true); podman export -o $dir/rootfs.tar "$cid"; tar -x -C $dir/rootfs -f $dir/rootfs.tar; rm $dir/rootfs.tar; podman rm "$cid" >/dev/null
cd $dir && $runtime spec && sed -i 's/"sh"/"true"/; s/"terminal": true/"terminal": false/' config.json
for i in $(seq $runs); do
  s=$(date +%s%N); $runtime run --bundle $dir bare-$i >/dev/null; e=$(date +%s%N)
  echo $(( (e - s) / 1000000 ))
done
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", default="matrix.yaml")
    parser.add_argument("--host", default="bookworm-amd64")
    parser.add_argument("--image", default="debian-bookworm")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cell-cost-"))
    shutil.copytree(Path(args.matrix).resolve().parent / "vms", work / "vms")
    scenario = work / "scenarios" / "exits-0"
    scenario.mkdir(parents=True)
    (scenario / "run").write_text(TRUE_SCENARIO)
    (scenario / "run").chmod(0o755)
    (scenario / "scenario.yaml").write_text("purpose: costs nothing but the container\ndimension: engine\n")
    source = load_matrix(Path(args.matrix))
    host_spec, image_spec = source.host(args.host), source.image(args.image)
    (work / "matrix.yaml").write_text(
        f"version: 1\nretries: 0\ndelivery: archive\nhosts:\n  - {{name: {host_spec.name}, release: {host_spec.release}, arch: {host_spec.arch}, "
        f"engine: {host_spec.engine}, runtime: {host_spec.runtime}}}\n"
        f"images:\n  - {{name: {image_spec.name}, release: {image_spec.release}, packages: [{', '.join(image_spec.packages)}]}}\n"
        "scenarios: [exits-0]\n"
    )
    matrix = load_matrix(work / "matrix.yaml")
    session = MatrixSession(matrix, f"bench-cell-{uuid.uuid4().hex[:6]}", work / "reports", default_root())
    session.select([(host_spec.name, image_spec.name, "exits-0")] * (args.runs + 1))
    try:
        session.run_cell(host_spec.name, image_spec.name, "exits-0")  # boots and loads: not counted
        host, delivery = session.prepare(host_spec.name, image_spec.name, "exits-0")
        harness, direct = [], []
        for _ in range(args.runs):
            started = time.monotonic()
            cell = session.run_cell(host_spec.name, image_spec.name, "exits-0")
            harness.append(time.monotonic() - started)
            assert cell.outcome == "pass", cell
            argv = host.engine.run(f"direct-{uuid.uuid4().hex[:6]}", delivery.image_id, ("/var/lib/harness/scenarios/exits-0", "/harness/scenario"), ["/harness/scenario/run"], matrix.scenario("exits-0").options)
            direct.append(host.run(argv, timeout=600).duration)
        bare_run = host.run(["sh", "-s", host_spec.runtime, delivery.image_id, str(args.runs)], timeout=1200, stdin=BARE.encode())
        bare = [int(x) / 1000 for x in bare_run.stdout.split()]
        if not bare:
            raise SystemExit(f"the bare runtime could not be timed: {bare_run.stderr[-2000:]}")
    finally:
        session.close()
    h, d, b = statistics.median(harness), statistics.median(direct), statistics.median(bare)
    print(f"{host_spec.name} ({host.record.accel}, {host_spec.engine}/{host_spec.runtime}), median of {args.runs}:")
    print(f"  harness cell {h:.2f} s, direct engine call {d:.2f} s, bare {host_spec.runtime} run {b:.2f} s")
    print(f"  harness/direct {h / d:.2f} (target <= 1.2); harness/bare {h / b:.2f} (target <= 2.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
