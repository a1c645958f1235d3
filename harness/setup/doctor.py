"""What this machine lacks to build and boot hosts, each as one line saying how to fix it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from harness.hosts.accel import native_qemu_arch
from harness.hosts.platform import PLATFORMS

FIX = "run ./setup-machine as root (it installs packages, registers binfmt handlers and starts libvirtd)"
BINFMT = Path("/proc/sys/fs/binfmt_misc")


# The firmware a disk image boots through on this machine's QEMU (libvirt picks it by its descriptor).
FIRMWARE = {"amd64": ("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"), "arm64": ("/usr/share/AAVMF/AAVMF_CODE.fd", "qemu-efi-aarch64")}


def problems(arches: set[str], uris: list[str], firmware: bool = False) -> list[str]:
    """Problems for building images and running VM hosts of `arches` on the hypervisors at `uris`
    (no VM hosts: no libvirt needed; QEMU is needed here only when a hypervisor is this machine's).
    firmware: the hosts boot disk images through UEFI, and a seed is made for them."""
    local = any(not urlsplit(uri).netloc for uri in uris)
    found = []
    if firmware:
        for arch in sorted(arches & set(FIRMWARE)):
            path, package = FIRMWARE[arch]
            if local and not Path(path).exists():
                found.append(f"missing UEFI firmware {path} for {arch} disk-image hosts (Debian package {package}); {FIX}")
        if shutil.which("xorriso") is None:
            found.append(f"missing command xorriso (Debian package xorriso), which makes a disk-image host's NoCloud seed; {FIX}")
    if os.geteuid() != 0:
        found.append("building hosts and images with mmdebstrap --mode=root needs root")
    for command, package in (("mmdebstrap", "mmdebstrap"), ("mkfs.ext4", "e2fsprogs"), ("qemu-img", "qemu-utils")):
        if shutil.which(command) is None:
            found.append(f"missing command {command} (Debian package {package}); {FIX}")
    for arch in sorted(arches):
        qemu_arch = PLATFORMS[arch].qemu_arch
        if local and shutil.which(f"qemu-system-{qemu_arch}") is None:
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
    except ImportError:
        found.append("the libvirt Python binding is not installed (pip install libvirt-python)")
        return found
    answering = []
    for uri in uris:
        try:
            libvirt.open(uri).close()
            answering.append(uri)
        except libvirt.libvirtError as exc:
            found.append(f"libvirt at {uri} does not answer ({exc}); {FIX if not urlsplit(uri).netloc else 'start libvirtd there, or leave it out of the pool'}")
    # One answering hypervisor is enough to run: the others' hosts go to it (the run says so).
    return found if not answering else [f for f in found if not f.startswith("libvirt at ")]
