"""Blame on real VMs, each case built with a known answer: a scenario that only the default seccomp
profile breaks (personality(ADDR_NO_RANDOMIZE), which the profile does not allow), one that only the
default AppArmor profile breaks (mounting a tmpfs with CAP_SYS_ADMIN: the profile says `deny
mount`), useradd on the SELinux-enforcing host (the classic case), and a scenario that fails
everywhere."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import BOOKWORM_IMAGE, add_scenario, project_copy, run_harness, write_matrix

pytestmark = pytest.mark.vm

# The default matrix's recipes of these names, so the build cache serves them.
MATRIX = f"""
version: 1
retries: 0
hosts:
  - {{name: bookworm-amd64, release: bookworm, arch: amd64, engine: podman, runtime: crun}}
  - {{name: trixie-amd64-selinux, release: trixie, arch: amd64, engine: podman, runtime: crun, lsm: selinux}}
images:{BOOKWORM_IMAGE}scenarios:
  - useradd
  - no-aslr
  - mount-tmpfs
  - fails-everywhere
  - not-real-root
  - hosts-nosuid
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    directory = project_copy(tmp_path_factory.mktemp("blame"))
    add_scenario(directory / "scenarios", "no-aslr", "#!/bin/sh\nsetarch \"$(uname -m)\" -R true && echo 'ran without address space randomisation'\n",
                 "purpose: personality(ADDR_NO_RANDOMIZE), as debuggers and some runtimes do\ndimension: security\nneeds: [setarch]\n")
    add_scenario(directory / "scenarios", "mount-tmpfs", "#!/bin/sh\nmount -t tmpfs scratch /mnt && echo mounted\n",
                 "purpose: an image that mounts a tmpfs at start, given CAP_SYS_ADMIN\ndimension: security\noptions: {cap_add: [SYS_ADMIN]}\n")
    # An image whose entrypoint refuses the machine's real root: uid 0 must be mapped from another uid.
    add_scenario(directory / "scenarios", "not-real-root",
                 "#!/bin/sh\nset -- $(head -n1 /proc/self/uid_map)\n"
                 "if [ \"$2\" = 0 ]; then echo \"refusing to run as the machine's real root (uid_map: $*)\" >&2; exit 3; fi\n"
                 "echo \"uid 0 here is uid $2 outside\"\n")
    # A hardening check in an image: /etc/hosts must be mounted nosuid. Seen on bookworm (crun 1.8.1,
    # runc 1.1.5): runc bind-mounts it nosuid,nodev, crun without either.
    add_scenario(directory / "scenarios", "hosts-nosuid",
                 "#!/bin/sh\nline=$(grep ' /etc/hosts ' /proc/self/mountinfo)\n"
                 "case \"$line\" in *nosuid*) echo \"/etc/hosts is nosuid\";; *) echo \"/etc/hosts is not mounted nosuid: $line\" >&2; exit 1;; esac\n")
    add_scenario(directory / "scenarios", "fails-everywhere", "#!/bin/sh\necho 'broken on purpose' >&2\nexit 4\n")
    write_matrix(directory, MATRIX)
    _, reports = run_harness(directory, f"blame-{os.getpid()}", "--quiet")
    return json.loads((reports / "results.json").read_text()), reports


def verdict(data: dict, cell: str) -> dict:
    return next(v for v in data["verdicts"].values() if cell in v["cells"])


def test_a_failure_only_the_default_seccomp_profile_causes_is_blamed_on_seccomp(results):
    data, _ = results
    assert data["cells"]["bookworm-amd64/debian-bookworm/no-aslr"]["outcome"] == "fail"
    found = verdict(data, "bookworm-amd64/debian-bookworm/no-aslr")
    assert (found["layer"], found["summary"], found["confirmed"]) == ("seccomp", "seccomp: passes with seccomp=unconfined", True), found
    swapped = [e for e in found["experiments"] if e["swap"] == "seccomp=unconfined"]
    assert swapped and all("--security-opt" in e["command"] and "seccomp=unconfined" in e["command"] for e in swapped)
    # The host has both runtimes: the other one ran the cell, and failed the same way (runc applies
    # the same seccomp profile), not for want of a runtime.
    (runc,) = [e for e in found["experiments"] if e["swap"] == "runtime runc"]
    assert runc["command"][runc["command"].index("--runtime") + 1] == "runc" and runc["exit_code"] == found["experiments"][0]["exit_code"], runc


