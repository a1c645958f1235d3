"""What the plugin's parts share: its command-line options, its stash keys, the names of the
properties a cell's records ride on from a worker to the controller, and the run's settings read
from the options (cache, hypervisor pool, registry, the results a --resume run keeps)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from harness.cache import default_root
from harness.config.model import HypervisorSpec, Matrix
from harness.results import store
from harness.results.model import CellResult, Outcome, RunResults
from harness.session import Parts, RunSession

HOST_PROPERTY = "harness_host"
DELIVERY_PROPERTY = "harness_delivery"
IMAGE_PROPERTY = "harness_image"
VERDICT_PROPERTY = "harness_verdict"
SESSION_KEY = pytest.StashKey[RunSession]()
MATRIX_KEY = pytest.StashKey[Matrix]()
# The run's registry, started by the controller and handed to xdist workers in their workerinput.
REGISTRY_KEY = pytest.StashKey[str]()
REGISTRY_INPUT = "harness_registry"
# The run's id, made by the controller and handed to each xdist worker: the workers do not get the
# controller's options as it set them in pytest_configure, and one made by each would be its own.
RUN_ID_INPUT = "harness_run_id"
# What hosts and images are made with (session.Parts); a plugin may set it in pytest_configure.
PARTS_KEY = pytest.StashKey[Parts]()
COVER_KEY = pytest.StashKey[str]()
COVER_PROPERTY = "harness_coverage"
PROGRESS_FILE = "progress.jsonl"
# The cell items this process runs, once collection has selected them.
SELECTED_KEY = pytest.StashKey[list]()


def add_options(parser: pytest.Parser) -> None:
    """The harness's options of `pytest` (and so of `harness run`)."""
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


def is_matrix(path: Path) -> bool:
    return path.suffix in (".yaml", ".yml") and path.name.startswith("matrix")


def cache_root(config: pytest.Config) -> Path:
    return Path(config.option.cache_dir) if config.option.cache_dir else default_root()


def pool(config: pytest.Config, matrix: Matrix) -> tuple[HypervisorSpec, ...]:
    return matrix.pool(config.option.hypervisor)


def registry_address(config: pytest.Config) -> str | None:
    """The run's registry: the controller's own, or what it handed this xdist worker."""
    if hasattr(config, "workerinput"):
        return config.workerinput.get(REGISTRY_INPUT)
    return config.stash.get(REGISTRY_KEY, None)


def resumed_results(config: pytest.Config, matrix: Matrix) -> RunResults | None:
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


def finished_cells(config: pytest.Config, matrix: Matrix) -> dict[str, CellResult]:
    """Cells a --resume run keeps: everything recorded except errors (those said nothing of the image)."""
    previous = resumed_results(config, matrix)
    return {k: c for k, c in previous.cells.items() if c.outcome != Outcome.ERROR} if previous else {}

