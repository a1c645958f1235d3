"""Hosts spread over two hypervisors for real: this machine's libvirtd and a second libvirtd reached
over qemu+ssh on loopback (tests/real/loopback-node: its own mount namespace, so it shares no
files, domains or storage with the first). The second one gets its boot files as storage volumes,
its guest pulls from the harness's registry, and its console log comes back through libvirt."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import libvirt
import pytest

from tests.conftest import BOOKWORM_IMAGE, free_port, project_copy, run_harness, write_matrix

pytestmark = [pytest.mark.vm, pytest.mark.slow]  # left out of CI for time: run by hand, see README "Tests"
NODE_SCRIPT = Path(__file__).parent / "loopback-node"
# Same host recipes as the default matrix's, so the build cache serves both. "gone" does not answer:
# its hosts go elsewhere.
MATRIX = """
version: 1
hypervisors:
  - {{uri: "qemu:///system", slots: 1}}
  - {{uri: "{node}", name: node, slots: 1}}
  - {{uri: "{closed}", name: gone}}
hosts:
  - {{name: bookworm-amd64, release: bookworm, arch: amd64, engine: podman, runtime: crun}}
  - {{name: bookworm-amd64-cgroup1, release: bookworm, arch: amd64, engine: podman, runtime: runc, cgroup: v1}}
