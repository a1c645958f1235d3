"""The cell runner: one call runs a cell on a started host with a delivered image, and returns its
final result: judged, retried, known issues applied once, the reproduce lines set.

It raises HostError when the host fails under the cell (HypervisorLost when the host's hypervisor
stopped answering): that is the host's failure, never the image's, and the caller tells the fleet.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from harness.cells.cache import ResultCache
from harness.cells.verdict import apply_known_issues, cell_result, with_retries
from harness.config.model import KnownIssue, Matrix, ScenarioSpec
from harness.hosts.fleet import PROBE_SCENARIO
from harness.hosts.host_side import image_name
from harness.hosts.provider import NOT_APPLICABLE, Host, missing_from
from harness.results.model import CellResult, DeliveryRecord, ExecRecord, HostRecord, now


@dataclass(frozen=True)
class CellSettings:
    """What of the matrix decides how a cell is run and judged, besides its host, image and scenario."""

    retries: int = 1
    known_issues: tuple[KnownIssue, ...] = ()
    # Every scenario's needs: one container per host and image checks them all.
    needs: tuple[str, ...] = ()
    cache_key: str = ""  # where the judged verdict is kept for --reuse; empty: not kept

    @classmethod
    def of(cls, matrix: Matrix, cache_key: str = "") -> "CellSettings":
        needs = tuple(sorted({c for s in matrix.scenarios for c in s.needs}))
        return cls(matrix.retries, matrix.known_issues, needs, cache_key)


@dataclass
class CellRunner:
    cache: ResultCache | None = None
    # Per host and image: the one container that listed what the image lacks of every scenario's
    # needs, and what it lacks.
    _lacks: dict[tuple[str, str], tuple[ExecRecord | None, set[str]]] = field(default_factory=dict)

    def run(self, host: Host, delivery: DeliveryRecord, scenario: ScenarioSpec, settings: CellSettings) -> CellResult:
        started_at = now()
        timeout = host.timeout_for(scenario)
        if scenario.mode == "host":  # the name the host-side script finds this cell's image under
            scenario = replace(scenario, image_as=image_name(scenario, delivery.image))

        def attempt() -> CellResult:
            execution = host.run_scenario(delivery.image_id, scenario, timeout)
            return cell_result(host.name, delivery.image, scenario.name, execution, now(), scenario.expected_stdout)

        judged = self._lacking(host, delivery, scenario, settings) or with_retries(attempt(), attempt, settings.retries)
        message = judged.message
        if delivery.mismatch:  # flagged, and run anyway: what really happened is the finding
            message = f"{delivery.mismatch}; {message}" if message else delivery.mismatch
        judged = replace(judged, started_at=started_at, message=message, reproduce=host.reproduce(delivery, scenario))
        if self.cache is not None and settings.cache_key:
            self.cache.put(settings.cache_key, judged, host.record, delivery)
        return apply_known_issues(judged, settings.known_issues)

    def not_portable(self, result: CellResult, host: HostRecord, delivery: DeliveryRecord, settings: CellSettings) -> None:
        """A cell whose image the host's engine refused as not portable to it: kept for --reuse
        like a verdict, so that a rerun boots no host to be refused again."""
        if self.cache is not None and settings.cache_key:
            self.cache.put(settings.cache_key, result, host, delivery)

    def reused(self, host: str, image: str, scenario: str, settings: CellSettings) -> tuple[CellResult, HostRecord, DeliveryRecord | None] | None:
        """The cell's cached verdict (with its host's and delivery's records) when nothing that
        could change it changed; recorded under the cell that asked, known issues applied now."""
        hit = self.cache.get(settings.cache_key) if self.cache is not None and settings.cache_key else None
        if hit is None:
            return None
        cell, host_record, delivery = hit
        note = f"reused from the result cache (run of {cell.started_at})"
        cell = replace(cell, host=host, image=image, scenario=scenario, message=f"{note}; {cell.message}" if cell.message else note)
        return apply_known_issues(cell, settings.known_issues), host_record, delivery

    def _lacking(self, host: Host, delivery: DeliveryRecord, scenario: ScenarioSpec, settings: CellSettings) -> CellResult | None:
        """The not-applicable verdict of a cell whose scenario needs a command the image lacks, from
        one container per host and image that checked every scenario's needs (instead of a container
        per cell that only finds its needs missing: a fifth of the default matrix); None: run it."""
        key = (host.name, delivery.image)
        if key not in self._lacks:
            check = host.check_needs(delivery.image_id, replace(PROBE_SCENARIO, needs=settings.needs), host.cell_timeout) if settings.needs else None
            self._lacks[key] = (check, (missing_from(check) or set()) if check else set())
        check, lacks = self._lacks[key]
        lacking = [c for c in scenario.needs if c in lacks]
        if check is None or not lacking:
            return None
        evidence = ExecRecord(
            check.argv,
            NOT_APPLICABLE,
            f"missing: {' '.join(sorted(lacks))} (one container checked the needs of every scenario in this image on this host)\n"
            f"not applicable: the image has no {', '.join(lacking)}\n",
            check.stderr,
            0.0,
        )
        return cell_result(host.name, delivery.image, scenario.name, evidence, now())

    def forget(self, host_name: str) -> None:
        """The host starts again elsewhere: its needs are checked again there."""
        for key in [k for k in self._lacks if k[0] == host_name]:
            del self._lacks[key]
