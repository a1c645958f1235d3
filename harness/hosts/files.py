"""Where a host's boot files live for the hypervisor that boots it.

On this machine's own libvirt (`qemu:///system`) the cached kernel and root disk are used in place
and the per-boot files (overlay, initrd, delivery disk, console log) sit in the host's work
directory. A remote hypervisor (`qemu+ssh://node/system`, `qemu+tcp://...`) sees none of this
machine's files, so they reach it through libvirt itself, as storage volumes in a directory pool
on the node: cached files under their content key (uploaded once per node, reused by every later
run), per-boot ones under the run's name (removed at teardown, or by `harness cleanup` when the run
was killed), and the console log read back through a volume download.
"""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from pathlib import Path

import libvirt

POOL_NAME = "container-matrix-harness"
POOL_PATH = f"/var/lib/libvirt/images/{POOL_NAME}"
CACHED = "cache-"  # volumes named by content: kept across runs
PER_RUN = "run-"  # volumes of one run: run-<run id>-<host>-<file>
COMPLETE = ".complete"  # a cached volume is whole once this marker volume exists beside it


class HostFiles(ABC):
    """A host's files as its hypervisor reaches them: every method returns a path on the hypervisor."""

    @abstractmethod
    def cached(self, path: Path, key: str) -> str:
        """A file of the build cache (kernel, root disk), named by its content key."""

    @abstractmethod
    def own(self, path: Path) -> str:
        """A file made for this boot (initrd, delivery disk); removed by remove_own()."""

    @abstractmethod
    def overlay(self, base: str, size: int, base_format: str = "raw") -> str:
        """A fresh qcow2 overlay of `base` (a path from cached()), thrown away after the run."""

    @abstractmethod
    def scratch(self, name: str) -> str:
        """Where the hypervisor may create a file of this boot itself (the firmware's variables);
        removed by remove_own()."""

    @property
    @abstractmethod
    def console(self) -> str:
        """Where QEMU writes the serial console log."""

    @abstractmethod
    def console_text(self) -> str:
        """The console log so far ("" while nothing was written)."""

    def console_copy(self, dest: Path) -> Path | None:
        """The console log as a file on this machine (for the report), or None if nothing was written."""
        text = self.console_text()
        if not text:
            return None
        dest.write_text(text)
        return dest

    @abstractmethod
    def remove_own(self) -> None:
        """Remove what this boot made; cached files stay."""


