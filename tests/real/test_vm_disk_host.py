"""Your own hosts and images, for real, from a matrix in a directory of its own (no vms/, no
scenarios of the repository beside it): a host booted from a disk built the way distributions build
their cloud images (tests/cloud_image.py: GPT, an EFI partition with GRUB, systemd, cloud-init,
qemu-guest-agent, podman), next to a host the harness builds; an image from an OCI archive; and an
image behind a password-protected TLS registry. What is checked is read from the guests."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys

import pytest

from harness.cache import default_root
from tests.archives import harness_image, write_oci
from tests.cloud_image import cloud_image
from tests.conftest import add_scenario
from tests.real.test_vm_private_registry import PASSWORD, private  # noqa: F401 (the registry fixture)

pytestmark = [pytest.mark.vm, pytest.mark.slow]  # CI leaves it out for its time (cold): see the README

RUN_ID = f"disk-{os.getpid()}"


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def harness(directory, *args: str) -> subprocess.CompletedProcess:
    """`harness ...` run from the matrix's own directory, as its user would."""
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=directory, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    print(proc.stdout[-5000:], proc.stderr[-3000:])
    return proc


@pytest.fixture(scope="module")
def outside(private, tmp_path_factory):  # noqa: F811
    registry_dir, host, build, _ = private
    disk = cloud_image(default_root(), "bookworm", "amd64")
    before = sha256(disk)
    directory = tmp_path_factory.mktemp("elsewhere")
    config, layers = harness_image(build.archive)
    write_oci(directory / "app.oci.tar", {"amd64": (json.dumps(config).encode(), layers)})
    add_scenario(directory / "scenarios", "which-debian", "#!/bin/sh\necho \"debian $(cat /etc/debian_version)\"\n")
    (directory / "matrix.yaml").write_text(f"""
version: 1
retries: 0
registries:
  - {{host: "{host}", auth_file: {registry_dir / 'auth.json'}, ca_file: {registry_dir / 'tls' / 'ca.crt'}}}
hosts:
  - {{name: cloud-bookworm, image: {disk}, arch: amd64}}
  - {{name: built-bookworm, release: bookworm, arch: amd64, engine: podman, runtime: crun}}
  - {{name: blank-disk, image: blank.raw, arch: amd64, machine: {{boot_timeout: 20}}}}
images:
  - {{name: from-oci, oci-archive: app.oci.tar, release: bookworm}}
  - {{name: vendor-app, reference: "{host}/vendor/app:1", release: bookworm}}
scenarios: [which-debian, useradd]
""")
    # A disk with a partition table and nothing to boot: the firmware never gets past its boot manager.
    (directory / "blank.raw").write_bytes(b"\0" * 510 + b"\x55\xaa" + b"\0" * (1 << 20))
    proc = harness(directory, "run", "matrix.yaml", f"--run-id={RUN_ID}", "--quiet", "--no-blame")
    return proc, directory, json.loads((directory / "reports" / "results.json").read_text()), build, disk, before


def test_the_cloud_image_host_runs_every_cell_next_to_a_built_host(outside):
    proc, directory, data, build, _, _ = outside
    for host in ("cloud-bookworm", "built-bookworm"):
        for image in ("from-oci", "vendor-app"):
            for scenario in ("which-debian", "useradd"):
                cell = data["cells"][f"{host}/{image}/{scenario}"]
                assert cell["outcome"] == "pass", (cell, proc.stdout[-3000:])
        assert f"debian {build.debian_version}" in data["cells"][f"{host}/vendor-app/which-debian"]["stdout"]
    assert (directory / "reports" / "matrix.html").is_file() and "cloud-bookworm" in (directory / "reports" / "matrix.html").read_text()


def test_it_booted_through_uefi_with_the_seed_and_its_own_engine(outside):
    _, _, data, _, _, _ = outside
    host = data["hosts"]["cloud-bookworm"]
    raw = host["facts"]["raw"]
    assert host["kind"] == "disk" and host["error"] == "", host
    assert raw["firmware"] == "uefi" and raw["os_pretty_name"].startswith("Debian GNU/Linux 12"), raw
    assert raw["cloud_init_instance"] == f"{RUN_ID}-cloud-bookworm", raw  # cloud-init read the harness's seed
    assert host["engine"] == "podman" == raw["engine"] and host["runtime"] == "crun" == raw["runtime"], host
    assert host["release"] == "debian-12"  # from the guest's os-release: the matrix named none
    assert data["hosts"]["built-bookworm"]["facts"]["raw"]["firmware"] != "uefi"  # booted straight into its kernel


def test_the_disk_itself_is_never_written(outside):
    _, _, _, _, disk, before = outside
    assert sha256(disk) == before


def test_a_guest_that_never_answers_is_a_host_error_with_its_console(outside):
    _, directory, data, _, _, _ = outside
    host = data["hosts"]["blank-disk"]
    assert "did not become ready" in host["error"] and "last console lines" in host["error"], host["error"]
    assert {data["cells"][f"blank-disk/{i}/{s}"]["outcome"] for i in ("from-oci", "vendor-app") for s in ("which-debian", "useradd")} == {"error"}
    console = (directory / "reports" / host["console_log"]).read_text(errors="replace")
    assert "BdsDxe: failed to load Boot" in console, console[-2000:]  # OVMF's boot manager found nothing to boot


def test_no_secret_in_anything_the_run_wrote(outside):
    _, directory, _, _, _, _ = outside
    token = base64.b64encode(f"qe:{PASSWORD}".encode()).decode()
    for path in (directory / "reports").rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert PASSWORD.encode() not in text and token.encode() not in text, path


def test_bad_disks_and_settings_are_one_line_each(outside, tmp_path):
    _, directory, _, _, disk, _ = outside
    (tmp_path / "not-a-disk.qcow2").write_text("hello\n")
    (tmp_path / "matrix.yaml").write_text(
        "version: 1\nhosts:\n  - {name: c, image: not-a-disk.qcow2, arch: amd64}\nimages:\n  - {name: d, release: bookworm}\nscenarios: [useradd]\n")
    proc = harness(tmp_path, "validate", "matrix.yaml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "not-a-disk.qcow2 is not a disk image" in proc.stderr
    (tmp_path / "matrix.yaml").write_text(
        f"version: 1\nhosts:\n  - {{name: c, image: {disk}, arch: amd64, kernel: trixie}}\nimages:\n  - {{name: d, release: bookworm}}\nscenarios: [useradd]\n")
    proc = harness(tmp_path, "validate", "matrix.yaml")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "boots the kernel its disk has" in proc.stderr, proc.stderr
