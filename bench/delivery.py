#!/usr/bin/env python3
"""Image delivery benchmark: on one booted host (default: the matrix's trixie-arm64, emulated), the
time to make a candidate image available
  floor:    `podman load` of its uncompressed OCI archive from a local disk of the guest;
  registry: the harness's path, a pull by reference from its registry over the guest network;
median of N, with the image removed between tries, and the ratio (target <= 1.5).

    python bench/delivery.py [--matrix matrix.yaml] [--host trixie-arm64] [--image debian-bookworm] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import uuid
from pathlib import Path

from harness.cache import BuildCache, default_root
from harness.config.load import load_matrix
from harness.context import RunContext
from harness.hosts.kinds.vm import VmKind
from harness.images.build import build_image
from harness.registry.publish import guest_registry, publish
from harness.registry.server import RegistryServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", default="matrix.yaml")
    parser.add_argument("--host", default="trixie-arm64")
    parser.add_argument("--image", default="debian-bookworm")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    matrix = load_matrix(Path(args.matrix))
    spec, image_spec = matrix.host(args.host), matrix.image(args.image)
    cache = default_root()
    build, _ = build_image(image_spec, spec.arch, matrix.mirror, BuildCache(cache, "images"))
    registry = RegistryServer(cache / "registry")
    url = registry.start()
    run_id = f"bench-delivery-{uuid.uuid4().hex[:6]}"
    kind = VmKind(matrix, RunContext(run_id, cache, cache / "runs" / run_id / "reports", matrix.pool(), registry=url))
    host = kind.provision(spec, lambda _why: None)
    try:
        reference = publish(url, image_spec.name, {spec.arch: build}).reference(guest_registry(url))
        host.start([build], [], [guest_registry(url)])
        floor, pulled = [], []
        for _ in range(args.runs):
            load = host.load_image(build, timeout=3600)
            assert load.exit_code == 0, load.stderr
            floor.append(load.duration)
            host.run(["podman", "rmi", "--force", build.image_id], timeout=600)
            got = host.pull_image(image_spec.name, reference, timeout=3600)
            assert got.run.exit_code == 0, got.run.stderr
            pulled.append(got.run.duration)
            host.run(["podman", "rmi", "--force", got.image_id], timeout=600)
    finally:
        host.stop()
        kind.close()
        registry.stop()
    f, p = statistics.median(floor), statistics.median(pulled)
    print(f"{spec.name} ({host.record.accel}), {image_spec.name} {build.size / 2**20:.0f} MiB, median of {args.runs}:")
    print(f"  floor (podman load from local disk) {f:.1f} s, registry pull {p:.1f} s; ratio {p / f:.2f} (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
