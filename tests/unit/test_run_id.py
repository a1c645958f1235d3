"""Every process of a run with workers has the run's one id: the one in results.json, in its VMs'
names and metadata, and naming the run's directory, where a failure pattern is claimed so that
workers blame it once. Each xdist worker used to make an id of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Each process says which run id it has, when its session starts.
PROBE = """
def pytest_sessionstart(session):
    with open({ids!r}, "a") as f:
        f.write(session.config.option.run_id + "\\n")
"""


def test_the_workers_have_the_controllers_run_id(tmp_path, repo_root):
    from bench.scale import generate

    matrix = generate(tmp_path / "m", 2, 1, 2)
    ids = tmp_path / "ids"
    (tmp_path / "run_id_probe.py").write_text(PROBE.format(ids=str(ids)))
    reports = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(matrix), "--reports", str(reports), "--workers", "2", "--quiet",
         f"--cache-dir={tmp_path / 'cache'}", "-p", "bench.stub_provider", "-p", "run_id_probe"],
        capture_output=True, text=True, timeout=300, cwd=repo_root, env={**os.environ, "PYTHONPATH": f"{tmp_path}:{repo_root}"},
    )
    seen = ids.read_text().split()
    assert len(seen) == 3, proc.stdout[-2000:] + proc.stderr[-2000:]  # the controller and two workers
    assert set(seen) == {json.loads((reports / "results.json").read_text())["run_id"]}, seen
