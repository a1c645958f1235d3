"""The matrix as pytest's collection: a matrix file, a collector per host, an item per cell.

Grouping cells under their host gives node ids like matrix.yaml::HOST::IMAGE/SCENARIO, so
pytest-xdist's --dist loadscope sends all cells of a host to one worker, which boots it once. An
item's records ride to the controller on its user_properties (options.*_PROPERTY).
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from harness.cells.blame import Blamer
from harness.cells.verdict import error_result
from harness.config.load import MatrixError, load_matrix
from harness.config.model import HostSpec, Matrix
from harness.context import RunContext
from harness.hosts.accel import slowness
from harness.hosts.hypervisors import HypervisorLost
from harness.hosts.provider import Host, HostError
from harness.plugin import options
from harness.plugin.options import (
    COVER_KEY, COVER_PROPERTY, DELIVERY_PROPERTY, HOST_PROPERTY, IMAGE_PROPERTY, MATRIX_KEY, PARTS_KEY, PROGRESS_FILE,
    SELECTED_KEY, SESSION_KEY, VERDICT_PROPERTY,
)
from harness.progress import ProgressLog
from harness.report.junit import CELL_PROPERTY
from harness.results.model import CellResult, DeliveryRecord, Outcome, now
from harness.session import Parts, RunSession
from harness.supply import SupplyError, delivery_problem


class MatrixFile(pytest.File):
    """matrix.yaml -> one collector per host -> one item per image x scenario cell on it.

    Hosts are collected slowest first (emulated s390x and ppc64el, then arm64...; matrix order
    among equals), and loadscope hands them out in that order, so a run has no long tail.
    """

    def collect(self):
        matrix = load_matrix(self.path)
        if MATRIX_KEY in self.config.stash and self.config.stash[MATRIX_KEY].path != matrix.path:
            raise MatrixError([f"{self.path}: one matrix per run ({self.config.stash[MATRIX_KEY].path} was collected first)"])
        self.config.stash[MATRIX_KEY] = matrix
        for host in sorted(matrix.hosts, key=_slowest_first):
            collector = HostCollector.from_parent(self, name=host.name)
            collector.extra_keyword_matches.update({host.arch, host.release, host.engine, str(host.kind)} - {""})
            yield collector

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, MatrixError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)


def _slowest_first(host: HostSpec) -> float:
    return -slowness(host.qemu_arch) if host.kind.is_vm else 0.0


class HostCollector(pytest.Collector):
    def collect(self):
        matrix = self.config.stash[MATRIX_KEY]
        for image in matrix.images:
            for scenario in matrix.scenarios:
                item = CellItem.from_parent(self, name=f"{image.name}/{scenario.name}")
                item.cell = (self.name, image.name, scenario.name)
                item.extra_keyword_matches.update({image.name, scenario.name})
                yield item


class CellFailed(Exception):
    def __init__(self, result: CellResult):
        super().__init__(result.message)
        self.result = result


class CellItem(pytest.Item):
    """One host x image x scenario cell. Setup asks the fleet for the host and the supply for the
    image, once, and hands both to the cell runner; the call reports the cell's final result.

    So in pytest's terms (and JUnit's): the host's, the engine's or the harness's trouble is an
    *error* (raised in setup), the image's failure a *failure*, not applicable a *skip*, a known
    issue a *skip* naming its bug, and a flaky cell a pass whose failed attempts are printed (JUnit's
    system-out) and named in a property."""

    cell: tuple[str, str, str]
    result: CellResult | None = None
    host: Host | None = None
    delivery: DeliveryRecord | None = None

    @property
    def matrix(self) -> Matrix:
        return self.config.stash[MATRIX_KEY]

    def _record(self, session: RunSession, result: CellResult) -> None:
        host, image, _ = self.cell
        host_record, delivery = session.records(host, image)
        self.user_properties.append((CELL_PROPERTY, json.dumps(asdict(result))))
        self.user_properties.append((HOST_PROPERTY, json.dumps(asdict(host_record))))
        if delivery is not None:
            self.user_properties.append((DELIVERY_PROPERTY, json.dumps(asdict(delivery))))
        if image in session.supply.records:
            self.user_properties.append((IMAGE_PROPERTY, json.dumps(asdict(session.supply.records[image]))))
        if COVER_KEY in self.config.stash:
            self.user_properties.append((COVER_PROPERTY, self.config.stash[COVER_KEY]))

    def setup(self) -> None:
        session = session_for(self.config, self.matrix)
        started_at, start = now(), time.monotonic()
        try:
            self.settings = session.settings(*self.cell)
            self.result = session.reused(*self.cell, self.settings)
            if self.result is None:
                self._prepare(session)
                # Keyed again now that the image is built: its manifest digest is part of the key.
                self.settings = session.settings(*self.cell)
                self.result = self._run(session)
        except CellFailed:
            raise
        except Exception as exc:  # a bug of the harness's own: the cell's error, recorded as the harness's
            why = f"harness error: {type(exc).__name__}: {exc} (the harness's own, not the image's, host's or engine's; harness run --debug shows the traceback)"
            self.result = error_result(*self.cell, why, started_at, time.monotonic() - start)
            self._record(session, self.result)
            raise
        if self.result.outcome.infrastructure:
            self._record(session, self.result)
            raise CellFailed(self.result)

    def _prepare(self, session: RunSession) -> None:
        """The host up and the image in its engine, or the cell's error (the host's or the supply's)."""
        host_name, image, scenario = self.cell
        started_at, start = now(), time.monotonic()
        while True:
            try:
                session.supply.buildable(self.matrix.host(host_name), image)
                self.host = session.fleet.host(host_name)
                self.delivery = session.supply.deliver(self.host, image)
                problem = "" if self.delivery.ok else delivery_problem(self.delivery, host_name)
                break
            except HypervisorLost as exc:  # while delivering: the host starts again elsewhere
                session.fleet.lose(host_name, exc)
            except HostError as exc:
                session.fleet.fail(host_name, str(exc))
                problem = str(exc)
                break
            except SupplyError as exc:
                problem = str(exc)
                break
        if problem:
            self.result = error_result(host_name, image, scenario, problem, started_at, time.monotonic() - start)
            if self.delivery is not None and self.delivery.not_portable:
                # Keyed now that the image the host was offered is built.
                session.runner.not_portable(self.result, self.host.record, self.delivery, session.settings(*self.cell))
            self._record(session, self.result)
            raise CellFailed(self.result)

    def runtest(self) -> None:
        result = self.result
        self._record(session_for(self.config, self.matrix), result)
        if result.outcome == Outcome.NOT_APPLICABLE:
            pytest.skip(result.message)
        if result.outcome == Outcome.KNOWN_ISSUE:
            pytest.skip(f"known issue {result.bug}: {result.message}")
        if result.outcome == Outcome.FLAKY:
            self.user_properties.append(("flaky", result.message))
            for number, attempt in enumerate(result.attempts, 1):
                print(f"attempt {number}: {attempt.outcome}, exit {attempt.exit_code}, {attempt.duration} s")
                print(f"--- stdout ---\n{attempt.stdout}--- stderr ---\n{attempt.stderr}")
        if not result.outcome.passed:
            raise CellFailed(result)

    def _run(self, session: RunSession) -> CellResult:
        host_name, image, scenario_name = self.cell
        scenario = self.matrix.scenario(scenario_name)
        started_at, start = now(), time.monotonic()
        while True:
            step, steps = session.fleet.cell_started(host_name)
            session.run.phase(host_name, "scenario", f"{image}/{scenario_name}", step, steps)
            try:
                result = session.runner.run(self.host, self.delivery, scenario, self.settings)
                session.ran(self.host, self.delivery, scenario, result)
                return result
            except HypervisorLost as exc:  # the cell runs again, on the host started elsewhere
                session.fleet.lose(host_name, exc)
                session.fleet.cell_rerun(host_name)
                self._prepare(session)
            except HostError as exc:
                # The host died under the cell (a guest panic, qemu killed, libvirtd gone).
                session.fleet.fail(host_name, str(exc))
                return error_result(host_name, image, scenario_name, str(exc), started_at, time.monotonic() - start)

    def teardown(self) -> None:
        if SESSION_KEY in self.config.stash:
            session = self.config.stash[SESSION_KEY]
            for verdict in session.cell_done(self.cell[0]):
                self.user_properties.append((VERDICT_PROPERTY, json.dumps(asdict(verdict))))
            if self.result is not None and session.fleet.stopped(self.cell[0]):  # its last cell: the record as it ended
                self.user_properties.append((HOST_PROPERTY, json.dumps(asdict(session.fleet.record(self.cell[0])))))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CellFailed):
            r = excinfo.value.result
            lines = [f"{r.outcome.upper()}: {r.message}"]
            if r.command:
                lines.append("command: " + " ".join(r.command))
            for stream in ("stdout", "stderr"):
                text = getattr(r, stream).strip()
                if text:
                    lines.append(f"--- {stream} (last lines) ---")
                    lines.extend(text.splitlines()[-20:])
            return "\n".join(lines)
        if not self.config.option.harness_debug:
            exc = excinfo.value
            return f"harness error in cell {'/'.join(self.cell)}: {type(exc).__name__}: {exc} (harness run --debug shows the traceback)"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"cell {'/'.join(self.cell)}"


