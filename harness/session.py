"""A run's three owners in one process, wired together: the fleet (hosts), the image supply
(images), and the cell runner (cells). The pytest item asks the fleet and the supply, then the
runner; this module only builds them and tells them which cells this process runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from harness.cells.cache import ResultCache, cell_key
from harness.cells.runner import CellRunner, CellSettings
from harness.config.model import Matrix
from harness.context import RunContext
from harness.hosts.fleet import Fleet
from harness.hosts.kinds import DRIVERS
from harness.images.build import build_image
from harness.results.model import CellResult, DeliveryRecord, HostRecord
from harness.supply import ImageSupply


@dataclass(frozen=True)
class Parts:
    """What hosts and images are made with. A pytest plugin may give others (bench/scale.py's stub
    hosts) by setting pytest_plugin.PARTS_KEY in its pytest_configure."""

    drivers: dict = field(default_factory=lambda: dict(DRIVERS))  # HostKind -> type[HostKindDriver]
    build_image: Callable = build_image  # as harness.images.build.build_image


@dataclass
class RunSession:
    matrix: Matrix
    run: RunContext
    reuse: bool = False  # --reuse: take unchanged cells from the result cache
    parts: Parts = field(default_factory=Parts)
    fleet: Fleet = field(init=False)
    supply: ImageSupply = field(init=False)
    runner: CellRunner = field(init=False)

    def __post_init__(self) -> None:
        self.supply = ImageSupply(self.matrix, self.run, build=self.parts.build_image)
        self.fleet = Fleet(self.matrix, self.run, carry=self.supply.carry, reach=self.supply.reach, drivers=self.parts.drivers, build=self.parts.build_image)
        # Every judged cell is kept in the result cache, so a later --reuse run can take it.
        self.runner = CellRunner(ResultCache(self.run.cache_root))
        self.fleet.on_move += [self.supply.forget, self.runner.forget]

    def select(self, cells: list[tuple[str, str, str]]) -> None:
        """The cells this process will run: which images each host needs, and how many cells."""
        for host, image, _ in cells:
            self.supply.select(host, image)
            self.fleet.expect(host)

    def settings(self, host: str, image: str, scenario: str) -> CellSettings:
        spec = self.matrix.host(host)
        host_part = self.parts.drivers[spec.kind].cache_key(spec, self.matrix)
        digest = self.supply.reference_digest(image, spec.arch) if self.matrix.image(image).reference else ""
        if self.matrix.image(image).reference and not digest:
            return CellSettings.of(self.matrix)  # what the reference names cannot be read: no verdict is kept or taken
        return CellSettings.of(self.matrix, cell_key(self.matrix, host_part, host, image, scenario, digest))

    def reused(self, host: str, image: str, scenario: str, settings: CellSettings) -> CellResult | None:
        """With --reuse, the cell's cached verdict; its host's and delivery's records join the run's."""
        hit = self.runner.reused(host, image, scenario, settings) if self.reuse else None
        if hit is None:
            return None
        cell, host_record, delivery = hit
        if host_record.name == host:  # else the cache's key missed what tells the two hosts apart
            self.fleet.remember(host_record)
        if delivery is not None and delivery.host == host:
            self.supply.deliveries.setdefault((host, image), delivery)
        self.supply.record_cached(image, host_record.arch or self.matrix.host(host).arch)
        return cell

    def records(self, host: str, image: str) -> tuple[HostRecord, DeliveryRecord | None]:
        return self.fleet.record(host), self.supply.deliveries.get((host, image))

    def close(self) -> None:
        self.fleet.close()
