"""The pytest plugin: a matrix file collects into one test item per host x image x scenario cell.

So -k, -x, --lf, markers, JUnit XML and pytest-xdist all work on cells. Workers run cells and
attach each CellResult to its report; only the controller (the plain process without xdist)
records them (results/store.py's ResultsWriter: a journal line per cell, results.json rewritten
every few seconds) and renders the HTML as cells finish and at the end, as pytest-html does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import time
import warnings
import uuid
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness import __version__
from harness.cache import default_root
from harness.cells.blame import Blamer
from harness.cells.cover import cover
from harness.cells.siblings import with_siblings
from harness.cells.verdict import error_result
from harness.cleanup import cleanup
from harness.config.load import MatrixError, load_matrix
from harness.config.model import HostSpec, HypervisorSpec, Matrix
from harness.context import RunContext
from harness.hosts.accel import slowness
from harness.hosts.fleet import planned_record
from harness.hosts.hypervisors import HypervisorLost
from harness.hosts.libvirt import connect
from harness.hosts.provider import Host, HostError
from harness.progress import ProgressLog, ProgressPrinter
from harness.registry.server import RegistryError, RegistryServer
from harness.report.history import load_runs, since_last_good
from harness.report.junit import CELL_PROPERTY, annotate
from harness.report.render import render_report
from harness.results import history, store
from harness.results.model import CellResult, DeliveryRecord, HostRecord, ImageRecord, Outcome, PairResult, RunResults, Verdict, now
from harness.runs import claim
from harness.session import Parts, RunSession, run_registry
from harness.supply import SupplyError, delivery_problem
from harness.supportability import classify, is_supported

HOST_PROPERTY = "harness_host"
DELIVERY_PROPERTY = "harness_delivery"
IMAGE_PROPERTY = "harness_image"
VERDICT_PROPERTY = "harness_verdict"
SESSION_KEY = pytest.StashKey[RunSession]()
MATRIX_KEY = pytest.StashKey[Matrix]()
# The run's registry, started by the controller and handed to xdist workers in their workerinput.
REGISTRY_KEY = pytest.StashKey[str]()
REGISTRY_INPUT = "harness_registry"
# What hosts and images are made with (session.Parts); a plugin may set it in pytest_configure.
PARTS_KEY = pytest.StashKey[Parts]()
COVER_KEY = pytest.StashKey[str]()
COVER_PROPERTY = "harness_coverage"
PROGRESS_FILE = "progress.jsonl"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "container supportability matrix")
    group.addoption("--reports", default="reports", help="directory for results.json, matrix.html and evidence (default: reports)")
    group.addoption(
        "--hypervisor",
        action="append",
        default=None,
        help="libvirt URI of a hypervisor to place VM hosts on (repeatable; default: the matrix's hypervisors, else qemu:///system)",
    )
    group.addoption("--cache-dir", default=None, help="build cache for hosts and images (default: HARNESS_CACHE or /var/cache/container-matrix-harness)")
    group.addoption("--run-id", default=None, help="identifier of this run, recorded in every domain it starts")
    group.addoption("--harness-debug", action="store_true", help="show tracebacks of the harness's own failures")
    group.addoption("--image-stores", choices=["warm", "fresh", "off"], default="warm", help="VM hosts keep their engine's image store across runs: warm (default) boots with what earlier runs pulled, fresh with an empty store (every image pulled again, then kept), off with none")
    group.addoption("--reuse", action="store_true", help="take cells whose host, image, scenario and harness are unchanged from the result cache")
    group.addoption(
        "--progress",
        choices=["live", "quiet"],
        default=os.environ.get("HARNESS_PROGRESS", "live"),
        help="live: a line per host phase (building, booting, loading, scenario k of n) with an ETA; quiet: none, for CI logs",
    )
    group.addoption("--resume", action="store_true", help="keep the cells already in REPORTS/results.json and run only the others (and the errors)")
    group.addoption("--blame", action=argparse.BooleanOptionalAction, default=True, help="run each failing cell again with one layer swapped (seccomp, LSM, runtime) after its host's last cell, to say which broke (default: on)")
    group.addoption("--blame-budget", type=int, default=40, help="at most this many blame experiments (containers; a variant host's boot counts as 5) per process (default 40)")
    group.addoption("--cover", type=int, choices=[2, 3], default=None, help="run only a covering array of the cells: every pair (2) or triple (3) of the axes' values (release, arch, engine, runtime, cgroup, lsm, kernel, cpu, image, scenario) that the matrix has")
    group.addoption("--must", action="append", default=[], metavar="HOST/IMAGE", help="with --cover: always run every cell of these pairs (glob patterns; 'supported' for the pairs the policy supports)")
    group.addoption("--history", default=None, metavar="DIR", help="earlier runs' results.json files under DIR: for each pair that was good in the last of them and fails now, record what changed")
    group.addoption("--progress-fd", type=int, default=None, help="write live progress lines to this file descriptor (`harness run` gives it the terminal, which pytest captures)")


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def _interrupt(signum: int, _frame) -> None:
    """SIGTERM (CI cancelling, `kill`) unwinds like Ctrl-C, so every host is torn down and results kept."""
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    if config.option.run_id is None:
        config.option.run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    if _is_controller(config):
        config.pluginmanager.register(ResultsRecorder(config), "harness-results")


def _is_matrix(path: Path) -> bool:
    return path.suffix in (".yaml", ".yml") and path.name.startswith("matrix")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    return MatrixFile.from_parent(parent, path=file_path) if _is_matrix(file_path) else None


class MatrixFile(pytest.File):
    """matrix.yaml -> one collector per host -> one item per image x scenario cell on it.

    Grouping cells under their host gives node ids like matrix.yaml::HOST::IMAGE/SCENARIO, so
    pytest-xdist's --dist loadscope sends all cells of a host to one worker, which boots it once.
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
        session = _session(self.config, self.matrix)
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
            self._record(session, self.result)
            raise CellFailed(self.result)

    def runtest(self) -> None:
        result = self.result
        self._record(_session(self.config, self.matrix), result)
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


