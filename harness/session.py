"""A run's three owners in one process, wired together: the fleet (hosts), the image supply
(images), and the cell runner (cells). The pytest item asks the fleet and the supply, then the
runner; this module only builds them and tells them which cells this process runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from harness.cells.blame import BLAMED, Blamer, HostVariants, ImageVariants, image_variants
from harness.cells.siblings import variants_of
from harness.cells.cache import CellKeys, ResultCache
from harness.cells.runner import CellRunner, CellSettings
from harness.config.model import HostSpec, HypervisorSpec, ImageSpec, Matrix, ScenarioSpec
from harness.context import RunContext
from harness.hosts.fleet import Fleet
from harness.hosts.hypervisors import needs_open_registry
from harness.hosts.kinds import DRIVERS
from harness.images.build import build_image
from harness.registry.server import RegistryServer, registry_root
from harness.hosts.provider import Host, HostError
from harness.results.model import CellResult, DeliveryRecord, HostRecord, Layer, Verdict
from harness.supply import ImageSupply, SupplyError


def run_registry(matrix: Matrix, cache_root: Path, pool: tuple[HypervisorSpec, ...]) -> RegistryServer | None:
    """The registry a run of `matrix` serves its images from, not yet started; None when no VM host
    pulls (archive delivery, engine hosts only)."""
    if matrix.delivery != "registry" or not matrix.vm_hosts():
        return None
    port = matrix.registry_port
    return RegistryServer(registry_root(cache_root, port), f"127.0.0.1:{port}", listen_all=needs_open_registry(pool))


@dataclass(frozen=True)
class Parts:
    """What hosts and images are made with. A pytest plugin may give others (bench/scale.py's stub
    hosts) by setting harness.plugin.options.PARTS_KEY in its pytest_configure."""

    drivers: dict = field(default_factory=lambda: dict(DRIVERS))  # HostKind -> type[HostKindDriver]
    build_image: Callable = build_image  # as harness.images.build.build_image


@dataclass
class RunSession:
    matrix: Matrix
    run: RunContext
    reuse: bool = False  # --reuse: take unchanged cells from the result cache
    parts: Parts = field(default_factory=Parts)
    blamer: Blamer | None = None  # None: --no-blame
    fleet: Fleet = field(init=False)
    supply: ImageSupply = field(init=False)
    runner: CellRunner = field(init=False)
    keys: CellKeys = field(init=False)
    # Per host, its failing cells of this run, blamed after its last cell.
    _failures: dict[str, list[tuple[Host, DeliveryRecord, ScenarioSpec, CellResult]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.supply = ImageSupply(self.matrix, self.run, build=self.parts.build_image)
        self.fleet = Fleet(self.matrix, self.run, carry=self.supply.carry, reach=self.supply.reach, drivers=self.parts.drivers, build=self.parts.build_image)
        # Every judged cell is kept in the result cache, so a later --reuse run can take it.
        self.runner = CellRunner(ResultCache(self.run.cache_root))
        self.keys = CellKeys(self.matrix, lambda spec: self.parts.drivers[spec.kind].cache_key(spec, self.matrix))
        self.fleet.on_move += [self.supply.forget, self.runner.forget]
        if self.blamer is not None and self.blamer.variants is None:
            self.blamer.variants = ImageVariants(lambda host, image: image_variants(self.matrix, host, image), self._deliver_variant)
        if self.blamer is not None:
            self.blamer.progress = lambda host, what: self.run.phase(host, "blaming", what)
        if self.blamer is not None and self.blamer.host_variants is None:
            self.blamer.host_variants = HostVariants(lambda host: variants_of(self.matrix, host), self._start_variant, self._deliver_matrix_image, self.fleet.stop_variant)

    def _deliver_matrix_image(self, host: Host, image: str) -> DeliveryRecord | str:
        """The matrix's image on a variant host, or why it could not be had."""
        return _delivered(lambda: self.supply.deliver(host, image), image, host)

    def _deliver_variant(self, host: Host, spec: ImageSpec) -> DeliveryRecord | str:
        """A blame experiment's other image on the host, or why it could not be had."""
        return _delivered(lambda: self.supply.deliver_variant(host, spec), spec.name, host)

    def select(self, cells: list[tuple[str, str, str]]) -> None:
        """The cells this process will run: which images each host needs, and how many cells."""
        for host, image, _ in cells:
            self.supply.select(host, image)
            self.fleet.expect(host)

    def settings(self, host: str, image: str, scenario: str) -> CellSettings:
        spec = self.matrix.host(host)
        if self.matrix.image(image).reference:
            digest = self.supply.reference_digest(image, spec.arch)
            if not digest:
                return CellSettings.of(self.matrix)  # what the reference names cannot be read: no verdict is kept or taken
        else:
            digest = self.supply.cached_manifest(image, spec.arch) if spec.arch else ""
        return CellSettings.of(self.matrix, self.keys.key(host, image, scenario, digest))

    def reused(self, host: str, image: str, scenario: str, settings: CellSettings) -> CellResult | None:
        """With --reuse, the cell's cached verdict; its host's and delivery's records join the run's."""
        hit = self.runner.reused(host, image, scenario, settings) if self.reuse else None
        if hit is None:
            return None
        cell, host_record, delivery = hit
        if host_record.name == host:  # else the cache's key missed what tells the two hosts apart
            self.fleet.remember(host_record, cell.started_at)
        if delivery is not None and delivery.host == host:
            note = f"not delivered by this run: the cells were reused from the result cache (delivered for the cell judged at {cell.started_at})"
            self.supply.deliveries.setdefault((host, image), replace(delivery, reused=note))
        self.supply.record_cached(image, host_record.arch or self.matrix.host(host).arch)
        return cell

    def ran(self, host: Host, delivery: DeliveryRecord, scenario: ScenarioSpec, result: CellResult) -> None:
        """A cell this process ran; a failure is kept for blame after the host's last cell."""
        # An image for another platform than the host's fails for that alone: no swap can change it.
        if self.blamer is not None and (result.original_outcome or result.outcome) in BLAMED and not delivery.mismatch:
            self._failures.setdefault(host.name, []).append((host, delivery, scenario, result))

    def cell_done(self, host: str) -> list[Verdict]:
        """A cell of the host is finished. After its last one, its failures are blamed (the host
        still up, so the matrix's first results were not delayed), then the host is stopped.
        Returns the verdicts made or extended, to be recorded."""
        found: list[tuple[Verdict, CellResult, ScenarioSpec]] = []
        if self.fleet.last_cell(host):
            failures = self._failures.pop(host, [])
            for number, (running, delivery, scenario, result) in enumerate(failures, 1):
                self.run.phase(host, "blaming", f"{result.image}/{result.scenario} ({number} of {len(failures)})")
                try:
                    verdict = self.blamer.blame(running, delivery, scenario, result) if self.blamer else None
                except HostError as exc:  # the host died under an experiment: no more of them there
                    self.run.phase(host, "blaming", f"stopped: {exc}")
                    break
                if verdict is not None:
                    found.append((verdict, result, scenario))
        self.fleet.cell_done(host)  # after its last cell: the host is stopped, its slot free
        if self.blamer is None or not any(v.layer == Layer.IMAGE for v, _, _ in found):
            return [v for v, _, _ in found]
        self.run.phase(host, "blaming", "what nothing on the host explained, on variant hosts")
        return self.blamer.blame_hosts(host, [(v, result.image, scenario) for v, result, scenario in found])

    def _start_variant(self, spec: HostSpec, image: str) -> Host:
        self.supply.needed.setdefault(spec.name, set()).add(image)  # what it carries, if it loads archives
        return self.fleet.variant(spec)

    def records(self, host: str, image: str) -> tuple[HostRecord, DeliveryRecord | None]:
        return self.fleet.record(host), self.supply.deliveries.get((host, image))

    def close(self) -> None:
        self.fleet.close()


def _delivered(deliver: Callable[[], DeliveryRecord], image: str, host: Host) -> DeliveryRecord | str:
    """A blame experiment's delivery, or why it could not be had (its cell's trouble, not the run's)."""
    try:
        delivery = deliver()
    except SupplyError as exc:
        return str(exc)
    return delivery if delivery.ok else f"image {image} could not be delivered to {host.name}: {delivery.output.strip()[-500:]}"
