"""The pytest plugin: a matrix file collects into one test item per host x image x scenario cell.

So -k, -x, --lf, markers, JUnit XML and pytest-xdist all work on cells. Its parts, in
harness/plugin/: the options and what they share (options.py), the collection and the cell item
(items.py: workers run cells and attach each CellResult to its report), and the controller's
recorder (recorder.py: only the plain process without xdist records results and renders the HTML).
This module holds the hooks that tie them together.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness.cells.cover import cover
from harness.config.model import Matrix
from harness.hosts.fleet import planned_record
from harness.plugin import options
from harness.plugin.items import CellItem, MatrixFile
from harness.plugin.options import COVER_KEY, MATRIX_KEY, RUN_ID_INPUT, SELECTED_KEY, SESSION_KEY
from harness.plugin.recorder import ResultsRecorder
from harness.results.model import ImageRecord
from harness.supportability import is_supported


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if not _is_controller(config):
        config.option.run_id = config.workerinput[RUN_ID_INPUT]
    elif config.option.run_id is None:
        config.option.run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    if _is_controller(config):
        config.pluginmanager.register(ResultsRecorder(config), "harness-results")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    return MatrixFile.from_parent(parent, path=file_path) if options.is_matrix(file_path) else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    done = options.finished_cells(config, config.stash[MATRIX_KEY]) if MATRIX_KEY in config.stash else {}
    if done:
        skipped = [i for i in items if isinstance(i, CellItem) and "/".join(i.cell) in done]
        if skipped:
            config.hook.pytest_deselected(items=skipped)
            items[:] = [i for i in items if i not in skipped]
    if config.option.cover and MATRIX_KEY in config.stash:
        _sample(config, config.stash[MATRIX_KEY], items)
    config.stash[SELECTED_KEY] = [i for i in items if isinstance(i, CellItem)]


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

