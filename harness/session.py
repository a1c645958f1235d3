"""A run's live state in one process: which hosts are up, which images each host has, and the cells.

Each host boots once, on its first cell, and serves every later cell; an image is loaded into a
host's engine once, on its first cell there. A host that failed to boot is not retried per cell:
its failure is the verdict of each of its cells.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import libvirt

from harness.cache import BuildCache
from harness.cell import cell_result, clip, error_result, now
from harness.config.model import Matrix
from harness.engines.podman import engine_for
from harness.hosts.accel import AccelVerdicts
from harness.hosts.build import build_host
from harness.hosts.libvirt import LibvirtHost, connect
from harness.hosts.provider import Host, HostError
from harness.images.build import ImageBuild, build_image
from harness.images.deliver import assemble_payload, payload_paths
from harness.mmdebstrap import BuildError
from harness.results.model import CellResult, DeliveryRecord, HostRecord


class CellError(Exception):
    """A cell could not be judged (host, build or delivery failure); carries the error result."""

    def __init__(self, result: CellResult):
        super().__init__(result.message)
        self.result = result


@dataclass
class MatrixSession:
    matrix: Matrix
    run_id: str
    reports: Path
    cache_root: Path
    uri: str = "qemu:///system"
    # (host, image) pairs the selected cells need, so each host's payload holds just those images.
    needed: dict[str, set[str]] = field(default_factory=dict)
    _conn: libvirt.virConnect | None = None
    _hosts: dict[str, Host] = field(default_factory=dict)
    _broken: dict[str, str] = field(default_factory=dict)
    _images: dict[tuple[str, str], ImageBuild] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], DeliveryRecord] = field(default_factory=dict)

    @property
    def workdir(self) -> Path:
        return self.cache_root / "runs" / self.run_id

    def _connection(self) -> libvirt.virConnect:
        if self._conn is None:
            self._conn = connect(self.uri)
        return self._conn

    def host_record(self, name: str) -> HostRecord:
        if name in self._hosts:
            return self._hosts[name].record
        spec = self.matrix.host(name)
        return HostRecord(name, spec.release, spec.arch, spec.engine, spec.runtime, error=self._broken.get(name, ""))

    # -- hosts ------------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        """The running host, booting it (and building what it needs) on first use."""
        if name in self._broken:
            raise HostError(self._broken[name])
        if name in self._hosts:
            return self._hosts[name]
        spec = self.matrix.host(name)
        try:
            build, _ = build_host(spec, self.matrix.vms_dir, self.matrix.mirror, BuildCache(self.cache_root, "hosts"))
            images = [self.image(i, spec.arch) for i in sorted(self.needed.get(name, ()))]
            payload = assemble_payload(self.workdir / name / "payload", images, list(self.matrix.scenarios))
            host = LibvirtHost(
                spec,
                build,
                self._connection(),
                self.matrix.vms_dir / "domain.xml",
                self.workdir / name,
                self.run_id,
                AccelVerdicts(self.cache_root),
            )
            self._hosts[name] = host
            host.start(payload)
            shutil.rmtree(payload)
            host.facts()
        except (HostError, BuildError) as exc:
            self._broken[name] = str(exc)
            if name in self._hosts:
                broken = self._hosts[name]
                broken.record.error = str(exc)
                self._keep_console(broken)
                broken.stop()
            raise HostError(str(exc)) from None
        self._keep_console(host)
        return host

    def image(self, name: str, arch: str) -> ImageBuild:
        key = (name, arch)
        if key not in self._images:
            self._images[key], _ = build_image(self.matrix.image(name), arch, self.matrix.mirror, BuildCache(self.cache_root, "images"))
        return self._images[key]

    def _keep_console(self, host: Host) -> None:
        if isinstance(host, LibvirtHost):
            dest = self.reports / "hosts" / host.name / "console.log"
            host.keep_console(dest)
            host.record.console_log = str(dest.relative_to(self.reports))

    # -- images on hosts --------------------------------------------------------------------------
    def deliver(self, host: Host, image_name: str) -> DeliveryRecord:
        """Load the image into the host's engine once; the record is the portability evidence."""
        key = (host.name, image_name)
        if key in self.deliveries:
            return self.deliveries[key]
        spec = self.matrix.host(host.name)
        image = self.image(image_name, spec.arch)
        engine = engine_for(spec.engine, spec.runtime)
        archive, _ = payload_paths(host.payload_root, image_name)
        load = host.run(engine.load(archive), timeout=spec.machine.cell_timeout * 4)
        check = host.run(engine.image_exists(image.image_id), timeout=60)
        record = DeliveryRecord(
            host=host.name,
            image=image_name,
            image_id=image.image_id,
            ok=load.exit_code == 0 and check.exit_code == 0,
            duration=round(load.duration, 3),
            command=load.argv,
            output=clip(load.stdout + load.stderr, 8192),
        )
        self.deliveries[key] = record
        return record

    # -- cells ------------------------------------------------------------------------------------
    def run_cell(self, host_name: str, image_name: str, scenario_name: str) -> CellResult:
        """Run one cell; raise CellError when the host or the delivery failed before the scenario ran."""
        started_at, start = now(), time.monotonic()

        def error(message: str) -> CellError:
            return CellError(error_result(host_name, image_name, scenario_name, message, started_at, time.monotonic() - start))

        try:
            host = self.host(host_name)
            delivery = self.deliver(host, image_name)
        except (HostError, BuildError) as exc:
            raise error(str(exc)) from None
        if not delivery.ok:
            raise error(f"image {image_name} could not be loaded by {host_name}'s engine: {delivery.output.strip()[-300:]}")
        spec = self.matrix.host(host_name)
        scenario = self.matrix.scenario(scenario_name)
        _, scenarios_dir = payload_paths(host.payload_root, image_name)
        command = engine_for(spec.engine, spec.runtime).run(delivery.image_id, f"{scenarios_dir}/{scenario_name}")
        try:
            execution = host.run(command, timeout=scenario.timeout or spec.machine.cell_timeout)
        except HostError as exc:
            raise error(str(exc)) from None
        return cell_result(host_name, image_name, scenario_name, execution, started_at)

    def close(self) -> None:
        """Stop every host, keep their console logs, and remove the run's working files."""
        for host in self._hosts.values():
            self._keep_console(host)
            host.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None
