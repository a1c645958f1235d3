"""A pytest plugin for bench/scale.py only: hosts and image builds replaced by stubs that answer at
once, so what is measured is the harness itself (collection, scheduling, recording, reporting)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.model import HostSpec, ScenarioSpec
from harness.hosts.provider import Host
from harness.hosts.provision import Provisioner
from harness.images.build import ImageBuild
from harness.results.model import DeliveryRecord, ExecRecord, HostRecord
from harness.session import MatrixSession


class StubHost(Host):
    """Every command succeeds at once; scenario names ending in -fails fail."""

    def __init__(self, spec: HostSpec):
        super().__init__(HostRecord(spec.name, spec.release, spec.arch, spec.engine, spec.runtime, settings=spec.settings()))

    def start(self, images: list[ImageBuild], scenarios: list[ScenarioSpec]) -> None:
        self.record.boot_seconds, self.record.accel = 0.0, "stub"

    def _ok(self, argv: list[str], code: int = 0) -> ExecRecord:
        return ExecRecord(argv, code, "stub output\n", "", 0.0)

    def load_image(self, image: ImageBuild, timeout: float) -> ExecRecord:
        return self._ok(["stub", "load", image.name])

    def run_scenario(self, image_id: str, scenario: ScenarioSpec, timeout: float) -> ExecRecord:
        return self._ok(["stub", "run", image_id, scenario.name], 1 if scenario.name.endswith("-fails") else 0)

    def check_needs(self, image_id: str, scenario: ScenarioSpec, timeout: float) -> ExecRecord:
        return self._ok(["stub", "needs", image_id])

    def reproduce(self, delivery: DeliveryRecord, scenario: ScenarioSpec) -> list[str]:
        return [f"stub run {delivery.image} {scenario.name}"]

    def facts(self) -> dict[str, str]:
        self.record.facts = {"kernel": "stub", "machine": self.record.arch}
        return self.record.facts

    def stop(self) -> None:
        pass


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    Provisioner.provision = lambda self, spec, waiting=None: StubHost(spec)  # type: ignore[method-assign]
    MatrixSession._build = lambda self, spec, arch: ImageBuild(spec.name, arch, "0" * 64, Path("/dev/null"), f"sha256:{spec.name}", 0)  # type: ignore[method-assign]
