#!/usr/bin/env python3
"""Host boot benchmark (issue: hosts). For each VM host named (default: one amd64 and one arm64 host
of the matrix), the median over N boots of
  ready: libvirt domain start -> the guest agent answers, the harness's real boot path;
  floor: the same kernel, QEMU, machine and CPU model reaching a minimal busybox /init;
and prints ready / floor (target <= 2.0).

    python bench/boot.py [--matrix matrix.yaml] [--runs 3] [HOST ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

from harness.cache import default_root
from harness.config.load import load_matrix
from harness.context import RunContext
from harness.hosts.domain import build_domain_xml
from harness.hosts.initramfs import newc
from harness.hosts.kinds.vm import VmKind

MARKER = "BUSYBOX-INIT-REACHED"
FLOOR_INIT = f"#!/bin/sh\n/bin/busybox echo {MARKER}\n/bin/busybox poweroff -f\n".encode()


def ready_seconds(kind: VmKind, spec) -> tuple[float, object]:
    host = kind.provision(spec, lambda _why: None)
    try:
        host.start([], [], [])
        return host.record.boot_seconds, host
    finally:
        host.stop()


def floor_seconds(host, workdir: Path) -> float:
    """Boot the host's kernel into an initramfs whose /init only prints a marker, as the host booted."""
    initrd = workdir / "floor.cpio"
    initrd.write_bytes(host.initramfs_base.read_bytes() + newc([("init", 0o100755, FLOOR_INIT)]))
    console = workdir / "floor-console.log"
    console.unlink(missing_ok=True)
    kernel = host.files.cached(host.build.kernel, f"{host.build.digest}-kernel")
    spec = host._domain_spec(host.record.accel, kernel, str(initrd), ())
    spec = type(spec)(**{**spec.__dict__, "name": f"{spec.name}-floor-{uuid.uuid4().hex[:6]}", "console_log": str(console)})
    started = time.monotonic()
    domain = host.conn.createXML(build_domain_xml(host.vms_dir / "domain.xml", spec), 0)
    try:
        while MARKER not in (console.read_text(errors="replace") if console.exists() else ""):
            if time.monotonic() - started > 300:
                raise SystemExit(f"{spec.host}: the floor boot never printed its marker (see {console})")
            time.sleep(0.02)
        return time.monotonic() - started
    finally:
        try:
            domain.destroy()
        except Exception:
            pass  # powered off already


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("hosts", nargs="*")
    parser.add_argument("--matrix", default="matrix.yaml")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    matrix = load_matrix(Path(args.matrix))
    vm_hosts = matrix.vm_hosts()
    if args.hosts:
        chosen = [h for h in vm_hosts if h.name in args.hosts]
    else:
        chosen = [next(h for h in vm_hosts if h.arch == arch) for arch in ("amd64", "arm64") if any(h.arch == arch for h in vm_hosts)]
    run_id = f"bench-boot-{uuid.uuid4().hex[:6]}"
    cache = default_root()
    kind = VmKind(matrix, RunContext(run_id, cache, cache / "runs" / run_id / "reports", matrix.pool()))
    print(f"{'host':24} {'accel':5} {'cpu':12} {'ready s':>8} {'floor s':>8} {'ratio':>6}")
    worst = 0.0
    try:
        for spec in chosen:
            ready, floor = [], []
            for _ in range(args.runs):
                seconds, host = ready_seconds(kind, spec)
                ready.append(seconds)
                floor.append(floor_seconds(host, host.workdir))
            ratio = statistics.median(ready) / statistics.median(floor)
            worst = max(worst, ratio)
            print(f"{spec.name:24} {host.record.accel:5} {host.record.cpu_model:12} {statistics.median(ready):8.2f} {statistics.median(floor):8.2f} {ratio:6.2f}")
    finally:
        kind.close()
    print(f"worst ratio {worst:.2f} (target <= 2.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