def _cache_root(config: pytest.Config) -> Path:
    return Path(config.option.cache_dir) if config.option.cache_dir else default_root()


def _pool(config: pytest.Config, matrix: Matrix) -> tuple[HypervisorSpec, ...]:
    return matrix.pool(config.option.hypervisor)


def _registry(config: pytest.Config) -> str | None:
    """The run's registry: the controller's own, or what it handed this xdist worker."""
    if hasattr(config, "workerinput"):
        return config.workerinput.get(REGISTRY_INPUT)
    return config.stash.get(REGISTRY_KEY, None)


def _session(config: pytest.Config, matrix: Matrix) -> RunSession:
    if SESSION_KEY not in config.stash:
        signal.signal(signal.SIGTERM, _interrupt)  # only once cells run: hosts need tearing down
        reports = Path(config.option.reports).resolve()
        run = RunContext(
            run_id=config.option.run_id,
            cache_root=_cache_root(config),
            reports=reports,
            hypervisors=_pool(config, matrix),
            registry=_registry(config),
            progress=ProgressLog(reports / PROGRESS_FILE),
            image_stores=config.option.image_stores,
        )
        blamer = Blamer(budget=config.option.blame_budget, shared=run.workdir / "blame") if config.option.blame else None
        session = RunSession(matrix, run, reuse=config.option.reuse, parts=config.stash.get(PARTS_KEY, Parts()), blamer=blamer)
        session.select([item.cell for item in config.stash.get(_SELECTED_KEY, [])])
        config.stash[SESSION_KEY] = session
    return config.stash[SESSION_KEY]


_SELECTED_KEY = pytest.StashKey[list]()


def _previous(config: pytest.Config, matrix: Matrix) -> RunResults | None:
    """With --resume, the results already in the reports directory; a file that cannot be read, or
    that another matrix wrote, ends the run at once with one line saying so (exit 2)."""
    path = Path(config.option.reports) / "results.json"
    if not config.option.resume or not path.exists():
        return None
    try:
        previous = store.load(path)
    except store.ResultsError as exc:
        pytest.exit(f"harness: cannot resume: {exc}", returncode=2)
    if Path(previous.matrix).resolve() != matrix.path.resolve():
        pytest.exit(f"harness: cannot resume: {path} is the results of {previous.matrix}, not of {matrix.path}", returncode=2)
    return previous


