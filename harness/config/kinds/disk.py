"""A VM host booted from a disk image the user brings: any distribution's qcow2 or raw cloud image
(disk.schema.json). The harness changes nothing on the disk; a throw-away overlay takes each run's
writes, a NoCloud seed starts the guest agent, and the engine is whatever the disk has."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from harness.config.model import HostKind, HostSpec, Machine

QCOW2_MAGIC = b"QFI\xfb"


def disk_format(path: Path) -> str | None:
    """"qcow2" or "raw" by the disk's first sector; None when it is neither. A raw disk must have
    a partition table (an MBR's boot signature, which a GPT disk's protective MBR also has):
    firmware boots nothing else. Raises OSError when the file cannot be read."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head[:4] == QCOW2_MAGIC:
        return "qcow2"
    return "raw" if len(head) == 512 and head[510:512] == b"\x55\xaa" else None


def disk_problem(path: Path) -> str | None:
    """Why `path` cannot be a host's disk, or None."""
    try:
        found = disk_format(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    return None if found else f"{path} is not a disk image (neither qcow2 nor a raw disk with a partition table)"


@dataclass(frozen=True)
class DiskHostSpec(HostSpec):
    kind: ClassVar[HostKind] = HostKind.DISK
    image: str = ""  # absolute path of the qcow2 or raw disk
    image_format: str = "qcow2"
    cpu: str | None = None
    cgroup: str = ""  # "": as the disk boots; "v1" or "v2" set through its boot loader
    kernel_cmdline: str = ""

    def settings(self) -> dict[str, str]:
        return {"disk": Path(self.image).name, **({"cgroup": self.cgroup} if self.cgroup else {}), **({"cpu": self.cpu} if self.cpu else {})}

    def cmdline_words(self) -> list[str]:
        """What the disk's kernel command line must have for this host's settings."""
        cgroup = {"v1": ["systemd.unified_cgroup_hierarchy=0"], "v2": ["systemd.unified_cgroup_hierarchy=1"]}.get(self.cgroup, [])
        return [*cgroup, *self.kernel_cmdline.split()]

    @classmethod
    def from_entry(cls, h: dict, machine: Machine) -> "DiskHostSpec":
        image = Path(h["image"])
        try:
            fmt = disk_format(image) or "raw"
        except OSError:
            fmt = "raw"  # the loader reports the unreadable file (disk_problem)
        return cls(
            name=h["name"],
            machine=machine,
            release=h.get("release", ""),
            arch=h["arch"],
            engine=h.get("engine", ""),
            runtime=h.get("runtime", ""),
            image=str(image),
            image_format=fmt,
            cpu=h.get("cpu"),
            cgroup=h.get("cgroup", ""),
            kernel_cmdline=h.get("kernel_cmdline", ""),
        )