def test_a_mount_the_default_apparmor_profile_denies_is_blamed_on_the_lsm_with_its_denials(results):
    data, _ = results
    cell = data["cells"]["bookworm-amd64/debian-bookworm/mount-tmpfs"]
    assert cell["outcome"] == "fail" and "--cap-add" in cell["command"], cell
    found = verdict(data, "bookworm-amd64/debian-bookworm/mount-tmpfs")
    assert (found["layer"], found["summary"], found["confirmed"]) == ("LSM", "LSM: passes with apparmor=unconfined", True), found
    # The profile's `deny mount` is a quiet rule: AppArmor logs nothing, so the swap is the evidence.
    unchanged, swapped = found["experiments"][0], next(e for e in found["experiments"] if e["swap"] == "apparmor=unconfined")
    assert "cannot mount scratch" in unchanged["evidence"] and "LSM denials meanwhile" not in unchanged["evidence"], unchanged["evidence"]
    assert swapped["outcome"] == "pass" and "mounted" in swapped["evidence"]


def test_useradd_on_the_selinux_host_is_blamed_on_the_lsm_with_its_denials(results):
    data, _ = results
    found = verdict(data, "trixie-amd64-selinux/debian-bookworm/useradd")
    assert (found["layer"], found["summary"], found["confirmed"]) == ("LSM", "LSM: passes with label=disable", True), found
    unchanged = found["experiments"][0]
    assert unchanged["outcome"] == "fail" and "/etc/shadow" in unchanged["evidence"] and "avc:  denied" in unchanged["evidence"]


def test_a_failure_only_one_oci_runtime_has_is_blamed_on_the_runtime(results):
    """The same podman, host and image: only the runtime changes how /etc/hosts is mounted."""
    data, _ = results
    cell = data["cells"]["bookworm-amd64/debian-bookworm/hosts-nosuid"]
    assert cell["outcome"] == "fail" and cell["command"][cell["command"].index("--runtime") + 1] == "crun", cell
    found = verdict(data, "bookworm-amd64/debian-bookworm/hosts-nosuid")
    assert (found["layer"], found["summary"], found["confirmed"]) == ("runtime", "runtime: passes with runtime runc", True), found
    runc = [e for e in found["experiments"] if e["swap"] == "runtime runc"]
    assert runc and all(e["outcome"] == "pass" and "/etc/hosts is nosuid" in e["evidence"] for e in runc), runc
    assert "not mounted nosuid" in found["experiments"][0]["evidence"]


def test_a_failure_only_a_rootless_engine_avoids_is_blamed_on_rootless(results):
    """The rootless run's evidence is read from the guest: its container's uid 0 is the host's
    unprivileged user (1500), where every rootful swap still maps uid 0 to the machine's root."""
    data, _ = results
    found = verdict(data, "bookworm-amd64/debian-bookworm/not-real-root")
    assert (found["layer"], found["summary"], found["confirmed"]) == ("rootless", "rootless: passes with rootless", True), found
    rootless = [e for e in found["experiments"] if e["swap"] == "rootless"]
    assert rootless and all(e["outcome"] == "pass" and "uid 0 here is uid 1500 outside" in e["evidence"] for e in rootless), rootless
    assert rootless[0]["command"][:4] == ["runuser", "-u", "harness-rootless", "--"]
    others = [e for e in found["experiments"] if e["swap"] in ("seccomp=unconfined", "apparmor=unconfined", "runtime runc")]
    assert len(others) == 3 and all(e["outcome"] == "fail" and "real root" in e["evidence"] for e in others), others


def test_a_scenario_that_fails_everywhere_is_the_images_or_the_scenarios_and_blamed_once(results):
    data, reports = results
    found = verdict(data, "bookworm-amd64/debian-bookworm/fails-everywhere")
    assert found["layer"] == "the image or the scenario" and found["confirmed"] is None
    assert sorted(found["cells"]) == ["bookworm-amd64/debian-bookworm/fails-everywhere", "trixie-amd64-selinux/debian-bookworm/fails-everywhere"]
    html = (reports / "matrix.html").read_text()
    assert 'id="why-table"' in html and "why: LSM: passes with label=disable (confirmed)" in html


