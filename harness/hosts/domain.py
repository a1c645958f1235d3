"""Libvirt domain XML for a host, built with ElementTree from the template in vms/domain.xml.

Ownership (run id, host name, the run's working directory) is recorded in the domain's metadata so
that cleanup can find every domain a run started, even after the harness was killed, and can tell
whether that run still lives whatever cache directory it uses.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import NamedTuple
from pathlib import Path

from harness.hosts.platform import Platform

METADATA_NS = "urn:container-matrix-harness:1"
DOMAIN_PREFIX = "harness-"


@dataclass(frozen=True)
class Disk:
    path: str  # as the hypervisor sees it
    fmt: str  # "raw" or "qcow2"
    readonly: bool = False
    # Overlays are thrown away after the run, so the guest's flushes need not reach the disk; a
    # kept image store's must ("writeback": a flush reaches the file).
    cache: str = "unsafe"
    # What the guest finds the disk by (/sys/block/vdX/serial): the kernel names virtio disks in the
    # order it probes them, which on s390x's channel subsystem is not the order of the XML (seen:
    # the root disk, first in the XML and at devno 0, became vdc).
    serial: str = ""


@dataclass(frozen=True)
class DomainSpec:
    name: str
    run_id: str
    host: str
    accel: str  # "kvm" or "qemu" (TCG)
    platform: Platform
    cpu_model: str  # "host-passthrough", "max" or a named model
    memory_mib: int
    vcpus: int
    kernel: str  # paths as the hypervisor sees them; "" boots the first disk through the firmware
    initrd: str
    cmdline: str
    disks: tuple[Disk, ...]
    console_log: str
    run_dir: str = ""  # the run's working directory on this machine, for cleanup's liveness check
    firmware: str = ""  # "efi": UEFI, picked by libvirt from the hypervisor's own firmware descriptors
    nvram: str = ""  # the firmware's variable store for this boot (libvirt copies its template there)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = text
    return el


def _cpu(root: ET.Element, model: str, platform: Platform) -> None:
    if model == "host-passthrough":
        _sub(root, "cpu", mode="host-passthrough")
    elif model == "max":
        cpu = _sub(root, "cpu", mode="maximum", check="none")
        for feature in platform.max_without:
            _sub(cpu, "feature", policy="disable", name=feature)
    else:
        cpu = _sub(root, "cpu", mode="custom", match="exact", check="none")
        _sub(cpu, "model", model, fallback="forbid")


def build_domain_xml(template: Path, spec: DomainSpec) -> str:
    root = ET.parse(template).getroot()
    root.set("type", spec.accel)
    root.find("name").text = spec.name
    owner = ET.SubElement(root.find("metadata"), f"{{{METADATA_NS}}}owner")
    owner.set("run", spec.run_id)
    owner.set("host", spec.host)
    if spec.run_dir:
        owner.set("run-dir", spec.run_dir)
    root.find("memory").text = str(spec.memory_mib)
    root.find("vcpu").text = str(spec.vcpus)

    os_el = root.find("os")
    type_el = os_el.find("type")
    type_el.set("arch", spec.platform.qemu_arch)
    type_el.set("machine", spec.platform.machine)
    if spec.kernel:
        _sub(os_el, "kernel", str(spec.kernel))
        _sub(os_el, "initrd", str(spec.initrd))
        _sub(os_el, "cmdline", spec.cmdline)
    else:
        if spec.firmware:
            os_el.set("firmware", spec.firmware)
            firmware = _sub(os_el, "firmware")
            _sub(firmware, "feature", enabled="no", name="secure-boot")  # plain OVMF/AAVMF: no SMM to emulate
            if spec.nvram:  # else libvirt keeps one per domain name in its own directory, for ever
                _sub(os_el, "nvram", spec.nvram)
        _sub(os_el, "boot", dev="hd")
        # A distribution's guest may reboot itself (cloud-init, a kernel update): let it come back.
        root.find("on_reboot").text = "restart"
    features = root.find("features")
    for feature in spec.platform.features:
        _sub(features, feature)
    # libvirt wants <cpu> right after <features>.
    _cpu(root, spec.cpu_model, spec.platform)
    cpu = root.find("cpu")
    root.remove(cpu)
    root.insert(list(root).index(features) + 1, cpu)

    devices = root.find("devices")
    for index, disk in enumerate(spec.disks):
        d = _sub(devices, "disk", type="file", device="disk")
        _sub(d, "driver", name="qemu", type=disk.fmt, cache=disk.cache)
        _sub(d, "source", file=str(disk.path))
        _sub(d, "target", dev=f"vd{chr(ord('a') + index)}", bus="virtio")
        if disk.serial:
            _sub(d, "serial", disk.serial)
        if disk.readonly:
            _sub(d, "readonly")
    if spec.platform.console == "ttysclp0":
        console = _sub(devices, "console", type="file")
        _sub(console, "source", path=str(spec.console_log))
        _sub(console, "target", type="sclp")
    else:
        serial = _sub(devices, "serial", type="file")
        _sub(serial, "source", path=str(spec.console_log))
    ET.register_namespace("harness", METADATA_NS)
    return ET.tostring(root, encoding="unicode")


class Owner(NamedTuple):
    run: str
    host: str
    run_dir: str  # the run's working directory ("" in domains of older harnesses)


def owner_of(xml: str) -> Owner | None:
    """Who started a domain of this harness; None for anybody else's domain."""
    owner = ET.fromstring(xml).find(f"metadata/{{{METADATA_NS}}}owner")
    return None if owner is None else Owner(owner.get("run", ""), owner.get("host", ""), owner.get("run-dir", ""))
