"""The fleet: a run's hosts, each started once on its first cell and stopped after its last.

It places and starts hosts (through their kind's driver), health-checks them, moves a host whose
hypervisor stops answering, stops them, keeps their evidence, and is the only writer of the host
records that go into the results. A host that failed to start is not retried per cell: its failure
is the verdict of each of its cells.
"""

from __future__ import annotations

import errno
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from harness.cache import BuildCache
from harness.config.model import PROBE_IMAGE, HostKind, HostSpec, Matrix, ScenarioSpec
from harness.context import RunContext
from harness.hosts.hypervisors import HypervisorLost
from harness.hosts.kinds import DRIVERS
from harness.hosts.kinds.base import HostKindDriver
from harness.hosts.provider import Host, HostError
from harness.images.build import ImageBuild, build_image
from harness.mmdebstrap import BuildError
from harness.registry.publish import guest_reference, guest_registry
from harness.results.model import DeliveryRecord, HostRecord
from harness.runs import release

_PROBE_DIR = Path(__file__).resolve().parent.parent / "harness-probe"
# Run in the probe image on every host before its cells; a plain scenario, delivered like the others.
PROBE_SCENARIO = ScenarioSpec("harness-probe", _PROBE_DIR, _PROBE_DIR / "run", "a trivial container runs", None, dimension="engine")


