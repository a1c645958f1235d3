"""Turn a host of the matrix into a Host object: the provision step, kept apart from the Host it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import libvirt

from harness.cache import BuildCache
from harness.cleanup import claim
from harness.config.model import HostSpec, HypervisorSpec, Matrix
from harness.engines.service import PodmanService
from harness.hosts.build import build_host
from harness.hosts.engine import EngineHost, default_endpoint
from harness.hosts.hypervisors import HypervisorPool
from harness.hosts.initramfs import cached_base
from harness.hosts.libvirt import LibvirtHost, connect
from harness.hosts.provider import Host, HostError


@dataclass
class Provisioner:
    """Creates hosts for one run and owns what they share: the hypervisor pool, the podman service."""

    matrix: Matrix
    run_id: str
    cache_root: Path
    workdir: Path
    hypervisors: tuple[HypervisorSpec, ...] = ()  # empty: the matrix's own
    _pool: HypervisorPool | None = None
    _services: list[PodmanService] = field(default_factory=list)

    @property
    def pool(self) -> HypervisorPool:
        if self._pool is None:
            claim(self.workdir)
            self._pool = HypervisorPool.for_matrix(self.matrix, self.hypervisors or self.matrix.hypervisors, self.workdir / "slots", connect)
        return self._pool

    def provision(self, spec: HostSpec, waiting: Callable[[str], None] = lambda _msg: None) -> Host:
        """The host, not yet started: VM hosts are built (or taken from the cache), then given a
        slot on a hypervisor of the pool (waiting for one while all are taken)."""
        if spec.kind == "engine":
            return EngineHost(spec, self._endpoint(spec))
        build, _ = build_host(spec, self.matrix.vms_dir, self.matrix.mirror, BuildCache(self.cache_root, "hosts"))
        base = cached_base(build.digest, build.root_disk, BuildCache(self.cache_root, "initramfs"))
        slot = self.pool.place(spec.name, spec.qemu_arch, waiting)
        hypervisor, workdir = slot.hypervisor, self.workdir / spec.name
        try:
            files = hypervisor.files(self.run_id, spec.name, workdir, self.cache_root / "locks")
        except libvirt.libvirtError as exc:
            slot.release()
            raise HostError(f"host {spec.name}: hypervisor {hypervisor.name} has no storage for it: {exc.get_error_message()}") from None
        return LibvirtHost(spec, build, base, slot, self.matrix.vms_dir, workdir, self.run_id, hypervisor.verdicts(self.cache_root), files)

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
        if self._pool is not None:
            self._pool.close()
            self._pool = None
