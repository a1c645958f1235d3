"""VM hosts booted from a disk image the user brought (hosts/disk.py); placed, cleaned up and
checked like built VM hosts, whose driver this one extends."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from harness.cache import BuildCache, file_digest
from harness.config.kinds.disk import DiskHostSpec
from harness.config.model import HostKind, HypervisorSpec, Matrix
from harness.hosts.disk import DiskHost
from harness.hosts.kinds.vm import VmKind
from harness.hosts.provider import Host
from harness.setup.doctor import problems


def cached_disk(spec: DiskHostSpec, cache: BuildCache) -> tuple[Path, str]:
    """The disk's copy in the harness's cache, named by its content: QEMU reads it from a place it
    may read (a disk under /root or a private temporary directory is out of its reach), and a disk
    changed in place later does not change what this copy boots."""
    source = Path(spec.image)
    digest = file_digest(source).removeprefix("sha256:")
    name = f"disk.{spec.image_format}"

    def copy(tmp: Path, log: Path) -> None:
        shutil.copyfile(source, tmp / name)

    directory, _ = cache.get_or_build(digest, {"disk": str(source), "format": spec.image_format}, copy)
    return directory / name, digest


class DiskKind(VmKind):
    kind = HostKind.DISK

    def provision(self, spec: DiskHostSpec, waiting: Callable[[str], None]) -> Host:
        disk, digest = cached_disk(spec, BuildCache(self.run.cache_root, "disks"))
        return DiskHost(spec, disk, digest, *self._placed(spec, waiting))

    @classmethod
    def cache_key(cls, spec: DiskHostSpec, matrix: Matrix) -> dict:
        """The disk's content and how it boots: everything else is the disk's own."""
        return {
            "disk": file_digest(Path(spec.image)),
            "arch": spec.arch,
            "engine": spec.engine,
            "runtime": spec.runtime,
            "cpu": spec.cpu,
            "machine": asdict(spec.machine),
            "domain": (matrix.vms_dir / "domain.xml").read_text(),
        }

    @classmethod
    def doctor(cls, specs: list[DiskHostSpec], pool: tuple[HypervisorSpec, ...]) -> list[str]:
        return problems(arches={s.arch for s in specs}, uris=[h.uri for h in pool], firmware=True) if specs else []

    @classmethod
    def cleanup(cls, conns, cache_root, spare, cleaned) -> None:
        """Nothing of its own: VmKind's cleanup finds every harness domain and per-run volume."""
