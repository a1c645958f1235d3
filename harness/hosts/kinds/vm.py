"""VM hosts: built from a release's packages, booted with QEMU through libvirt (hosts/libvirt.py)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable

import libvirt

from harness.cache import BuildCache, digest_of, tree_digest
from harness.config.kinds.vm import VmHostSpec
from harness.config.model import HostKind, HostSpec, HypervisorSpec, Matrix
from harness.hosts.build import build_host, host_recipe
from harness.hosts.domain import owner_of
from harness.hosts.files import PER_RUN, POOL_NAME, LocalFiles, remove_run_volumes
from harness.hosts.hypervisors import HypervisorPool
from harness.hosts.initramfs import cached_base
from harness.hosts.kinds.base import HostKindDriver
from harness.hosts.libvirt import BuiltHost, boot_cmdline, connect
from harness.hosts.provider import Host, HostError
from harness.hosts.store import ImageStore
from harness.runs import Cleaned, claim, lives
from harness.setup.doctor import problems


class VmKind(HostKindDriver):
    kind = HostKind.VM
    _pool: HypervisorPool | None = None

    @property
    def pool(self) -> HypervisorPool:
        """The run's hypervisors (worked out once, in RunContext), with slots shared by its workers."""
        if self._pool is None:
            claim(self.run.workdir)
            self._pool = HypervisorPool.for_matrix(self.matrix, self.run.hypervisors, self.run.workdir / "slots", connect)
        return self._pool

    def provision(self, spec: VmHostSpec, waiting: Callable[[str], None]) -> Host:
        """Built (or taken from the cache), then given a slot on a hypervisor of the pool (waiting
        for one while all are taken)."""
        cache_root = self.run.cache_root
        build, _ = build_host(spec, self.matrix.vms_dir, self.matrix.mirror, BuildCache(cache_root, "hosts"))
        base = cached_base(build.digest, build.root_disk, BuildCache(cache_root, "initramfs"))
        placed = self._placed(spec, waiting)
        host = BuiltHost(spec, build, base, *placed)
        # A kept image store lives beside the build cache: on this machine's own hypervisor only
        # (a remote node's would need its volumes flattened there, which is not done yet).
        if self.run.image_stores != "off" and isinstance(placed[-1], LocalFiles) and spec.engine:
            host.store = ImageStore(cache_root / "stores", build.digest)
            host.fresh_store = self.run.image_stores == "fresh"
        return host

    def _placed(self, spec: HostSpec, waiting: Callable[[str], None]) -> tuple:
        """A slot on a hypervisor of the pool, and what a LibvirtHost needs of it, in the order its
        constructor takes them: (slot, vms_dir, workdir, run_id, verdicts, files)."""
        slot = self.pool.place(spec.name, spec.qemu_arch, waiting, spec.machine.vcpus)
        hypervisor, workdir = slot.hypervisor, self.run.workdir / spec.name
        try:
            files = hypervisor.files(self.run.run_id, spec.name, workdir, self.run.cache_root / "locks")
        except libvirt.libvirtError as exc:
            slot.release()
            raise HostError(f"host {spec.name}: hypervisor {hypervisor.name} has no storage for it: {exc.get_error_message()}") from None
        return slot, self.matrix.vms_dir, workdir, self.run.run_id, hypervisor.verdicts(self.run.cache_root), files

    def lose_hypervisor(self, name: str, why: str) -> None:
        self.pool.forget(name, why)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @classmethod
    def cache_key(cls, spec: VmHostSpec, matrix: Matrix) -> dict:
        """Its disk's recipe, and how it boots: the kernel command line (cgroup mode, LSM and the
        matrix's own words), CPU model, machine, and the guest's scripts and domain template, which
        are not in the recipe (they are added at each boot)."""
        return {
            "recipe": digest_of(host_recipe(spec, matrix.vms_dir)),
            "cmdline": boot_cmdline(spec),
            "cpu": spec.cpu,
            "machine": asdict(spec.machine),
            "guest": tree_digest(matrix.vms_dir / "guest"),
            "domain": (matrix.vms_dir / "domain.xml").read_text(),
        }

    @classmethod
    def doctor(cls, specs: list[VmHostSpec], pool: tuple[HypervisorSpec, ...]) -> list[str]:
        return problems(arches={s.arch for s in specs}, uris=[h.uri for h in pool]) if specs else []

    @classmethod
    def cleanup(cls, conns: Iterable[libvirt.virConnect], cache_root: Path, spare: set[str], cleaned: Cleaned) -> None:
        """Domains (found by the run recorded in their metadata) and per-run volumes of dead runs."""
        for conn in conns:
            for dom in conn.listAllDomains():
                try:
                    owner = owner_of(dom.XMLDesc())
                except libvirt.libvirtError:
                    continue  # vanished meanwhile
                if owner is None or owner.run in spare:
                    continue
                if owner.run_dir and lives(Path(owner.run_dir)):  # a live run with another cache directory
                    spare.add(owner.run)
                    continue
                try:
                    if dom.isActive():
                        dom.destroy()
                    if dom.isPersistent():
                        dom.undefine()
                except libvirt.libvirtError:
                    continue
                cleaned.domains.append(dom.name())
            try:
                pool = conn.storagePoolLookupByName(POOL_NAME)
            except libvirt.libvirtError:
                continue  # no harness volumes there (this machine's own hypervisor uses files in place)
            cleaned.volumes += remove_run_volumes(pool, lambda name: not any(name.startswith(f"{PER_RUN}{run}-") for run in spare))
