#!/usr/bin/env python3
"""Per-cell cost on a real booted host (default: the matrix's bookworm-amd64), three ways, N times each:

  harness: the cell runner's run() of a scenario that only exits 0 (what a cell costs in the harness);
  direct:  the same `podman run` command line sent through the same guest agent channel;
  bare:    the host's own runtime (crun or runc) running `true` in a prepared bundle of the same image,
           timed inside the guest;
  service: (podman hosts) the same container through podman's long-running API service in the
           guest (`podman system service`, libpod REST: create, start, wait, remove), timed inside
           the guest: whether keeping the engine's service running beats its CLI per container.

Prints harness/direct (target <= 1.2) and harness/bare (target <= 2.0), medians, and service/direct
with the service's steps (create, start, wait for exit, remove): the engine's own floor.

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
from harness.context import RunContext
from harness.session import RunSession

TRUE_SCENARIO = "#!/bin/sh\nexit 0\n"
# Inside the guest: unpack the loaded image's root file system once, then time the bare runtime.
BARE = """set -e
runtime=$1 image=$2 runs=$3 engine=$4
dir=/var/tmp/bare-bundle; rm -rf $dir; mkdir -p $dir/rootfs
cid=$($engine create --network none "$image" true); $engine export -o $dir/rootfs.tar "$cid"; tar -x -C $dir/rootfs -f $dir/rootfs.tar; rm $dir/rootfs.tar; $engine rm "$cid" >/dev/null
cd $dir && $runtime spec && sed -i 's/"sh"/"true"/; s/"terminal": true/"terminal": false/' config.json
for i in $(seq $runs); do
  s=$(date +%s%N); $runtime run --bundle $dir bare-$i >/dev/null; e=$(date +%s%N)
  echo $(( (e - s) / 1000000 ))
done
"""

# Inside the guest: serve podman's API on loopback, then drive one container per run through it
# with bash's /dev/tcp (no client to start: the service's cost alone is timed). HTTP/1.0, so each
# reply ends with the connection.
SERVICE = r"""set -e
image=$1 runtime=$2 runs=$3
setsid podman system service --time=0 tcp://127.0.0.1:18080 </dev/null >/run/bench-service.log 2>&1 &
for i in $(seq 120); do (exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null && break; sleep 0.5; done
req() {
  exec 3<>/dev/tcp/127.0.0.1/18080
  printf '%s %s HTTP/1.0\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' "$1" "$2" "${#3}" "$3" >&3
  cat <&3; exec 3<&-
}
t() { date +%s%N; }
for i in $(seq $runs); do
  a=$(t)
  id=$(req POST /v4.0.0/libpod/containers/create "{\"image\":\"$image\",\"command\":[\"true\"],\"netns\":{\"nsmode\":\"none\"},\"oci_runtime\":\"$runtime\"}" | sed -n 's/.*"Id":"\([0-9a-f]*\)".*/\1/p')
  b=$(t); req POST /v4.0.0/libpod/containers/$id/start >/dev/null
  c=$(t); req POST "/v4.0.0/libpod/containers/$id/wait?interval=20ms" | tail -1 | grep -qx 0
  d=$(t); req DELETE "/v4.0.0/libpod/containers/$id?force=true" >/dev/null
  e=$(t)
  echo $(( (e - a) / 1000000 )) $(( (b - a) / 1000000 )) $(( (c - b) / 1000000 )) $(( (d - c) / 1000000 )) $(( (e - d) / 1000000 ))
done
kill %1
"""


def _guest_timings(host, script: str, args: list[str], what: str) -> list[list[float]]:
    """Seconds per run printed by a timing script run in the guest (a line of milliseconds per run:
    the total, then any steps of it)."""
    result = host.run(["bash", "-s", *args], timeout=1800, stdin=script.encode())
    timings = [[int(x) / 1000 for x in line.split()] for line in result.stdout.splitlines() if line.strip()]
    if result.exit_code != 0 or not timings:
        raise SystemExit(f"{what} could not be timed: {result.stderr[-2000:]}")
    return timings


def _medians(rows: list[list[float]]) -> list[float]:
    return [statistics.median(column) for column in zip(*rows)]


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
    session = RunSession(matrix, RunContext(f"bench-cell-{uuid.uuid4().hex[:6]}", default_root(), work / "reports", matrix.pool()))
    session.select([(host_spec.name, image_spec.name, "exits-0")] * (args.runs + 1))
    cell_of = (host_spec.name, image_spec.name, "exits-0")
    try:
        host = session.fleet.host(host_spec.name)  # boots and loads: not counted
        delivery = session.supply.deliver(host, image_spec.name)
        session.runner.run(host, delivery, matrix.scenario("exits-0"), session.settings(*cell_of))
        harness, direct = [], []
        for _ in range(args.runs):
            started = time.monotonic()
            cell = session.runner.run(host, delivery, matrix.scenario("exits-0"), session.settings(*cell_of))
            harness.append(time.monotonic() - started)
            assert cell.outcome == "pass", cell
            argv = host.engine.run(f"direct-{uuid.uuid4().hex[:6]}", delivery.image_id, ("/var/lib/harness/scenarios/exits-0", "/harness/scenario"), ["/harness/scenario/run"], matrix.scenario("exits-0").options)
            direct.append(host.run(argv, timeout=600).duration)
        bare = _guest_timings(host, BARE, [host_spec.runtime, delivery.image_id, str(args.runs), host_spec.engine], "the bare runtime")
        if host_spec.engine == "podman":
            service = _guest_timings(host, SERVICE, [delivery.image_id, host_spec.runtime, str(args.runs)], "podman's API service")
    finally:
        session.close()
    h, d, (b,) = statistics.median(harness), statistics.median(direct), _medians(bare)
    print(f"{host_spec.name} ({host.record.accel}, {host_spec.engine}/{host_spec.runtime}), median of {args.runs}:")
    print(f"  harness cell {h:.2f} s, direct engine call {d:.2f} s, bare {host_spec.runtime} run {b:.2f} s")
    print(f"  harness/direct {h / d:.2f} (target <= 1.2); harness/bare {h / b:.2f} (target <= 2.0)")
    if host_spec.engine == "podman":
        v, create, start, wait, remove = _medians(service)
        print(f"  the same container through podman's API service {v:.2f} s: service/direct {v / d:.2f} (< 1 would favour the service)")
        print(f"    its steps: create {create:.2f} s, start {start:.2f} s, wait for exit {wait:.2f} s, remove {remove:.2f} s; "
              f"start alone (conmon + runtime create and start) is {start / b:.1f}x the bare run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