def _finished_cells(config: pytest.Config, matrix: Matrix) -> dict[str, CellResult]:
    """Cells a --resume run keeps: everything recorded except errors (those said nothing of the image)."""
    previous = _previous(config, matrix)
    return {k: c for k, c in previous.cells.items() if c.outcome != Outcome.ERROR} if previous else {}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    done = _finished_cells(config, config.stash[MATRIX_KEY]) if MATRIX_KEY in config.stash else {}
    if done:
        skipped = [i for i in items if isinstance(i, CellItem) and "/".join(i.cell) in done]
        if skipped:
            config.hook.pytest_deselected(items=skipped)
            items[:] = [i for i in items if i not in skipped]
    if config.option.cover and MATRIX_KEY in config.stash:
        _sample(config, config.stash[MATRIX_KEY], items)
    config.stash[_SELECTED_KEY] = [i for i in items if isinstance(i, CellItem)]


def _sample(config: pytest.Config, matrix: Matrix, items: list[pytest.Item]) -> None:
    """--cover N: keep a covering array of the selected cells (every pair, or triple, of the axes'
    values that the matrix has), plus every cell of the --must pairs; the others are deselected."""
    cells = [i.cell for i in items if isinstance(i, CellItem)]
    must = [p for p in config.option.must if p != "supported"]
    if "supported" in config.option.must:
        images = {i.name: ImageRecord(i.name, i.release) for i in matrix.images}
        must += [f"{h.name}/{i}" for h in matrix.hosts for i in images if is_supported(matrix.policy, planned_record(h), images[i])[0]]
    found = cover(matrix, cells, config.option.cover, tuple(must))
    left = [i for i in items if isinstance(i, CellItem) and i.cell not in found.chosen]
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = [i for i in items if not (isinstance(i, CellItem) and i.cell not in found.chosen)]
    config.stash[COVER_KEY] = f"covering array of strength {found.strength}: {found.summary(len(cells))}; the other cells were not run"


def pytest_sessionfinish(session: pytest.Session) -> None:
    if SESSION_KEY in session.config.stash:
        session.config.stash[SESSION_KEY].close()


