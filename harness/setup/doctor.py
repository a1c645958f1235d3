"""What this machine lacks to build and boot hosts, each as one line saying how to fix it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness.hosts.accel import native_qemu_arch
from harness.hosts.platform import PLATFORMS

FIX = "run ./setup-machine as root (it installs packages, registers binfmt handlers and starts libvirtd)"
BINFMT = Path("/proc/sys/fs/binfmt_misc")


def problems(arches: set[str], uri: str) -> list[str]:
    """Problems for building images and running VM hosts of `arches` (no VM hosts: no libvirt needed)."""
    found = []
    if os.geteuid() != 0:
        found.append("building hosts and images with mmdebstrap --mode=root needs root")
    for command, package in (("mmdebstrap", "mmdebstrap"), ("mkfs.ext4", "e2fsprogs"), ("qemu-img", "qemu-utils")):
        if shutil.which(command) is None:
            found.append(f"missing command {command} (Debian package {package}); {FIX}")
    for arch in sorted(arches):
        qemu_arch = PLATFORMS[arch].qemu_arch
        if shutil.which(f"qemu-system-{qemu_arch}") is None:
            found.append(f"missing qemu-system-{qemu_arch} for {arch} hosts; {FIX}")
        if qemu_arch != native_qemu_arch() and not (BINFMT / f"qemu-{qemu_arch}").exists():
            found.append(f"no binfmt handler for {arch} ({BINFMT}/qemu-{qemu_arch}), needed to build {arch} trees; {FIX}")
    if not arches:
        return found
    if shutil.which("docker-registry") is None:
        found.append(f"missing command docker-registry (Debian package docker-registry), the registry images reach VM hosts through; {FIX}")
    try:
        import libvirt

        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.open(uri).close()
    except ImportError:
        found.append("the libvirt Python binding is not installed (pip install libvirt-python)")
    except Exception as exc:  # libvirt.libvirtError, but the import may be what failed
        found.append(f"libvirt at {uri} does not answer ({exc}); {FIX}")
    return found
