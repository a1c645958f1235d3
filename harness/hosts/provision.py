"""Turn a host of the matrix into a Host object: the provision step, kept apart from the Host it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import libvirt

from harness.cache import BuildCache
from harness.cleanup import claim
from harness.config.model import HostSpec, Matrix
from harness.engines.service import PodmanService
from harness.hosts.accel import AccelVerdicts
from harness.hosts.build import build_host
from harness.hosts.engine import EngineHost, default_endpoint
from harness.hosts.initramfs import cached_base
from harness.hosts.libvirt import LibvirtHost, connect
from harness.hosts.provider import Host, HostError


@dataclass
class Provisioner:
    """Creates hosts for one run and owns what they share: the libvirt connection, the podman service."""

    matrix: Matrix
    run_id: str
    cache_root: Path
    workdir: Path
    uri: str = "qemu:///system"
    _conn: libvirt.virConnect | None = None
    _services: list[PodmanService] = field(default_factory=list)

    def provision(self, spec: HostSpec) -> Host:
        """The host, not yet started; VM hosts are built (or taken from the cache) here."""
        if spec.kind == "engine":
            return EngineHost(spec, self._endpoint(spec))
        if self._conn is None:
            self._conn = connect(self.uri)
            claim(self.workdir)
        build, _ = build_host(spec, self.matrix.vms_dir, self.matrix.mirror, BuildCache(self.cache_root, "hosts"))
        base = cached_base(build.digest, build.root_disk, BuildCache(self.cache_root, "initramfs"))
        return LibvirtHost(
            spec,
            build,
            base,
            self._conn,
            self.matrix.vms_dir,
            self.workdir / spec.name,
            self.run_id,
            AccelVerdicts(self.cache_root),
        )

    def _endpoint(self, spec: HostSpec) -> str:
        if spec.endpoint:
            return spec.endpoint
        if not spec.local:
            return default_endpoint()
        service = PodmanService()
        try:
            endpoint = service.start()
        except RuntimeError as exc:
            raise HostError(f"host {spec.name}: {exc}") from None
        self._services.append(service)
        return endpoint

    def close(self) -> None:
        for service in self._services:
            service.stop()
        self._services.clear()
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None