class ResultsRecorder:
    """Controller-only plugin: records every cell as its report arrives and renders the report at the end."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.reports = Path(config.option.reports)
        self.results: RunResults | None = None
        self.recorded = 0  # cells recorded by this run
        self.expected = 0  # cells selected, for the live report's progress
        self.resumed = 0  # cells a --resume run kept from the one before (deselected, but on the page)
        self.started = time.monotonic()
        # matrix.html is rendered again as cells finish: at most every 5 s, and never more often
        # than ten times its own render time (a 100,000-cell page takes seconds).
        self.rendered_at, self.render_every = 0.0, 5.0
        self.kept: Path | None = None  # where the previous run's outputs went
        self.printer: ProgressPrinter | None = None
        self.registry: RegistryServer | None = None
        self.writer: store.ResultsWriter | None = None
        # Per host and image, its cells recorded so far (by cell key): a pair is classified again
        # from its own cells when one of them, its host, its image or its delivery changes.
        self.by_pair: dict[tuple[str, str], dict[str, CellResult]] = {}
        # A cell's properties accumulate on its item and ride on each of its reports (setup, call,
        # teardown): per node ID, how many were recorded already.
        self.properties_seen: dict[str, int] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self) -> None:
        # Before xdist's (trylast), which starts the workers: they need the registry's address.
        # Under pytest-xdist the controller collects nothing, so it reads the matrix itself.
        paths = [Path(a.split("::")[0]) for a in self.config.args]
        matrices = [p for p in paths if _is_matrix(p) and p.is_file()]
        if not matrices:
            return
        try:
            self.matrix = load_matrix(matrices[0])
        except MatrixError:
            return  # collection reports it
        self._clean_leftovers()
        self.results = RunResults(
            run_id=self.config.option.run_id,
            matrix=str(self.matrix.path),
            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            harness_version=__version__,
            images={
                i.name: ImageRecord(i.name, i.release, list(i.packages), base=i.base, reference=i.reference, source=i.source)
                for i in self.matrix.images
            },
        )
        for host in self.matrix.hosts:
            self.results.hosts[host.name] = planned_record(host)
        old = _previous(self.config, self.matrix)
        if old is None:
            self.kept = history.keep_previous(self.reports)
        if old is not None:
            self.results.hosts.update({k: v for k, v in old.hosts.items() if k in self.results.hosts})
            self.results.deliveries.update(old.deliveries)
            for image in old.images.values():
                if image.name in self.results.images:
                    self._merge_image(image)
            self.results.cells.update({k: c for k, c in old.cells.items() if c.outcome != Outcome.ERROR})
        self.resumed = len(self.results.cells)
        for key, cell in self.results.cells.items():
            self.by_pair.setdefault((cell.host, cell.image), {})[key] = cell
        self._classify(self.results.hosts, self.results.images)
        self.writer = store.ResultsWriter(self.reports / "results.json", self.results)
        self.writer.save()
        self._start_registry()
        self._start_progress()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        """Each xdist worker learns where the run's registry is (started before any worker)."""
        if REGISTRY_KEY in self.config.stash:
            node.workerinput[REGISTRY_INPUT] = self.config.stash[REGISTRY_KEY]

    def _start_registry(self) -> None:
        """The run's registry, started here so that every xdist worker (spawned after this) finds it;
        none for a run that only counts its cells (--collect-only)."""
        if self.config.option.collectonly:
            return
        self.registry = run_registry(self.matrix, _cache_root(self.config), _pool(self.config, self.matrix))
        if self.registry is None:
            return
        try:
            self.config.stash[REGISTRY_KEY] = self.registry.start()
        except RegistryError as exc:
            self.registry = None
            terminal = self.config.pluginmanager.get_plugin("terminalreporter")
            if terminal is not None:
                terminal.write_line(f"harness: {exc}: images cannot be delivered to VM hosts", red=True)

    def _clean_leftovers(self) -> None:
        """What earlier runs left behind (a killed harness): destroyed and removed now, and said so."""
        conns = []
        if self.matrix.vm_hosts():
            for hypervisor in _pool(self.config, self.matrix):
                try:
                    conns.append(connect(hypervisor.uri))
                except HostError:
                    pass  # its hosts go elsewhere, or their cells report that it does not answer
        cleaned = cleanup(conns, _cache_root(self.config), keep={self.config.option.run_id})
        for conn in conns:
            conn.close()
        # This process lives as long as the run: its claim keeps the run's domains safe from other
        # runs' cleanup even between one worker's last host and another's next.
        claim(_cache_root(self.config) / "runs" / self.config.option.run_id)
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if cleaned and terminal is not None:
            terminal.write_line(f"harness: {cleaned}")

    def _classify(self, hosts, images) -> dict[str, PairResult]:
        """The supportability class of these hosts' pairs with these images, from what is known so
        far; returns the pairs classified."""
        results, pairs = self.results, {}
        for host in hosts:
            for image in images:
                key = f"{host}/{image}"
                cells = list(self.by_pair.get((host, image), {}).values())
                pairs[key] = results.pairs[key] = classify(self.matrix.policy, results.hosts[host], results.images[image], cells, results.deliveries.get(key))
        return pairs

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.results is None:
            return
        results = self.results
        changed: dict[str, dict] = {"cells": {}, "hosts": {}, "deliveries": {}, "images": {}, "verdicts": {}}
        touched: set[tuple[str, str]] = set()  # (host, image) pairs to classify again; "" for all of an axis
        seen = self.properties_seen.get(report.nodeid, 0)
        self.properties_seen[report.nodeid] = len(report.user_properties)
        # Every cell of a host carries its host's, delivery's and image's records: only a record
        # that differs from the run's is a change.
        for name, value in report.user_properties[seen:]:
            if name == CELL_PROPERTY:
                cell = CellResult.from_json(json.loads(value))
                results.cells[cell.key] = changed["cells"][cell.key] = self.by_pair.setdefault((cell.host, cell.image), {})[cell.key] = cell
                touched.add((cell.host, cell.image))
                self.recorded += 1
            elif name == HOST_PROPERTY:
                host = HostRecord.from_json(json.loads(value))
                if results.hosts.get(host.name) != host:
                    results.hosts[host.name] = changed["hosts"][host.name] = host
                    touched.add((host.name, ""))
            elif name == DELIVERY_PROPERTY:
                delivery = DeliveryRecord.from_json(json.loads(value))
                key = f"{delivery.host}/{delivery.image}"
                if results.deliveries.get(key) != delivery:
                    results.deliveries[key] = changed["deliveries"][key] = delivery
                    touched.add((delivery.host, delivery.image))
            elif name == IMAGE_PROPERTY:
                if (image := self._merge_image(ImageRecord.from_json(json.loads(value)))) is not None:
                    changed["images"][image.name] = image
                    touched.add(("", image.name))
            elif name == COVER_PROPERTY:
                results.coverage = value
                self.writer.change(coverage=value)
            elif name == VERDICT_PROPERTY:
                verdict = Verdict.from_json(json.loads(value))
                if (earlier := results.verdicts.get(verdict.cells[0])) is not None:  # the same pattern, from another worker
                    verdict = replace(verdict, cells=[*earlier.cells, *(c for c in verdict.cells if c not in earlier.cells)])
                results.verdicts[verdict.cells[0]] = changed["verdicts"][verdict.cells[0]] = verdict
        if not any(changed.values()):
            return
        pairs: dict[str, PairResult] = {}
        for host, image in touched:
            pairs |= self._classify([host] if host else list(results.hosts), [image] if image else list(results.images))
        self.writer.change(pairs=pairs, **{k: v for k, v in changed.items() if v})
        self._render_live()

    def _render_live(self) -> None:
        if self.results is None or time.monotonic() - self.rendered_at < self.render_every:
            return
        started = time.monotonic()
        done, total = len(self.results.cells), max(self.resumed + self.expected, len(self.results.cells))
        progress = f"{done} of {total} cells"
        if 0 < self.recorded and done < total:
            left = (time.monotonic() - self.started) / self.recorded * (total - done)
            progress += f", about {int(left // 60)} min {int(left % 60)} s left"
        try:
            render_report(self.results, self.reports, progress)
        except Exception as exc:  # noqa: BLE001 - the live page is a view: its failure must not end the run
            warnings.warn(f"the live matrix.html could not be rendered, so it is not updated until the run ends: {type(exc).__name__}: {exc}", stacklevel=1)
            self.render_every = float("inf")
            return
        self.rendered_at = time.monotonic()
        self.render_every = max(5.0, 10 * (self.rendered_at - started))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        """Under xdist the controller collects nothing: each worker says what it collected."""
        if len(ids) > self.expected:  # each worker collects the same cells: the page once
            self.expected = len(ids)
            self._render_first()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.expected = len([i for i in session.items if isinstance(i, CellItem)])
        self._render_first()

    def _render_first(self) -> None:
        """The page from the moment the cells are known (a cold run builds for a long while before
        its first cell ends), each selected cell not yet run shown as such; the first cell's
        result follows at once."""
        self._render_live()
        self.rendered_at = 0.0

    def _merge_image(self, image: ImageRecord) -> ImageRecord | None:
        """Workers each know the builds they used; the run's record has them all. Returns it, or
        None when it held all this already."""
        known = self.results.images.get(image.name)
        if known is None:
            self.results.images[image.name] = image
            return image
        merged = replace(known, builds=known.builds | image.builds, reference=image.reference or known.reference,
                         index_digest=image.index_digest or known.index_digest)
        if merged == known:
            return None
        self.results.images[image.name] = merged
        return merged

    def _start_progress(self) -> None:
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if self.config.option.progress != "live" or terminal is None:
            return
        write = lambda line: terminal.write_line(line, cyan=True)  # noqa: E731
        if (fd := self.config.option.progress_fd) is not None:
            # pytest captures fd 1 while a cell runs, so `harness run` keeps the real terminal for us.
            stream = os.fdopen(fd, "w", buffering=1, closefd=False)
            write = lambda line: stream.write(line + "\n")  # noqa: E731
        self.printer = ProgressPrinter(self.reports / PROGRESS_FILE, write)
        self.printer.start()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        if self.printer is not None:
            self.printer.stop()
        if self.registry is not None:
            self.registry.stop()  # left running while another run claims it; the last one out stops it
        shutil.rmtree(_cache_root(self.config) / "runs" / self.config.option.run_id, ignore_errors=True)
        if self.results is None:
            return
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if not self.recorded and not self.config.option.resume:
            self.writer.discard_journal()
            if self.kept is not None:
                history.put_back(self.reports, self.kept)
            else:
                (self.reports / "results.json").unlink(missing_ok=True)
            if terminal is not None:
                terminal.write_sep("-", f"no cell ran: {self.reports} is left as it was")
            return
        self.results.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.results.verdicts = {key: with_siblings(self.matrix, self.results, v) for key, v in self.results.verdicts.items()}
        if self.config.option.history:
            self.results.history = since_last_good(load_runs(Path(self.config.option.history)), self.results)
        self.writer.save()
        if xmlpath := self.config.option.xmlpath:  # junitxml has written it (this hook runs last)
            annotate(Path(xmlpath), self.results.verdicts)
        html = render_report(self.results, self.reports)
        if terminal is not None:
            kept = f" (the previous run's: {self.kept})" if self.kept else ""
            terminal.write_sep("-", f"matrix report: {html}{kept}")
