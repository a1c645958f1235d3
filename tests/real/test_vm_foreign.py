"""The slowest emulated architectures, booted for real: ppc64el (pseries, POWER9) and s390x
(s390-ccw-virtio). Left out of the default test run (marker slow_arch, see the README):
cold, building their hosts and images under emulation takes about an hour."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import BOOKWORM_IMAGE, project_copy, run_harness, write_matrix

pytestmark = [pytest.mark.vm, pytest.mark.slow_arch]
RUN_ID = f"foreign-{os.getpid()}"

# The default matrix's recipes, so its cache serves both.
MATRIX = f"""
version: 1
retries: 0
defaults: {{vcpus: 1}}  # both at once on two cores
hosts:
  - {{name: trixie-ppc64el, release: trixie, arch: ppc64el, engine: podman, runtime: crun}}
  - {{name: trixie-s390x, release: trixie, arch: s390x, engine: podman, runtime: crun}}
images:{BOOKWORM_IMAGE}scenarios:
  - useradd
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    directory = project_copy(tmp_path_factory.mktemp("foreign"))
    write_matrix(directory, MATRIX)
    _, reports = run_harness(directory, RUN_ID, "--workers", "auto", "--quiet")
    return json.loads((reports / "results.json").read_text())


@pytest.mark.parametrize("host, machine", [("trixie-ppc64el", "ppc64le"), ("trixie-s390x", "s390x")])
def test_emulated_host_boots_and_runs_the_classic_case(results, host, machine):
    record = results["hosts"][host]
    assert not record["error"], record["error"]
    assert record["facts"]["machine"] == machine and record["facts"]["os_codename"] == "trixie"
    assert record["accel"] == "qemu" and record["boot_seconds"]
    assert results["cells"][f"{host}/debian-bookworm/useradd"]["outcome"] == "pass"