def os_problem(exc: OSError) -> str:
    """One line for a failure of this machine itself (a full disk, permissions), naming the path."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"the disk is full{where}: free some space, or set HARNESS_CACHE to a larger disk"
    return f"{exc.strerror or exc}{where}"


@dataclass
class Fleet:
    matrix: Matrix
    run: RunContext
    # The image archives a starting host takes with it (hosts that do not pull); set by the session
    # from the image supply, which sits above the fleet.
    carry: Callable[[Host], list[ImageBuild]] = lambda _host: []
    drivers: dict[HostKind, type[HostKindDriver]] = field(default_factory=lambda: dict(DRIVERS))
    build: Callable[..., tuple[ImageBuild, bool]] = build_image  # for the health check's probe image
    # Part of the health check, set by the session from the image supply: the host pulls from the
    # run's registry (None: it does not pull, or the probe could not be published: the cells say why).
    reach: Callable[[Host], DeliveryRecord | None] = lambda _host: None
    # Told the name of a host that is started again elsewhere, so what was delivered to it is forgotten.
    on_move: list[Callable[[str], None]] = field(default_factory=list)
    _drivers: dict[HostKind, HostKindDriver] = field(default_factory=dict)
    _hosts: dict[str, Host] = field(default_factory=dict)
    _broken: dict[str, str] = field(default_factory=dict)
    _moves: dict[str, list[str]] = field(default_factory=dict)
    _remembered: dict[str, HostRecord] = field(default_factory=dict)
    _remaining: dict[str, int] = field(default_factory=dict)
    _total: dict[str, int] = field(default_factory=dict)
    _started: dict[str, int] = field(default_factory=dict)

    def driver(self, kind: HostKind) -> HostKindDriver:
        if kind not in self._drivers:
            self._drivers[kind] = self.drivers[kind](self.matrix, self.run)
        return self._drivers[kind]

    def expect(self, host: str, cells: int = 1) -> None:
        """Count cells the run will ask of a host: after its last one it is stopped."""
        self._remaining[host] = self._remaining.get(host, 0) + cells
        self._total[host] = self._total.get(host, 0) + cells

    # -- records --------------------------------------------------------------------------------
    def record(self, name: str) -> HostRecord:
        """The host as the results show it: the running one's, else one seen in the result cache,
        else what the matrix asked for (with why it failed, if it did)."""
        if name in self._hosts:
            return self._hosts[name].record
        if name in self._remembered:
            return self._remembered[name]
        return planned_record(self.matrix.host(name), self._broken.get(name, ""))

    def remember(self, record: HostRecord, judged_at: str) -> None:
        """A host record from the result cache, for cells reused without starting the host: marked
        so, as its boot figures are of the run that judged the cell (at `judged_at`)."""
        note = f"not booted by this run: its cells were reused from the result cache (judged from {judged_at})"
        self._remembered.setdefault(record.name, replace(record, reused=note))

    # -- lifecycle ------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        """The running host, started (with the images it carries) on first use; on another
        hypervisor when the one it was placed on stops answering."""
        if name in self._broken:
            raise HostError(self._broken[name])
        while name not in self._hosts:
            try:
                self._start(name)
            except HypervisorLost as exc:
                self.lose(name, exc)
        return self._hosts[name]

    def _start(self, name: str) -> None:
        spec = self.matrix.host(name)
        try:
            self._bring_up(spec, lambda host: self._hosts.__setitem__(name, host))
        except HypervisorLost:
            raise
        except OSError as exc:
            self.fail(name, f"host {name}: {os_problem(exc)}")
            raise HostError(self._broken[name]) from None
        except (HostError, BuildError) as exc:
            self.fail(name, str(exc))
            raise HostError(str(exc)) from None
        self._keep_evidence(self._hosts[name])

    def _bring_up(self, spec: HostSpec, provisioned: Callable[[Host], None]) -> Host:
        """Provision, boot and check a host: facts, a trivial container, the way to the registry.
        `provisioned` learns of it as soon as it exists, so that it is stopped whatever fails next."""
        name = spec.name
        self.run.phase(name, "building", "host (or taking it from the cache)")
        host = self.driver(spec.kind).provision(spec, lambda why: self.run.phase(name, "waiting", why))
        provisioned(host)
        host.record.moved = "; ".join(self._moves.get(name, []))
        self.run.phase(name, "building", "images (or taking them from the cache)")
        probe, _ = self.build(PROBE_IMAGE, host.arch, self.matrix.mirror, BuildCache(self.run.cache_root, "images"))
        images = self.carry(host)
        self.run.phase(name, "booting")
        host.start([probe, *images], [PROBE_SCENARIO, *self.matrix.scenarios], self._plain_http(host))
        self.run.phase(name, "checking", f"facts and a trivial container (ready after {host.record.boot_seconds} s)")
        self._read_facts(host)
        self._health_check(host, probe)
        self._reaches_registry(host)
        return host

    def variant(self, spec: HostSpec) -> Host:
        """A host that is not the matrix's (a blame experiment's: a matrix host with one setting
        changed), started like the others; the caller stops it (stop_variant). HostError if it
        cannot be had; its record stays out of the run's hosts."""
        started: list[Host] = []
        try:
            return self._bring_up(spec, started.append)
        except (HostError, BuildError, OSError) as exc:
            for host in started:
                host.stop()
            raise HostError(f"variant host {spec.name}: {os_problem(exc) if isinstance(exc, OSError) else exc}") from None

    def stop_variant(self, host: Host) -> None:
        host.stop()

    def _plain_http(self, host: Host) -> list[str]:
        """The registries the host's engine pulls from over plain HTTP (host:port, as its guests
        reach them): the run's, and those of images given by reference with tls_verify: false."""
        found = [guest_registry(self.run.registry, host.guest_gateway())] if self.run.registry else []
        found += [guest_reference(i.reference, host.guest_gateway()).split("/")[0] for i in self.matrix.images if i.reference and not i.tls_verify]
        return found

    def _read_facts(self, host: Host) -> None:
        """The host's facts as its kind's parser types them; what the matrix left open (an engine
        host's release, engine, runtime) is taken from them."""
        facts = self.driver(host.spec.kind).parse_facts(host.read_facts())
        record = host.record
        record.facts = facts
        record.release = record.release or facts.os
        record.engine = record.engine or facts.engine
        record.runtime = record.runtime or facts.runtime

    def _health_check(self, host: Host, probe: ImageBuild) -> None:
        """A trivial container on the host's engine: if even that fails, the host is broken, not the images."""
        load = host.load_image(probe, host.cell_timeout)
        run = host.run_scenario(probe.image_id, PROBE_SCENARIO, host.cell_timeout) if load.exit_code == 0 else load
        if run.exit_code != 0:
            host.record.health = f"a trivial container failed (exit {run.exit_code}): {(run.stderr or run.stdout).strip()[-500:]}"
            raise HostError(f"host {host.name} failed its health check: {host.record.health}")
        host.record.health = "ok"
        # What a container sees of its confinement there: measured in one, not read from files.
        seen = {f"container_{k}": v for k, _, v in (line.partition("=") for line in run.stdout.splitlines()) if v or _}
        if seen:
            host.record.facts = replace(host.record.facts, raw={**host.record.facts.raw, **seen})

    def _reaches_registry(self, host: Host) -> None:
        """The guest's path to the run's registry works: a host that cannot pull is broken, and its
        cells are errors, not images that are "not portable"."""
        pulled = self.reach(host)
        if pulled is not None and not pulled.ok:
            tries = f" ({pulled.tries} tries)" if pulled.tries > 1 else ""
            host.record.health = f"its engine cannot pull from the run's registry{tries}: {pulled.output.strip()[-500:]}"
            raise HostError(f"host {host.name} failed its health check: {host.record.health}")

    def lose(self, name: str, exc: HypervisorLost) -> None:
        """The host's hypervisor stopped answering: it leaves the pool (for the whole run), and the
        host with it, so that the host starts again elsewhere (with its images delivered again)."""
        self.driver(self.matrix.host(name).kind)
        for driver in self._drivers.values():  # built and disk-image VMs share the hypervisors
            driver.lose_hypervisor(exc.hypervisor, str(exc))
        self._moves.setdefault(name, []).append(f"started again: {exc}")
        self.run.phase(name, "moving", f"off hypervisor {exc.hypervisor}: it stopped answering")
        if host := self._hosts.pop(name, None):
            self._stop(host)
        for listener in self.on_move:
            listener(name)

    def fail(self, name: str, reason: str) -> None:
        """The host failed (did not start, or died under a cell): torn down now, and its later
        cells are errors at once instead of each waiting for it."""
        self._broken[name] = reason
        if host := self._hosts.get(name):
            host.record.error = reason
            self._stop(host)

    def cell_started(self, name: str) -> tuple[int, int]:
        """(k, n): this is the host's k-th cell of n, for progress."""
        self._started[name] = self._started.get(name, 0) + 1
        return self._started[name], self._total.get(name, 0)

    def cell_rerun(self, name: str) -> None:
        """The cell in flight runs again (its host moved): it is not counted twice."""
        self._started[name] -= 1

    def last_cell(self, name: str) -> bool:
        """Whether the host's cell now finishing is its last of the run (and the host is up)."""
        return self._remaining.get(name, 1) <= 1 and name in self._hosts and name not in self._broken

    def cell_done(self, name: str) -> None:
        """Count a finished cell; after a host's last one, stop it to free its cores and memory."""
        self._remaining[name] = self._remaining.get(name, 1) - 1
        if self._remaining[name] <= 0 and name in self._hosts:
            self.run.phase(name, "done", "host stopped")
            self._stop(self._hosts[name])

    def stopped(self, name: str) -> bool:
        """Whether the host ran its last cell and was stopped (its record is then final)."""
        return name in self._hosts and self._remaining.get(name, 1) <= 0

    def _keep_evidence(self, host: Host) -> None:
        """Copy the host's evidence files into the reports directory, where the report links them."""
        for name, source in host.evidence().items():
            dest = self.run.reports / "hosts" / host.name / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
            if name == "console.log":
                host.record.console_log = str(dest.relative_to(self.run.reports))

    def _stop(self, host: Host) -> None:
        self._keep_evidence(host)
        host.stop()

    def close(self) -> None:
        """Stop every host, keep their evidence, and remove this process's working files."""
        for host in self._hosts.values():
            self._stop(host)
        for driver in self._drivers.values():
            driver.close()
        self._drivers.clear()
        # Only this process's part: under xdist other workers' hosts still live in the run's
        # directory, which the controller removes at the very end.
        for name in self._hosts:
            shutil.rmtree(self.run.workdir / name, ignore_errors=True)
        release(self.run.workdir)


def planned_record(spec: HostSpec, error: str = "") -> HostRecord:
    """A host's record before it runs: what the matrix asked for."""
    return HostRecord(spec.name, spec.release, spec.arch, spec.engine, spec.runtime, kind=spec.kind, settings=spec.settings(), error=error)
