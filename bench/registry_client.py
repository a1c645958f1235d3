#!/usr/bin/env python3
"""The harness's registry client against skopeo (Debian's), on the same registry and image: should
skopeo replace `harness/registry/`? Measured on this machine, against Debian's docker-registry
started here, with one of the harness's built images (debian-bookworm for amd64, from the cache):

  push, cold:  every blob and the manifest into a new repository
               client: RegistryClient.push_archive + tag   skopeo: copy oci-archive: docker://
  push, warm:  the same image again under another tag (every blob already there)
  inspect:     what `describe` reads for a reference: manifest (or index), each config
               client: describe()                            skopeo: inspect --raw, then --config

Median of N; prints each and the ratio skopeo / client (> 1: the client is faster). Needs skopeo
(`apt-get install skopeo`): the harness itself does not.

    python bench/registry_client.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.cache import BuildCache, default_root
from harness.config.load import load_matrix
from harness.images.build import build_image
from harness.registry.inspect import describe
from harness.registry.push import RegistryClient
from harness.registry.server import RegistryServer


def timed(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def skopeo(*args: str) -> None:
    subprocess.run(["skopeo", *args], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    matrix = load_matrix(Path(__file__).resolve().parent.parent / "matrix.yaml")
    build, _ = build_image(matrix.image("debian-bookworm"), "amd64", matrix.mirror, BuildCache(default_root(), "images"))
    times: dict[str, list[float]] = {}
    for run in range(args.runs):
        # Cold means cold: an empty registry for each tool, and no skopeo blob-info cache (which
        # would let it mount blobs it saw before instead of uploading them).
        work = Path(tempfile.mkdtemp(prefix="bench-registry-"))
        for cache in (Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb"), Path.home() / ".local/share/containers/cache/blob-info-cache-v1.boltdb"):
            cache.unlink(missing_ok=True)
        servers = [RegistryServer(work / "client", addr="127.0.0.1:5098"), RegistryServer(work / "skopeo", addr="127.0.0.1:5099")]
        url, host = servers[0].start(), servers[1].start().removeprefix("http://")
        client = RegistryClient(url)
        try:
            mine, theirs = "bench/client", "bench/skopeo"
            pushed = []
            times.setdefault("push cold, client", []).append(timed(lambda: pushed.append(client.push_archive(mine, build.archive, "amd64")) or client.tag_manifest(mine, "1", pushed[0])))
            times.setdefault("push cold, skopeo", []).append(timed(lambda: skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{build.archive}", f"docker://{host}/{theirs}:1")))
            times.setdefault("push warm, client", []).append(timed(lambda: client.tag_manifest(mine, "2", client.push_archive(mine, build.archive, "amd64"))))
            times.setdefault("push warm, skopeo", []).append(timed(lambda: skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{build.archive}", f"docker://{host}/{theirs}:2")))
            times.setdefault("inspect, client", []).append(timed(lambda: describe(f"{url.removeprefix('http://')}/{mine}:1", tls_verify=False)))
            times.setdefault("inspect, skopeo", []).append(timed(lambda: (skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{host}/{theirs}:1"),
                                                                           skopeo("inspect", "--tls-verify=false", "--config", f"docker://{host}/{theirs}:1"))))
        finally:
            for server in servers:
                server.stop()
            shutil.rmtree(work)
    medians = {name: statistics.median(values) for name, values in times.items()}
    size = build.archive.stat().st_size / 2**20
    print(f"image: debian-bookworm amd64, {size:.0f} MiB archive; {args.runs} runs each")
    for name, value in medians.items():
        print(f"  {name:20} {value * 1000:8.0f} ms")
    for step in ("push cold", "push warm", "inspect"):
        print(f"{step}: skopeo / client = {medians[f'{step}, skopeo'] / medians[f'{step}, client']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
