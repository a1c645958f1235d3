"""A VM host booted from a disk image the user brings: any distribution's qcow2 or raw cloud image
(disk.schema.json). The harness changes nothing on the disk; a throw-away overlay takes each run's
writes, a NoCloud seed starts the guest agent, and the engine is whatever the disk has."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from harness.config.model import HostKind, HostSpec, Machine

QCOW2_MAGIC = b"QFI\xfb"


def disk_problem(path: Path) -> str | None:
    """Why `path` cannot be a host's disk, or None. A disk is qcow2 (by its magic) or raw with a
    partition table (an MBR's boot signature, which a GPT disk's protective MBR also has): firmware
    boots nothing else."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if head[:4] == QCOW2_MAGIC or (len(head) == 512 and head[510:512] == b"\x55\xaa"):
        return None
    return f"{path} is not a disk image (neither qcow2 nor a raw disk with a partition table)"


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
        fmt = "raw"
        try:
            with open(image, "rb") as fh:
                fmt = "qcow2" if fh.read(4) == QCOW2_MAGIC else "raw"
        except OSError:
            pass  # reported by the loader's own check
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
