"""Faults injected into a real run on real VMs; each time the run must finish, keep every other
cell's result, and leave no domain behind (after `harness cleanup` where libvirtd itself died)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest

from harness.config.model import HypervisorSpec
from tests.conftest import BOOKWORM_IMAGE, add_scenario, project_copy, write_matrix

pytestmark = pytest.mark.vm
RUN_ID = f"faults-{os.getpid()}"

# Three hosts of the default bookworm-amd64 recipe (so the build cache serves them): one whose kernel
# command line cannot boot (its root device does not exist: stage 1 gives up, panic=1 reboots,
# and a reboot ends the domain), one whose qemu is killed mid-cell, one whose libvirtd is killed mid-cell.
HOST = """
  - name: {name}
    release: bookworm
    arch: amd64
    engine: podman
    runtime: crun
"""
MATRIX = f"""
version: 1
retries: 0
hosts:{HOST.format(name="no-root") + "    kernel_cmdline: root=/dev/nonexistent" + HOST.format(name="qemu-killed") + HOST.format(name="libvirtd-killed")}
images:{BOOKWORM_IMAGE}scenarios:
  - useradd
  - sleeper
  - after
"""


def results(reports: Path) -> dict:
    try:
        return json.loads((reports / "results.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_for_cell(reports: Path, key: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 1800
    while key not in results(reports).get("cells", {}):
        assert proc.poll() is None, f"the run ended before {key}"
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(8)  # the next cell, sleeper, is running now


def libvirt_answers() -> bool:
    return subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0


def libvirtd_up() -> None:
    """Start libvirtd again the way ./setup-machine does (a killed one may linger as a zombie)."""
    if Path("/run/systemd/system").exists():
        subprocess.run(["systemctl", "restart", "libvirtd"], check=True)
    for _ in range(100):
        if libvirt_answers():
            return
        subprocess.run(["libvirtd", "-d"], capture_output=True)
        time.sleep(0.3)
    raise AssertionError("libvirtd does not answer again after the test")


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    directory = project_copy(tmp_path_factory.mktemp("faults"))
    add_scenario(directory / "scenarios", "sleeper", "#!/bin/sh\nsleep 600\n")
    add_scenario(directory / "scenarios", "after", "#!/bin/sh\necho never reached on a dead host\n")
    write_matrix(directory, MATRIX)
    reports = directory / "reports"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(directory / "matrix.yaml"), "--reports", str(reports), f"--run-id={RUN_ID}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_cell(reports, "qemu-killed/debian-bookworm/useradd", proc)
        pid = int(Path(f"/run/libvirt/qemu/harness-{RUN_ID}-qemu-killed.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        wait_for_cell(reports, "libvirtd-killed/debian-bookworm/useradd", proc)
        subprocess.run(["pkill", "-KILL", "-x", "libvirtd"], check=True)
        out, _ = proc.communicate(timeout=1800)
    finally:
        libvirtd_up()
        if proc.poll() is None:
            proc.kill()
    print(out[-6000:])
    cleanup = subprocess.run([sys.executable, "-m", "harness.cli", "cleanup"], capture_output=True, text=True)
    assert cleanup.returncode == 0, cleanup.stderr
    return out, reports, cleanup.stdout


def test_the_run_finishes_and_keeps_every_other_cell(faulty_run):
    out, reports, _ = faulty_run
    cells = results(reports)["cells"]
    assert len(cells) == 9, sorted(cells)
    assert cells["qemu-killed/debian-bookworm/useradd"]["outcome"] == "pass"
    assert cells["libvirtd-killed/debian-bookworm/useradd"]["outcome"] == "pass"
    for host in ("qemu-killed", "libvirtd-killed"):
        assert cells[f"{host}/debian-bookworm/sleeper"]["outcome"] == "error"
        assert cells[f"{host}/debian-bookworm/after"]["outcome"] == "error"
    assert results(reports)["finished_at"]


def test_a_kernel_command_line_that_cannot_boot_is_a_host_error_with_its_console(faulty_run):
    _, reports, _ = faulty_run
    data = results(reports)
    host = data["hosts"]["no-root"]
    assert "did not become ready" in host["error"] and "the domain stopped" in host["error"]  # fast, not a timeout
    assert "root device /dev/nonexistent did not appear" in (reports / host["console_log"]).read_text()
    assert {data["cells"][f"no-root/debian-bookworm/{s}"]["outcome"] for s in ("useradd", "sleeper", "after")} == {"error"}
    assert data["pairs"]["no-root/debian-bookworm"]["klass"] == "error"


def test_no_domain_of_the_run_is_left(faulty_run):
    _, _, cleaned = faulty_run
    conn = libvirt.open("qemu:///system")
    try:
        assert not [d.name() for d in conn.listAllDomains() if d.name().startswith(f"harness-{RUN_ID}-")]
    finally:
        conn.close()
    # With libvirtd killed, the run could not destroy its last domain itself: `harness cleanup` (run by
    # the fixture after libvirtd was back) destroyed it, unless libvirtd's restart already reaped it.
    assert cleaned.startswith(("destroyed", "removed", "nothing left over")), cleaned


def test_hosts_placed_after_libvirtd_was_restarted_get_a_new_connection(tmp_path):
    """The real libvirtd killed and started again under a pool: the next placement must not use the
    dead connection (a whole-matrix run placed its later hosts over it, and every call said "client
    socket is closed")."""
    from harness.hosts.hypervisors import HypervisorPool
    from harness.hosts.libvirt import connect

    pool = HypervisorPool((HypervisorSpec("qemu:///system"),), tmp_path / "slots", 1024, 1, connect)
    first = pool.place("h1", "x86_64")
    assert first.hypervisor.answers()
    first.release()
    try:
        subprocess.run(["pkill", "-KILL", "-x", "libvirtd"], check=True)
        time.sleep(1)
    finally:
        libvirtd_up()
    assert not first.hypervisor.answers(), "the old connection died with its libvirtd"
    second = pool.place("h2", "x86_64")
    assert second.hypervisor.answers() and second.hypervisor.conn.getLibVersion() > 0
    assert not (tmp_path / "slots" / f"{second.hypervisor.name}.lost").exists()
    second.release()
    pool.close()