def _interrupt(signum: int, _frame) -> None:
    """SIGTERM (CI cancelling, `kill`) unwinds like Ctrl-C, so every host is torn down and results kept."""
    raise KeyboardInterrupt(f"signal {signum}")


def session_for(config: pytest.Config, matrix: Matrix) -> RunSession:
    """This process's run session, made at its first cell (a worker's, or the plain process's)."""
    if SESSION_KEY not in config.stash:
        signal.signal(signal.SIGTERM, _interrupt)  # only once cells run: hosts need tearing down
        reports = Path(config.option.reports).resolve()
        run = RunContext(
            run_id=config.option.run_id,
            cache_root=options.cache_root(config),
            reports=reports,
            hypervisors=options.pool(config, matrix),
            registry=options.registry_address(config),
            progress=ProgressLog(reports / PROGRESS_FILE),
            image_stores=config.option.image_stores,
        )
        blamer = Blamer(budget=config.option.blame_budget, shared=run.workdir / "blame") if config.option.blame else None
        session = RunSession(matrix, run, reuse=config.option.reuse, parts=config.stash.get(PARTS_KEY, Parts()), blamer=blamer)
        session.select([item.cell for item in config.stash.get(SELECTED_KEY, [])])
        config.stash[SESSION_KEY] = session
    return config.stash[SESSION_KEY]