@pytest.mark.slow  # a VM of its own per call: CI leaves it out for its time (see the README)
def test_reproduce_runs_the_cell_and_one_experiment_by_hand(results):
    import subprocess
    import sys

    _, reports = results
    matrix = str(reports.parent / "matrix.yaml")
    cell = "trixie-amd64-selinux/debian-bookworm/useradd"
    plain = subprocess.run([sys.executable, "-m", "harness.cli", "reproduce", cell, "--matrix", matrix], capture_output=True, text=True)
    assert plain.returncode == 1 and "failure while writing changes to /etc/shadow" in plain.stdout and "exit 1: fail" in plain.stdout, plain.stdout + plain.stderr
    swapped = subprocess.run([sys.executable, "-m", "harness.cli", "reproduce", cell, "--matrix", matrix, "--swap", "label=disable"], capture_output=True, text=True)
    assert swapped.returncode == 0 and "--security-opt label=disable" in swapped.stdout and "exit 0: pass" in swapped.stdout, swapped.stdout + swapped.stderr


@pytest.mark.slow  # a VM of its own per call: CI leaves it out for its time (see the README)
def test_reproduce_shell_opens_the_host_with_the_image_there_and_tears_it_down(results):
    """What the lines print is read from the guest: its SELinux mode, the image in its engine's
    store, the directory a `cd` left; afterwards no domain of that reproduce run is left."""
    import re
    import subprocess
    import sys

    import libvirt

    _, reports = results
    lines = "getenforce\npodman images --noheading --no-trunc --format '{{.ID}}'\ncd /etc\npwd\nexit\n"
    shell = subprocess.run([sys.executable, "-m", "harness.cli", "reproduce", "trixie-amd64-selinux/debian-bookworm/useradd", "--matrix", str(reports.parent / "matrix.yaml"), "--shell"],
                           input=lines, capture_output=True, text=True)
    said = shell.stdout
    image = re.search(r"the image is there as (sha256:)?([0-9a-f]{64})", said)
    assert shell.returncode == 1 and image, said + shell.stderr
    assert "trixie-amd64-selinux:/# Enforcing\n" in said and image.group(2) in said.split("podman images", 1)[-1] and "trixie-amd64-selinux:/etc# " in said, said
    conn = libvirt.open("qemu:///system")
    assert not [d.name() for d in conn.listAllDomains() if "reproduce-" in d.name()], "a reproduce domain was left running"


def test_what_a_container_sees_of_its_confinement_is_measured_on_each_host(results):
    data, _ = results
    selinux = data["hosts"]["trixie-amd64-selinux"]["facts"]["raw"]
    assert "container_t" in selinux["container_lsm_label"] and selinux["container_seccomp"] == "2", selinux
    assert "container_manage_cgroup=" in selinux["selinux_container_booleans"]
    apparmor = data["hosts"]["bookworm-amd64"]["facts"]["raw"]
    assert apparmor["container_lsm_label"].startswith("containers-default") and apparmor["container_selinuxfs"] == "", apparmor


def test_how_the_default_seccomp_profile_answers_the_syscalls_that_broke_images_is_measured(results):
    """Measured here (2026-12-01): the podman profiles of bookworm and trixie allow all five (so
    glibc 2.34's clone3 works in their containers; docker's profiles once said EPERM for it, and
    such images broke)."""
    data, _ = results
    for host in ("bookworm-amd64", "trixie-amd64-selinux"):
        raw = data["hosts"][host]["facts"]["raw"]
        said = {k.removeprefix("container_syscall_"): v for k, v in raw.items() if k.startswith("container_syscall_")}
        assert said == {"clone3": "allowed", "close_range": "allowed", "openat2": "allowed", "faccessat2": "allowed", "statx": "allowed"}, (host, said)


def test_hosts_left_without_vcpus_get_their_share_of_the_cores(results):
    """Read from the guests: the matrix sets no vcpus, so each host has the cores divided by the
    hosts run at once (on 2 cores, 1 each, not the 2 a single host would take)."""
    import libvirt

    from harness.config.model import HypervisorSpec
    from harness.hosts.hypervisors import Hypervisor

    data, _ = results
    local = Hypervisor(HypervisorSpec("qemu:///system"), libvirt.open("qemu:///system"))
    expected = local.guest_vcpus(1536, None)
    assert expected == max(1, local.cpus // local.slots(1536, None))
    assert {name: host["facts"]["cpus"] for name, host in data["hosts"].items()} == {"bookworm-amd64": expected, "trixie-amd64-selinux": expected}
    if local.cpus == 2:
        assert expected == 1
    # What each guest kept busy, read from libvirt when it stopped (bench/matrix_time.py's utilisation).
    assert all((host["cpu_seconds"] or 0) > 5 for host in data["hosts"].values()), {n: h["cpu_seconds"] for n, h in data["hosts"].items()}
