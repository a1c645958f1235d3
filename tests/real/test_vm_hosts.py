"""Hosts that differ in one setting each, booted for real: docker.io's dockerd, cgroup v1, another
release's kernel under bookworm's user space, SELinux enforcing, no LSM on an older CPU model, and
an emulated arm64. Their facts are read from the running guests, so each setting is seen to have
taken effect. `--workers auto` runs two hosts at once on two cores (one vCPU each)."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import BOOKWORM_IMAGE, project_copy, run_harness, write_matrix

pytestmark = [pytest.mark.vm, pytest.mark.slow]  # left out of CI for time: run by hand, see README "Tests"
RUN_ID = f"hosts-{os.getpid()}"

# The same recipes as the default matrix's hosts of these names, so the build cache serves both.
MATRIX = f"""
version: 1
retries: 0
defaults: {{vcpus: 1}}  # two guests at once on two cores, as --workers auto would choose
registry_port: 8009  # not the default: every host, docker's too, pulls from wherever the run's registry is
hosts:
  - {{name: bookworm-amd64-docker, release: bookworm, arch: amd64, engine: docker, runtime: runc}}
  - {{name: bookworm-amd64-cgroup1, release: bookworm, arch: amd64, engine: podman, runtime: runc, cgroup: v1}}
  - {{name: bookworm-amd64-trixie-kernel, release: bookworm, kernel: trixie, arch: amd64, engine: podman, runtime: crun}}
  - {{name: trixie-amd64-selinux, release: trixie, arch: amd64, engine: podman, runtime: crun, lsm: selinux}}
  - {{name: bookworm-amd64-nolsm, release: bookworm, arch: amd64, engine: podman, runtime: crun, lsm: none, cpu: Nehalem}}
  - {{name: trixie-arm64, release: trixie, arch: arm64, engine: podman, runtime: crun, cpu: cortex-a57}}
images:{BOOKWORM_IMAGE}scenarios:
  - useradd
  - lsm-view
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    directory = project_copy(tmp_path_factory.mktemp("hosts"))
    write_matrix(directory, MATRIX)
    _, reports = run_harness(directory, RUN_ID, "--workers", "auto", "--quiet")
    return json.loads((reports / "results.json").read_text()), reports


def test_every_host_boots_and_runs_the_classic_case(results):
    data, reports = results
    for name, host in data["hosts"].items():
        assert not host["error"], f"{name}: {host['error']}"
        assert host["boot_seconds"] and (reports / host["console_log"]).exists()
        if name != "trixie-amd64-selinux":
            assert data["cells"][f"{name}/debian-bookworm/useradd"]["outcome"] == "pass", name


def test_selinux_host_boots_labelled_and_enforcing_and_confines_containers(results):
    data, _ = results
    host = data["hosts"]["trixie-amd64-selinux"]
    assert host["facts"]["raw"]["selinux_enforce"] == "1" and host["facts"]["raw"]["selinux"] == "enforcing"
    lsm_view = data["cells"]["trixie-amd64-selinux/debian-bookworm/lsm-view"]
    assert lsm_view["outcome"] == "pass" and "container_t" in lsm_view["stdout"]
    # The classic case gets a verdict on its own merits, never an error of the harness: it fails
    # here, useradd cannot write /etc/shadow under the confined container_t.
    useradd = data["cells"]["trixie-amd64-selinux/debian-bookworm/useradd"]
    assert useradd["outcome"] == "fail" and "/etc/shadow" in useradd["stdout"] + useradd["stderr"], useradd


def test_docker_host_runs_dockerd_as_shipped(results):
    facts = results[0]["hosts"]["bookworm-amd64-docker"]["facts"]
    assert facts["engine"] == "docker" and facts["engine_version"].startswith("20.10")
    assert facts["runtime"] == "runc" and "apparmor" in facts["raw"]["security_options"]
    cell = results[0]["cells"]["bookworm-amd64-docker/debian-bookworm/useradd"]
    assert cell["command"][0] == "docker"
    delivery = results[0]["deliveries"]["bookworm-amd64-docker/debian-bookworm"]
    assert delivery["ok"] and delivery["reference"].startswith("10.0.2.2:8009/harness/"), delivery


def test_cgroup_v1_host_has_the_legacy_hierarchy(results):
    assert results[0]["hosts"]["bookworm-amd64-cgroup1"]["facts"]["cgroup"] == "v1"


def test_mixed_host_boots_trixies_kernel_under_bookworms_user_space(results):
    host = results[0]["hosts"]["bookworm-amd64-trixie-kernel"]
    assert host["facts"]["raw"]["os_codename"] == "bookworm" and host["facts"]["kernel"].startswith("6.12.")
    assert host["settings"]["kernel"] == "trixie"


def test_lsm_and_cpu_model_settings_take_effect(results):
    hosts = results[0]["hosts"]
    nolsm = hosts["bookworm-amd64-nolsm"]["facts"]["raw"]
    assert nolsm["apparmor"] != "Y" and hosts["bookworm-amd64-cgroup1"]["facts"]["raw"]["apparmor"] == "Y"
    # Read from the guest's /proc/cpuinfo, not from what the harness asked libvirt for: QEMU's
    # Nehalem model names itself "Intel Core i7 9xx (Nehalem Class Core i7)", and has no AVX.
    assert "Nehalem" in nolsm["cpu_model"], nolsm["cpu_model"]
    assert "avx" not in nolsm["cpu_flags_notable"].split() and "sse4_2" in nolsm["cpu_flags_notable"].split()


def test_arm64_host_is_emulated_with_its_cpu_model(results):
    host = results[0]["hosts"]["trixie-arm64"]
    # The guest's /proc/cpuinfo gives the part number: 0xd07 is the Cortex-A57.
    assert host["facts"]["machine"] == "aarch64" and host["facts"]["raw"]["cpu_model"] == "0xd07"
    assert host["facts"]["raw"]["os_codename"] == "trixie" and host["facts"]["page_size"] == 4096 and host["facts"]["cgroup"] == "v2"
