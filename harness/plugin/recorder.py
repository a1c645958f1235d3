"""The controller's recorder: every cell's records as its reports arrive, results.json kept current
(results/store.py's ResultsWriter: a journal line per cell, the file rewritten every few seconds),
matrix.html rendered as cells finish and at the end, as pytest-html does. Also what only the
controller does once per run: clean earlier runs' leftovers, start the registry, print progress.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import warnings
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness import __version__
from harness.cells.siblings import with_siblings
from harness.cleanup import cleanup
from harness.config.load import MatrixError, load_matrix
from harness.hosts.fleet import planned_record
from harness.hosts.libvirt import connect
from harness.hosts.provider import HostError
from harness.plugin import options
from harness.plugin.items import CellItem
from harness.plugin.options import (
    COVER_PROPERTY, DELIVERY_PROPERTY, HOST_PROPERTY, IMAGE_PROPERTY, PROGRESS_FILE, REGISTRY_INPUT, REGISTRY_KEY, RUN_ID_INPUT,
    VERDICT_PROPERTY,
)
from harness.progress import ProgressPrinter
from harness.registry.server import RegistryError, RegistryServer
from harness.report.history import load_runs, since_last_good
from harness.report.junit import CELL_PROPERTY, annotate
from harness.report.render import render_report
from harness.results import history, store
from harness.results.model import CellResult, DeliveryRecord, HostRecord, ImageRecord, Outcome, PairResult, RunResults, Verdict
from harness.runs import claim
from harness.session import run_registry
from harness.supportability import classify


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
        self.workers: list[int] = []  # the xdist workers' pids, which a SIGTERM is passed on to

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self) -> None:
        # Before xdist's (trylast), which starts the workers: they need the registry's address.
        # Under pytest-xdist the controller collects nothing, so it reads the matrix itself.
        paths = [Path(a.split("::")[0]) for a in self.config.args]
        matrices = [p for p in paths if options.is_matrix(p) and p.is_file()]
        if not matrices:
            return
        try:
            self.matrix = load_matrix(matrices[0])
        except MatrixError:
            return  # collection reports it
        signal.signal(signal.SIGTERM, self._terminate)
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
        old = options.resumed_results(self.config, self.matrix)
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

    def _terminate(self, signum: int, _frame) -> None:
        """SIGTERM (CI cancelling a job, `kill`) stops the run as Ctrl-C does: every host torn down,
        the results kept. Without workers this process unwinds at once. With them, each worker is
        told and unwinds its own cells and hosts however long that takes, and xdist ends the run
        once they are done: had this process ended first, each worker would have been killed 15 s
        later (execnet), in the middle of stopping its VMs, and left them running."""
        dsession = self.config.pluginmanager.get_plugin("dsession")
        if dsession is None or not self.workers:
            raise KeyboardInterrupt(f"signal {signum}")
        dsession.shouldstop = f"interrupted by signal {signum}"  # no more hosts handed out, no worker replaced
        for pid in self.workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass  # already ended

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_newgateway(self, gateway) -> None:
        """A worker's pid, asked as xdist's own terminal report asks its platform, before it runs."""
        self.workers.append(gateway.remote_exec("import os; channel.send(os.getpid())").receive(30))

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        """Each xdist worker learns the run's id and where its registry is (started before any worker)."""
        node.workerinput[RUN_ID_INPUT] = self.config.option.run_id
        if REGISTRY_KEY in self.config.stash:
            node.workerinput[REGISTRY_INPUT] = self.config.stash[REGISTRY_KEY]

    def _start_registry(self) -> None:
        """The run's registry, started here so that every xdist worker (spawned after this) finds it;
        none for a run that only counts its cells (--collect-only)."""
        if self.config.option.collectonly:
            return
        self.registry = run_registry(self.matrix, options.cache_root(self.config), options.pool(self.config, self.matrix))
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
            for hypervisor in options.pool(self.config, self.matrix):
                try:
                    conns.append(connect(hypervisor.uri))
                except HostError:
                    pass  # its hosts go elsewhere, or their cells report that it does not answer
        cleaned = cleanup(conns, options.cache_root(self.config), keep={self.config.option.run_id})
        for conn in conns:
            conn.close()
        # This process lives as long as the run: its claim keeps the run's domains safe from other
        # runs' cleanup even between one worker's last host and another's next.
        claim(options.cache_root(self.config) / "runs" / self.config.option.run_id)
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
        shutil.rmtree(options.cache_root(self.config) / "runs" / self.config.option.run_id, ignore_errors=True)
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