class LocalFiles(HostFiles):
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self._made: list[Path] = []

    def cached(self, path: Path, key: str) -> str:
        return str(path)

    def own(self, path: Path) -> str:
        self._made.append(path)
        return str(path)

    def overlay(self, base: str, size: int, base_format: str = "raw") -> str:
        overlay = self.workdir / "root.qcow2"
        overlay.unlink(missing_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", base, str(overlay)], check=True, capture_output=True)
        self._made.append(overlay)
        return str(overlay)

    def scratch(self, name: str) -> str:
        self._made.append(self.workdir / name)
        return str(self.workdir / name)

    @property
    def console(self) -> str:
        return str(self.workdir / "console.log")

    def console_text(self) -> str:
        try:
            return Path(self.console).read_text(errors="replace")
        except OSError:
            return ""

    def console_copy(self, dest: Path) -> Path | None:
        console = Path(self.console)
        return console if console.exists() else None

    def remove_own(self) -> None:
        for path in self._made:
            path.unlink(missing_ok=True)
        self._made.clear()


def _section(fd: int) -> list:
    """[whether the file's position is in data, how long that data or hole runs] (SEEK_DATA/SEEK_HOLE)."""
    here = os.lseek(fd, 0, os.SEEK_CUR)
    end = os.fstat(fd).st_size
    try:
        data = os.lseek(fd, here, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            raise
        data = -1  # in the trailing hole, or at the end
    if data < 0:
        section = [False, end - here]
    elif data > here:
        section = [False, data - here]
    else:
        section = [True, os.lseek(fd, here, os.SEEK_HOLE) - here]
    os.lseek(fd, here, os.SEEK_SET)
    return section


def harness_pool(conn: libvirt.virConnect) -> libvirt.virStoragePool:
    """The hypervisor's pool of harness volumes, defined, built and started on first use."""
    try:
        pool = conn.storagePoolLookupByName(POOL_NAME)
    except libvirt.libvirtError:
        xml = f"<pool type='dir'><name>{POOL_NAME}</name><target><path>{POOL_PATH}</path></target></pool>"
        try:
            pool = conn.storagePoolDefineXML(xml, 0)
            pool.build(0)
        except libvirt.libvirtError:
            pool = conn.storagePoolLookupByName(POOL_NAME)  # another process defined it meanwhile
        pool.setAutostart(1)
    if not pool.isActive():
        try:
            pool.create(0)
        except libvirt.libvirtError:
            if not pool.isActive():
                raise
    return pool


def _volume_xml(name: str, size: int, fmt: str, backing: str | None = None, backing_format: str = "raw") -> str:
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(size)
    ET.SubElement(ET.SubElement(vol, "target"), "format", type=fmt)
    if backing:
        store = ET.SubElement(vol, "backingStore")
        ET.SubElement(store, "path").text = backing
        ET.SubElement(store, "format", type=backing_format)
    return ET.tostring(vol, encoding="unicode")


class VolumeFiles(HostFiles):
    """A host's files as storage volumes on a remote hypervisor (see the module's docstring)."""

    def __init__(self, conn: libvirt.virConnect, run_id: str, host: str, locks: Path):
        self.conn, self.locks = conn, locks
        self.prefix = f"{PER_RUN}{run_id}-{host}-"
        self.pool = harness_pool(conn)

    def _lookup(self, name: str) -> libvirt.virStorageVol | None:
        try:
            return self.pool.storageVolLookupByName(name)
        except libvirt.libvirtError:
            return None

    def _upload(self, path: Path, name: str) -> libvirt.virStorageVol:
        """Upload as a sparse stream: a root disk is mostly holes (6.8 GB apparent, 0.5 GB of data),
        and only its data crosses the wire and takes room on the node."""
        if (stale := self._lookup(name)) is not None:
            stale.delete(0)
        size = path.stat().st_size
        vol = self.pool.createXML(_volume_xml(name, size, "raw"), 0)
        stream = self.conn.newStream(0)
        vol.upload(stream, 0, size, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
        fd = os.open(path, os.O_RDONLY)
        try:
            stream.sparseSendAll(
                lambda _stream, nbytes, fd: os.read(fd, nbytes),
                lambda _stream, fd: _section(fd),
                lambda _stream, length, fd: os.lseek(fd, length, os.SEEK_CUR),
                fd,
            )
            stream.finish()
        finally:
            os.close(fd)
        return vol

    def cached(self, path: Path, key: str) -> str:
        name = f"{CACHED}{key}"
        self.locks.mkdir(parents=True, exist_ok=True)
        with open(self.locks / f"upload-{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two runs on this machine upload it once
            self.pool.refresh(0)
            vol = self._lookup(name)
            if vol is None or self._lookup(name + COMPLETE) is None:
                vol = self._upload(path, name)
                self.pool.createXML(_volume_xml(name + COMPLETE, 0, "raw"), 0)
            return vol.path()

    def own(self, path: Path) -> str:
        return self._upload(path, self.prefix + path.name).path()

    def overlay(self, base: str, size: int, base_format: str = "raw") -> str:
        name = self.prefix + "root.qcow2"
        if (stale := self._lookup(name)) is not None:
            stale.delete(0)
        return self.pool.createXML(_volume_xml(name, size, "qcow2", backing=base, backing_format=base_format), 0).path()

    def scratch(self, name: str) -> str:
        return f"{self.pool_path}/{self.prefix}{name}"  # a file of the pool: refreshed and removed like the rest

    @property
    def console(self) -> str:
        return f"{self.pool_path}/{self.prefix}console.log"

    @property
    def pool_path(self) -> str:
        return ET.fromstring(self.pool.XMLDesc(0)).findtext("target/path") or POOL_PATH

    def console_text(self) -> str:
        try:
            self.pool.refresh(0)
            vol = self.pool.storageVolLookupByName(self.prefix + "console.log")
            chunks: list[bytes] = []
            stream = self.conn.newStream(0)
            vol.download(stream, 0, 0, 0)
            stream.recvAll(lambda _stream, data, acc: acc.append(data) or 0, chunks)
            stream.finish()
        except libvirt.libvirtError:
            return ""
        return b"".join(chunks).decode(errors="replace")

    def remove_own(self) -> None:
        remove_run_volumes(self.pool, lambda name: name.startswith(self.prefix))


def remove_run_volumes(pool: libvirt.virStoragePool, doomed) -> list[str]:
    """Delete the per-run volumes whose names `doomed` accepts; returns their names."""
    removed = []
    try:
        pool.refresh(0)
        volumes = pool.listAllVolumes(0)
    except libvirt.libvirtError:
        return removed
    for vol in volumes:
        name = vol.name()
        if name.startswith(PER_RUN) and doomed(name):
            try:
                vol.delete(0)
                removed.append(name)
            except libvirt.libvirtError:
                pass  # in use by a domain still being destroyed, or gone meanwhile
    return removed
