"""A real VM host whose path to the run's registry is broken (its guests are told the registry is at
127.0.0.1, their own loopback): the host fails its health check, and its cells are the host's
errors, never images that are "not portable"."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import BOOKWORM_IMAGE, project_copy, run_harness, write_matrix

pytestmark = pytest.mark.vm

# The default matrix's bookworm-amd64 recipe, so the build cache serves it.
MATRIX = f"""
version: 1
retries: 0
hypervisors:
  - {{uri: "qemu:///system", harness_address: 127.0.0.1}}
hosts:
  - {{name: cut-off, release: bookworm, arch: amd64, engine: podman, runtime: crun}}
images:{BOOKWORM_IMAGE}scenarios:
  - useradd
"""


def test_a_guest_that_cannot_reach_the_registry_is_a_host_error(tmp_path):
    project_copy(tmp_path)
    write_matrix(tmp_path, MATRIX)
    proc, reports = run_harness(tmp_path, f"network-{os.getpid()}", "--quiet")
    data = json.loads((reports / "results.json").read_text())
    host = data["hosts"]["cut-off"]
    assert "cannot pull from the run's registry (3 tries)" in host["error"] and "127.0.0.1" in host["error"], host
    cell = data["cells"]["cut-off/debian-bookworm/useradd"]
    assert cell["outcome"] == "error" and "failed its health check" in cell["message"]
    pair = data["pairs"]["cut-off/debian-bookworm"]
    assert pair["klass"] == "error" and pair["status"] == "error"
    assert "cut-off/debian-bookworm" not in data["deliveries"]  # no image was blamed: none was tried
    assert proc.returncode == 1 and "1 error" in proc.stdout
