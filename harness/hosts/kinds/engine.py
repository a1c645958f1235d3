"""Engine hosts: an engine that already runs, reached over the Docker API (hosts/engine.py)."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable

import libvirt

from harness.config.kinds.engine import EngineHostSpec
from harness.config.model import HostKind, HypervisorSpec, Matrix
from harness.engines.service import PodmanService, stop_orphaned
from harness.hosts.engine import EngineHost, default_endpoint
from harness.hosts.kinds.base import HostKindDriver
from harness.hosts.provider import Host, HostError
from harness.runs import Cleaned


class EngineKind(HostKindDriver):
    kind = HostKind.ENGINE

    def __init__(self, matrix: Matrix, run) -> None:
        super().__init__(matrix, run)
        self._services: list[PodmanService] = []

    def provision(self, spec: EngineHostSpec, waiting: Callable[[str], None]) -> Host:
        return EngineHost(spec, self._endpoint(spec))

    def _endpoint(self, spec: EngineHostSpec) -> str:
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

    @classmethod
    def cache_key(cls, spec: EngineHostSpec, matrix: Matrix) -> dict:
        return {"endpoint": spec.endpoint, "local": spec.local, "runtime": spec.runtime, "ulimits": spec.ulimits, "machine": asdict(spec.machine)}

    @classmethod
    def doctor(cls, specs: list[EngineHostSpec], pool: tuple[HypervisorSpec, ...]) -> list[str]:
        if any(s.local and not s.endpoint for s in specs) and shutil.which("podman") is None:
            return ["missing command podman (Debian package podman), for `local: true` engine hosts; run ./setup-machine as root"]
        return []

    @classmethod
    def cleanup(cls, conns: Iterable[libvirt.virConnect], cache_root: Path, spare: set[str], cleaned: Cleaned) -> None:
        """The podman API service a killed run started."""
        if stopped := stop_orphaned():
            cleaned.services.append(stopped)
