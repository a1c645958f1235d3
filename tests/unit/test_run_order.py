"""Hosts start slowest first in a run with workers, whatever number of cells each has selected: xdist's
loadscope would hand out the hosts with the most cells first (its default reorder), so a resumed or
-k-filtered run put an emulated host with few cells left at the end, a long tail."""

from __future__ import annotations

import json
import os
import subprocess
import sys

MATRIX = """version: 1
retries: 0
hosts:
  - {name: fast-1, release: bookworm, arch: amd64, engine: podman}
  - {name: fast-2, release: bookworm, arch: amd64, engine: podman}
  - {name: slow, release: bookworm, arch: s390x, engine: podman}
images:
  - {name: img, release: bookworm}
scenarios: [alpha, beta, gamma]
"""


# Stub hosts, the fast ones a second slow to provision: a worker busy with the slow host cannot be
# overtaken by the other one running through both fast hosts' cells before it says it started.
PLUGIN = """
import time

import pytest

from harness.config.model import HostKind
from harness.plugin.options import PARTS_KEY
from harness.session import Parts
from tests.stub_host import StubKind, stub_build


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    StubKind.before = staticmethod(lambda name: time.sleep(1) if name.startswith("fast") else None)
    config.stash[PARTS_KEY] = Parts(drivers={HostKind.VM: StubKind}, build_image=stub_build)
"""


def test_the_slow_host_with_fewest_cells_left_still_starts_first(tmp_path, repo_root):
    from tests.conftest import add_scenario

    (tmp_path / "order_stubs.py").write_text(PLUGIN)
    for name in ("alpha", "beta", "gamma"):
        add_scenario(tmp_path / "scenarios", name, "#!/bin/sh\nexit 0\n")
    (tmp_path / "vms").symlink_to(repo_root / "vms")
    (tmp_path / "matrix.yaml").write_text(MATRIX)
    reports = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(tmp_path / "matrix.yaml"), "--reports", str(reports), "--workers", "2",
         f"--cache-dir={tmp_path / 'cache'}", "-p", "order_stubs", "-k", "not (slow and (beta or gamma))"],
        capture_output=True, text=True, timeout=300, cwd=repo_root, env={**os.environ, "PYTHONPATH": f"{tmp_path}:{repo_root}"},
    )
    assert "7 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    started: list[str] = []
    for line in (reports / "progress.jsonl").read_text().splitlines():
        host = json.loads(line)["host"]
        if host not in started:
            started.append(host)
    assert started.index("slow") < 2 and started[2] == "fast-2", started
