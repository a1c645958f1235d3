"""Resource limits on bullseye's podman (3.0.1), for real. Podman 3 refuses any limit when its own
process sits in the root cgroup ("could not find cgroup mount in /proc/self/cgroup"), where nothing
but PID 1 runs on a host with a service manager; the harness's init must start what it runs out of
the root cgroup too, or the bullseye column blames podman for the harness's own setup."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import BOOKWORM_IMAGE, project_copy, run_harness, write_matrix

pytestmark = [pytest.mark.vm, pytest.mark.slow]  # CI leaves it out for its time (cold): see the README

MATRIX = f"""
version: 1
retries: 0
hosts:
  - {{name: bullseye-amd64, release: bullseye, arch: amd64, engine: podman, runtime: crun}}
images:{BOOKWORM_IMAGE}
scenarios: [memory-limit]
"""


def test_a_memory_limit_holds_on_bullseyes_podman(tmp_path):
    directory = project_copy(tmp_path)
    write_matrix(directory, MATRIX)
    _, reports = run_harness(directory, f"bullseye-limits-{os.getpid()}", "--quiet", "--no-blame")
    cell = json.loads((reports / "results.json").read_text())["cells"]["bullseye-amd64/debian-bookworm/memory-limit"]
    # Read in the container: the limit its cgroup shows, then an allocation past it ended.
    assert cell["outcome"] == "pass", cell
    assert "memory.max: 134217728" in cell["stdout"] and "the limit held" in cell["stdout"], cell["stdout"]
