"""The emulated hosts of the default matrix that CI does not boot, for real: bullseye and bookworm
on arm64, bookworm and trixie on ppc64el (pseries, POWER9), bookworm on s390x (s390-ccw-virtio).
Left out of the default test run (marker slow_arch, see the README): cold, building their hosts
and images under emulation takes hours; warm, about half an hour."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import project_copy, run_harness, write_matrix

pytestmark = [pytest.mark.vm, pytest.mark.slow_arch]
RUN_ID = f"foreign-{os.getpid()}"

# The default matrix's recipes, so its cache serves both.
MATRIX = f"""
version: 1
retries: 0
defaults: {{vcpus: 1}}  # two at once on two cores
hosts:
  - {{name: bullseye-arm64, release: bullseye, arch: arm64, engine: podman, runtime: runc, cpu: cortex-a57}}
  - {{name: bookworm-arm64, release: bookworm, arch: arm64, engine: podman, runtime: crun, cpu: cortex-a57}}
  - {{name: bookworm-ppc64el, release: bookworm, arch: ppc64el, engine: podman, runtime: runc}}
  - {{name: trixie-ppc64el, release: trixie, arch: ppc64el, engine: podman, runtime: crun}}
  - {{name: bookworm-s390x, release: bookworm, arch: s390x, engine: podman, runtime: crun}}
images:
  # sid: one suite, so the fewest archive indexes to be in sync on these architectures' mirrors
  - {{name: debian-sid, release: sid, packages: [passwd]}}
scenarios:
  - useradd
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    directory = project_copy(tmp_path_factory.mktemp("foreign"))
    write_matrix(directory, MATRIX)
    _, reports = run_harness(directory, RUN_ID, "--workers", "auto", "--quiet")
    return json.loads((reports / "results.json").read_text())


@pytest.mark.parametrize(
    "host, machine",
    [("bullseye-arm64", "aarch64"), ("bookworm-arm64", "aarch64"), ("bookworm-ppc64el", "ppc64le"), ("trixie-ppc64el", "ppc64le"), ("bookworm-s390x", "s390x")],
)
def test_emulated_host_boots_and_runs_the_classic_case(results, host, machine):
    record = results["hosts"][host]
    assert not record["error"], record["error"]
    assert record["facts"]["machine"] == machine and record["facts"]["raw"]["os_codename"] == host.split("-")[0]
    assert record["accel"] == "qemu" and record["boot_seconds"]
    assert results["cells"][f"{host}/debian-sid/useradd"]["outcome"] == "pass"