images:{image}
scenarios: [useradd]
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    directory = tmp_path_factory.mktemp("node")
    uri = subprocess.run([str(NODE_SCRIPT), "start", str(directory), str(free_port())], capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield uri
    finally:
        conn = libvirt.open(uri)  # whatever a failed run left there goes with the node
        for domain in conn.listAllDomains():
            domain.destroy()
        conn.close()
        subprocess.run([str(NODE_SCRIPT), "stop", str(directory)], check=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory, node):
    directory = tmp_path_factory.mktemp("pool")
    project_copy(directory)
    closed = f"qemu+ssh://root@127.0.0.1:{free_port()}/system?no_verify=1"
    write_matrix(directory, MATRIX.format(node=node, closed=closed, image=BOOKWORM_IMAGE))
    return run_harness(directory, f"pool-{os.getpid()}", "--workers", "2")


def test_each_host_ran_on_its_own_hypervisor_and_passed(run):
    proc, reports = run
    assert proc.returncode == 0 and "2 passed" in proc.stdout
    hosts = json.loads((reports / "results.json").read_text())["hosts"]
    assert sorted(h["hypervisor"] for h in hosts.values()) == ["local", "node"]
    for host in hosts.values():
        assert host["health"] == "ok" and host["boot_seconds"] > 0
        console = (reports / host["console_log"]).read_text()
        assert "harness-init: guest agent starting" in console, host["name"]
    page = (reports / "matrix.html").read_text()
    assert " on node)" in page and " on local)" in page


def test_the_node_kept_only_its_cached_volumes_and_no_domain(run, node):
    conn = libvirt.open(node)
    try:
        assert [d.name() for d in conn.listAllDomains()] == []
        pool = conn.storagePoolLookupByName("container-matrix-harness")
        volumes = sorted(v.name() for v in pool.listAllVolumes(0))
        assert volumes and all(v.startswith("cache-") for v in volumes), volumes
        root = pool.storageVolLookupByName(next(v for v in volumes if v.endswith("-root")))
        _type, capacity, allocation = root.info()
    finally:
        conn.close()
    # Uploaded sparse: the node stores the root disk's data, not its apparent 6 GiB.
    assert allocation < capacity / 4


# The node is listed first, so the host goes there; it crashes once the host's second cell has begun.
LOSS_MATRIX = """
version: 1
retries: 0
hypervisors:
  - {{uri: "{node}", name: node, slots: 1}}
  - {{uri: "qemu:///system", slots: 1}}
hosts:
  - {{name: bookworm-amd64, release: bookworm, arch: amd64, engine: podman, runtime: crun}}
images:{image}
scenarios: [useradd, threads, locale]
"""


def _node_at_second_cell(action: str, progress: Path, directory: Path, finished: threading.Event) -> None:
    """Do `action` to the node (loopback-node's: crash, restart-libvirtd) once the host's second cell began."""
    while not finished.wait(0.5):
        events = [json.loads(line) for line in progress.read_text().splitlines()] if progress.exists() else []
        if any(e["phase"] == "scenario" and e["step"] >= 2 for e in events):
            subprocess.run([str(NODE_SCRIPT), action, str(directory)], check=True)
            return


def test_a_host_whose_hypervisor_crashes_moves_and_its_cells_still_run(tmp_path):
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    uri = subprocess.run([str(NODE_SCRIPT), "start", str(node_dir), str(free_port())], capture_output=True, text=True, check=True).stdout.strip()
    project_copy(tmp_path)
    write_matrix(tmp_path, LOSS_MATRIX.format(node=uri, image=BOOKWORM_IMAGE))
    finished = threading.Event()
    crasher = threading.Thread(target=_node_at_second_cell, args=("crash", tmp_path / "reports" / "progress.jsonl", node_dir, finished))
    crasher.start()
    try:
        proc, reports = run_harness(tmp_path, f"loss-{os.getpid()}")
    finally:
        finished.set()
        crasher.join()
        subprocess.run([str(NODE_SCRIPT), "crash", str(node_dir)], check=False)
    assert proc.returncode == 0 and "3 passed" in proc.stdout
    host = json.loads((reports / "results.json").read_text())["hosts"]["bookworm-amd64"]
    assert host["hypervisor"] == "local" and host["health"] == "ok"
    assert "hypervisor node stopped answering" in host["moved"]
    assert "moved there: its first hypervisor was lost" in (reports / "matrix.html").read_text()
    conn = libvirt.open("qemu:///system")
    try:
        assert not [d.name() for d in conn.listAllDomains() if f"loss-{os.getpid()}" in d.name()]
    finally:
        conn.close()


RESTART_MATRIX = """
version: 1
retries: 0
hypervisors:
  - {{uri: "{node}", name: node, slots: 1}}
hosts:
  - {{name: bookworm-amd64, release: bookworm, arch: amd64, engine: podman, runtime: crun}}
images:{image}
scenarios: [useradd, threads, locale]
"""


def test_a_host_whose_libvirtd_restarts_starts_again_there_and_its_cells_still_run(tmp_path):
    """The only hypervisor's libvirtd is killed and started again under a cell (a crash, or an
    upgrade's restart): the run's connection dies, a new one answers, so the host starts again on the
    same hypervisor, in place of its old domain, which QEMU kept running under the new libvirtd."""
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    uri = subprocess.run([str(NODE_SCRIPT), "start", str(node_dir), str(free_port())], capture_output=True, text=True, check=True).stdout.strip()
    project_copy(tmp_path)
    write_matrix(tmp_path, RESTART_MATRIX.format(node=uri, image=BOOKWORM_IMAGE))
    finished = threading.Event()
    restarter = threading.Thread(target=_node_at_second_cell, args=("restart-libvirtd", tmp_path / "reports" / "progress.jsonl", node_dir, finished))
    restarter.start()
    try:
        proc, reports = run_harness(tmp_path, f"restart-{os.getpid()}")
        conn = libvirt.open(uri)
        try:
            left = [d.name() for d in conn.listAllDomains() if d.isActive()]
        finally:
            conn.close()
    finally:
        finished.set()
        restarter.join()
        subprocess.run([str(NODE_SCRIPT), "crash", str(node_dir)], check=False)
    data = json.loads((reports / "results.json").read_text())
    assert proc.returncode == 0 and "3 passed" in proc.stdout, {k: (c["outcome"], c["message"][:300]) for k, c in data["cells"].items()}
    host = data["hosts"]["bookworm-amd64"]
    assert host["hypervisor"] == "node" and host["health"] == "ok" and "hypervisor node stopped answering" in host["moved"], host
    assert left == [], left
