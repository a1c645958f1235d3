#!/usr/bin/env python3
"""Cold host build benchmark: the harness's full build of one host (default: the matrix's
trixie-arm64, emulated with qemu-user) into an empty cache, against a plain mmdebstrap of the same
package set (same release, architecture and mirror) into a directory. Prints both and the ratio
(target <= 1.5). A host not yet in the harness's cache is built straight into it (the build is
cold either way, and the run is not wasted); a cached one is built again into a throw-away cache.

    python bench/build.py [--matrix matrix.yaml] [HOST]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.cache import BuildCache, default_root, digest_of
from harness.config.load import load_matrix
from harness.hosts.build import build_host, host_recipe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("host", nargs="?", default="trixie-arm64")
    parser.add_argument("--matrix", default="matrix.yaml")
    args = parser.parse_args()
    matrix = load_matrix(Path(args.matrix))
    spec = matrix.host(args.host)
    packages = host_recipe(spec, matrix.vms_dir)["packages"]
    with tempfile.TemporaryDirectory(prefix="bench-build-", dir="/var/tmp") as tmp:
        started = time.monotonic()
        subprocess.run(
            ["mmdebstrap", "--quiet", "--mode=root", "--variant=minbase", f"--architectures={spec.arch}", f"--include={','.join(packages)}",
             spec.release, f"{tmp}/plain", matrix.mirror],
            check=True,
        )
        plain = time.monotonic() - started
        subprocess.run(["rm", "-rf", f"{tmp}/plain"], check=True)
        started = time.monotonic()
        real = BuildCache(default_root(), "hosts")
        cache = BuildCache(Path(tmp) / "cache", "hosts") if real.has(digest_of(host_recipe(spec, matrix.vms_dir))) else real
        build_host(spec, matrix.vms_dir, matrix.mirror, cache)
        ours = time.monotonic() - started
    print(f"{spec.name} ({spec.release}/{spec.arch}, {len(packages)} packages): plain mmdebstrap {plain:.0f} s, "
          f"harness host build {ours:.0f} s; ratio {ours / plain:.2f} (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
