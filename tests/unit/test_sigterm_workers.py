"""SIGTERM to `harness run` with workers (CI cancelling a job, `kill`) tears down every host the
workers started, as Ctrl-C does, and keeps the cells already recorded. The controller used to die at
once and take its workers with it: their VMs were left running until the next run's cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from harness.results import store

# Stub hosts that mark their start and stop in files, stop slowly, and a scenario that runs for a minute.
PLUGIN = """
import pathlib
import time

import pytest

from harness.config.model import HostKind
from harness.plugin.options import PARTS_KEY
from harness.session import Parts
from tests.stub_host import StubHost, StubKind, stub_build

MARKS = pathlib.Path(__file__).parent / "marks"


class MarkingHost(StubHost):
    def start(self, *args):
        super().start(*args)
        (MARKS / f"{self.name}.started").touch()

    def stop(self):
        # As long as a VM's store is kept: longer than the 15 s a worker lives on once its
        # controller is gone (execnet's SIGINT to itself after 5 s, os._exit 10 s later).
        time.sleep(16)
        super().stop()
        (MARKS / f"{self.name}.stopped").touch()


class MarkingKind(StubKind):
    def provision(self, spec, waiting):
        return MarkingHost(spec, {"slow": lambda scenario: time.sleep(60) or 0})


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.stash[PARTS_KEY] = Parts(drivers={HostKind.VM: MarkingKind}, build_image=stub_build)
"""

MATRIX = """version: 1
retries: 0
hosts:
  - {name: one, release: bookworm, arch: amd64, engine: podman}
  - {name: two, release: bookworm, arch: amd64, engine: podman}
images:
  - {name: img, release: bookworm}
scenarios: [quick, slow]
"""


def test_sigterm_to_a_run_with_workers_stops_every_host_they_started(tmp_path, repo_root):
    from tests.conftest import add_scenario

    for name in ("quick", "slow"):
        add_scenario(tmp_path / "scenarios", name, "#!/bin/sh\nexit 0\n")
    (tmp_path / "vms").symlink_to(repo_root / "vms")
    (tmp_path / "matrix.yaml").write_text(MATRIX)
    (tmp_path / "marking_stubs.py").write_text(PLUGIN)
    marks = tmp_path / "marks"
    marks.mkdir()
    reports = tmp_path / "reports"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(tmp_path / "matrix.yaml"), "--reports", str(reports), "--workers", "2",
         f"--cache-dir={tmp_path / 'cache'}", "-p", "marking_stubs", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=repo_root, start_new_session=True,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}:{repo_root}"},
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(marks.glob("*.started"))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() is not None else "no host started"
            time.sleep(0.1)
        time.sleep(2)  # both slow cells are running
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0 and "Traceback" not in out, out[-3000:]
    assert sorted(m.name for m in marks.glob("*.stopped")) == ["one.stopped", "two.stopped"], out[-3000:]
    cells = store.load(reports / "results.json").to_json()["cells"]
    assert {k: c["outcome"] for k, c in cells.items() if k.endswith("/quick")} == {"one/img/quick": "pass", "two/img/quick": "pass"}, out[-3000:]
