"""Disk-image hosts CI leaves out (marker `slow`): the cloud-image-like disk built for arm64 and
booted under emulation through AAVMF, and an amd64 disk without cloud-init (only the guest agent)
given `cgroup: v1`, which the harness sets through the disk's own boot loader (update-grub in the
guest) and a reboot. Facts read from the guests."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.cache import default_root
from tests.cloud_image import cloud_image
from tests.conftest import BOOKWORM_IMAGE

pytestmark = [pytest.mark.vm, pytest.mark.slow]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("slow-disks")
    arm64, amd64 = cloud_image(default_root(), "bookworm", "arm64"), cloud_image(default_root(), "bookworm", "amd64", cloud_init=False)
    (directory / "matrix.yaml").write_text(f"""
version: 1
retries: 0
hosts:
  - {{name: cloud-arm64, image: {arm64}, arch: arm64}}
  - {{name: cloud-cgroup1, image: {amd64}, arch: amd64, cgroup: v1}}
  - {{name: bookworm-arm64, release: bookworm, arch: arm64, engine: podman, runtime: crun}}
images:{BOOKWORM_IMAGE}scenarios: [useradd, threads]
""")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "matrix.yaml", f"--run-id=slowdisk-{os.getpid()}", "--quiet", "--no-blame"],
                          cwd=directory, capture_output=True, text=True)
    print(proc.stdout[-5000:], proc.stderr[-3000:])
    return proc, json.loads((directory / "reports" / "results.json").read_text())


def test_an_arm64_cloud_image_boots_through_aavmf_and_runs_its_cells_next_to_a_built_arm64_host(run):
    proc, data = run
    assert data["hosts"]["bookworm-arm64"]["facts"]["raw"]["firmware"] == "other"  # straight into its kernel
    assert {data["cells"][f"bookworm-arm64/debian-bookworm/{s}"]["outcome"] for s in ("useradd", "threads")} == {"pass"}
    host = data["hosts"]["cloud-arm64"]
    assert host["error"] == "" and host["facts"]["raw"]["firmware"] == "uefi" and host["facts"]["raw"]["machine"] == "aarch64", host
    for scenario in ("useradd", "threads"):
        assert data["cells"][f"cloud-arm64/debian-bookworm/{scenario}"]["outcome"] == "pass", proc.stdout[-3000:]


def test_cgroup_v1_is_set_through_the_boot_loader_of_a_disk_without_cloud_init(run):
    _, data = run
    host = data["hosts"]["cloud-cgroup1"]
    raw = host["facts"]["raw"]
    assert host["error"] == "" and raw["cgroup"] == "v1" and "systemd.unified_cgroup_hierarchy=0" in raw["cmdline"], host
    assert host["settings"]["cgroup"] == "v1" and raw["cloud_init_instance"] == ""  # no cloud-init read the seed: the agent was there
    assert data["cells"]["cloud-cgroup1/debian-bookworm/useradd"]["outcome"] == "pass"


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """The cloud-image-like disk built for ppc64el (a PReP partition with GRUB for SLOF) and for
    s390x (an IPL record written by zipl), each booted under emulation through its firmware."""
    directory = tmp_path_factory.mktemp("foreign-disks")
    ppc, s390 = cloud_image(default_root(), "bookworm", "ppc64el"), cloud_image(default_root(), "bookworm", "s390x")
    (directory / "matrix.yaml").write_text(f"""
version: 1
retries: 0
hosts:
  - {{name: cloud-ppc64el, image: {ppc}, arch: ppc64el}}
  - {{name: cloud-s390x, image: {s390}, arch: s390x}}
images:
  - {{name: debian-bookworm, release: bookworm, packages: [passwd], arches: [ppc64el]}}
  # This mirror's bookworm-security lists no s390x: the release as first published.
  - {{name: debian-bookworm-ga, release: bookworm, packages: [passwd], updates: false, arches: [s390x]}}
scenarios: [useradd, threads]
""")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "matrix.yaml", f"--run-id=foreigndisk-{os.getpid()}", "--quiet", "--no-blame"],
                          cwd=directory, capture_output=True, text=True)
    print(proc.stdout[-5000:], proc.stderr[-3000:])
    return proc, json.loads((directory / "reports" / "results.json").read_text())


@pytest.mark.parametrize("host, firmware, image", [("cloud-ppc64el", "openfirmware", "debian-bookworm"), ("cloud-s390x", "other", "debian-bookworm-ga")])
def test_ppc64el_and_s390x_cloud_images_boot_through_their_own_loader_and_run_cells(foreign, host, firmware, image):
    proc, data = foreign
    record = data["hosts"][host]
    assert record["error"] == "", record["error"]
    raw = record["facts"]["raw"]
    # The disk's own boot loader (GRUB from the PReP partition; zipl's boot map) gave the kernel
    # the root the disk was built with: the harness did not hand the firmware a kernel.
    assert "root=UUID=6a4b0c52-1d2e-4f3a-9b8c-0d1e2f3a4b5c" in raw["cmdline"] and raw["firmware"] == firmware, raw
    assert raw["cloud_init_instance"], raw  # cloud-init read the harness's NoCloud seed
    for scenario in ("useradd", "threads"):
        assert data["cells"][f"{host}/{image}/{scenario}"]["outcome"] == "pass", proc.stdout[-3000:]
