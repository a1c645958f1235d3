"""The hypervisor pool: where hosts are placed, how many at once, where guests find the registry,
and what cleanup removes from a remote hypervisor's storage."""

from __future__ import annotations

import shutil
import threading
import time

import libvirt
import pytest

from harness.cleanup import cleanup
from harness.config.load import MatrixError, load_matrix
from harness.config.model import HypervisorSpec
from harness.hosts.files import POOL_NAME, harness_pool
from harness.hosts.hypervisors import Hypervisor, HypervisorPool, needs_open_registry
from harness.hosts.provider import HostError
from tests.conftest import write_matrix


class FakeNode:
    """What the pool reads from a libvirt connection: capabilities and node info."""

    def __init__(self, native: str, guests: tuple[str, ...], cpus: int = 4, memory_mib: int = 16384, kvm: bool = False):
        self.native, self.guests, self.cpus, self.memory_mib, self.kvm = native, guests, cpus, memory_mib, kvm

    def getCapabilities(self) -> str:
        arches = "".join(
            f"<guest><arch name='{g}'><emulator>/usr/bin/qemu-system-{g}</emulator><domain type='qemu'/>"
            f"{'<domain type=' + repr('kvm') + '/>' if self.kvm and g == self.native else ''}</arch></guest>"
            for g in self.guests
        )
        return f"<capabilities><host><cpu><arch>{self.native}</arch></cpu></host>{arches}</capabilities>"

    def getInfo(self) -> list:
        self.getLibVersion()  # raises on a dead connection, as libvirt does
        return [self.native, self.memory_mib, self.cpus, 2000, 1, 1, self.cpus, 1]

    alive = True  # False: the connection died (its libvirtd was killed or restarted)

    def isAlive(self) -> int:
        return int(self.alive)

    def getLibVersion(self) -> int:
        if not self.alive:
            raise libvirt.libvirtError("internal error: client socket is closed")
        return 9000000

    def close(self) -> None:
        pass


def pool_of(tmp_path, nodes: dict[str, FakeNode | None], slots: dict[str, int] | None = None) -> HypervisorPool:
    """A pool over fake nodes (None: one that does not answer), hosts of 1536 MiB and 2 vCPUs."""
    specs = tuple(HypervisorSpec(f"qemu+ssh://{name}/system", slots=(slots or {}).get(name)) for name in nodes)

    def connect(uri: str):
        node = nodes[uri.split("//")[1].split("/")[0]]
        if node is None:
            raise HostError(f"cannot connect to libvirt at {uri}: no route to host")
        return node

    return HypervisorPool(specs, tmp_path / "slots", 1536, 2, connect, reconnect_within=0)


def test_a_host_goes_where_its_architecture_runs_natively_first(tmp_path):
    pool = pool_of(tmp_path, {"x86": FakeNode("x86_64", ("x86_64", "aarch64")), "arm": FakeNode("aarch64", ("aarch64",))})
    assert pool.place("h1", "aarch64").hypervisor.name == "arm"
    assert pool.place("h2", "x86_64").hypervisor.name == "x86"


def test_hosts_spread_over_the_pool_by_free_slots_and_wait_when_it_is_full(tmp_path):
    pool = pool_of(tmp_path, {"a": FakeNode("x86_64", ("x86_64",)), "b": FakeNode("x86_64", ("x86_64",))}, slots={"a": 1, "b": 1})
    first, second = pool.place("h1", "x86_64"), pool.place("h2", "x86_64")
    assert {first.hypervisor.name, second.hypervisor.name} == {"a", "b"}
    waited: list[str] = []
    got: list = []
    third = threading.Thread(target=lambda: got.append(pool.place("h3", "x86_64", waited.append)))
    third.start()
    time.sleep(0.5)
    assert not got and waited == ["every slot of a, b is taken"]
    first.release()
    third.join(timeout=10)
    assert got[0].hypervisor.name == first.hypervisor.name


def test_slots_follow_cores_and_memory_unless_the_matrix_says(tmp_path):
    pool = pool_of(tmp_path, {"big": FakeNode("x86_64", ("x86_64",), cpus=8), "small": FakeNode("x86_64", ("x86_64",), cpus=8, memory_mib=4608)})
    by_name = {h.name: h.slots(1536, 2) for h in pool.hypervisors()}
    assert by_name == {"big": 4, "small": 2}  # 8 cores / 2 vCPUs; (4608 - 512) MiB / (1536 + 512)
    assert pool_of(tmp_path, {"n": FakeNode("x86_64", ("x86_64",))}, slots={"n": 7}).total_slots() == 7


def test_vcpus_the_matrix_leaves_unset_are_each_hosts_share_of_the_cores(tmp_path):
    nodes = {"two": FakeNode("x86_64", ("x86_64",), cpus=2), "tight": FakeNode("x86_64", ("x86_64",), cpus=8, memory_mib=4608)}
    specs = tuple(HypervisorSpec(f"qemu+ssh://{name}/system") for name in nodes)
    pool = HypervisorPool(specs, tmp_path / "slots", 1536, None, lambda uri: nodes[uri.split("//")[1].split("/")[0]])
    assert {h.name: (h.slots(1536, None), h.guest_vcpus(1536, None)) for h in pool.hypervisors()} == {"two": (2, 1), "tight": (2, 4)}
    held = [pool.place("h1", "x86_64", vcpus=3)]
    assert held[0].vcpus == 3  # the matrix's own number stands
    held += [pool.place(f"h{i}", "x86_64") for i in (2, 3, 4)]
    assert sorted(s.hypervisor.name for s in held) == ["tight", "tight", "two", "two"]
    assert all(s.vcpus == {"two": 1, "tight": 4}[s.hypervisor.name] for s in held[1:])


def test_no_able_hypervisor_is_a_host_error_naming_the_pool(tmp_path):
    pool = pool_of(tmp_path, {"x86": FakeNode("x86_64", ("x86_64",)), "gone": None})
    with pytest.raises(HostError) as caught:
        pool.place("ppc-host", "ppc64le")
    assert str(caught.value) == "host ppc-host: no hypervisor of the pool can run it: x86 (no ppc64le guests); gone (cannot connect to libvirt at qemu+ssh://gone/system: no route to host)"
    assert pool.place("x-host", "x86_64").hypervisor.name == "x86"  # the others still serve


def test_a_lost_hypervisor_leaves_the_pool_of_every_worker(tmp_path):
    nodes = {"a": FakeNode("x86_64", ("x86_64",)), "b": FakeNode("x86_64", ("x86_64",))}
    pool, other_worker = pool_of(tmp_path, nodes, slots={"a": 1, "b": 1}), pool_of(tmp_path, nodes, slots={"a": 1, "b": 1})
    slot = pool.place("h1", "x86_64")
    lost = slot.hypervisor.name
    nodes[lost].alive, down = False, nodes[lost]
    nodes[lost] = None  # no new connection either
    pool.forget(lost, "host h1: guest agent gone (hypervisor a stopped answering)")
    nodes[lost] = down
    slot.release()
    assert [h.name for h in other_worker.hypervisors()] == [n for n in nodes if n != lost]
    assert other_worker.place("h2", "x86_64").hypervisor.name != lost
    other = {"a": "b", "b": "a"}[lost]
    nodes[other].alive = False
    pool.forget(other, "gone too")
    with pytest.raises(HostError, match="no hypervisor of the pool can run it: .*lost during the run: gone too"):
        pool.place("h3", "x86_64")


def test_a_hypervisor_whose_libvirtd_restarted_is_connected_again_not_lost(tmp_path):
    """A libvirtd restarted under a run (an upgrade, or one killed and started again) leaves the run's
    connection dead: the next host is placed over a new connection, not failed with the closed one's
    libvirtError (a whole-matrix run lost 932 cells that way to a test that killed libvirtd)."""
    nodes = {"local": FakeNode("x86_64", ("x86_64",))}
    pool = pool_of(tmp_path, nodes)
    first = pool.place("h1", "x86_64")
    first.release()
    nodes["local"].alive = False  # the run's connection died with the old libvirtd
    nodes["local"] = FakeNode("x86_64", ("x86_64",))  # the restarted one answers a new connection
    second = pool.place("h2", "x86_64")
    assert second.hypervisor.conn is nodes["local"] and second.vcpus == 2
    assert not (tmp_path / "slots" / "local.lost").exists()


def test_a_hypervisor_whose_connection_died_and_answers_no_new_one_is_lost_not_offered(tmp_path):
    nodes = {"a": FakeNode("x86_64", ("x86_64",)), "b": FakeNode("x86_64", ("x86_64",))}
    pool = pool_of(tmp_path, nodes, slots={"a": 1, "b": 1})
    pool.place("h1", "x86_64").release()
    nodes["a"].alive = False
    nodes["a"] = None  # its libvirtd is gone: no new connection
    assert [h.name for h in pool.hypervisors()] == ["b"]
    assert (tmp_path / "slots" / "a.lost").exists()  # for every worker of the run


def test_a_hypervisor_forgotten_by_a_host_is_kept_if_it_answers_a_new_connection(tmp_path):
    nodes = {"local": FakeNode("x86_64", ("x86_64",))}
    pool = pool_of(tmp_path, nodes)
    pool.place("h1", "x86_64").release()
    nodes["local"].alive = False
    nodes["local"] = FakeNode("x86_64", ("x86_64",))
    pool.forget("local", "host h1: guest agent gone (hypervisor local stopped answering)")
    assert [h.name for h in pool.hypervisors()] == ["local"] and pool.hypervisors()[0].conn is nodes["local"]


def test_a_hypervisor_answers_until_its_connection_closes():
    conn = libvirt.open("test:///default")
    node = Hypervisor(HypervisorSpec("test:///default"), conn)
    assert node.answers()
    conn.close()
    assert not node.answers()


def test_kvm_on_a_remote_hypervisor_comes_from_its_capabilities(tmp_path):
    node = Hypervisor(HypervisorSpec("qemu+ssh://n/system"), FakeNode("x86_64", ("x86_64", "aarch64"), kvm=True))
    verdicts = node.verdicts(tmp_path)
    assert verdicts.candidates("x86_64") == ["kvm", "qemu"] and verdicts.candidates("aarch64") == ["qemu"]
    verdicts.mark_kvm_broken("silent")
    assert verdicts.candidates("x86_64") == ["qemu"]
    assert Hypervisor(HypervisorSpec("qemu+ssh://m/system"), FakeNode("x86_64", ("x86_64",), kvm=True)).verdicts(tmp_path).candidates("x86_64") == ["kvm", "qemu"]


@pytest.mark.parametrize(
    ("spec", "address"),
    [
        (HypervisorSpec("qemu:///system"), "10.0.2.2"),
        (HypervisorSpec("qemu+ssh://root@127.0.0.1:2222/system"), "10.0.2.2"),
        (HypervisorSpec("qemu+ssh://localhost/system"), "10.0.2.2"),
        (HypervisorSpec("qemu+tcp://lab-node/system", harness_address="192.0.2.7"), "192.0.2.7"),
    ],
)
def test_guests_reach_this_machine_at_the_gateway_or_the_given_address(spec, address):
    assert Hypervisor(spec, FakeNode("x86_64", ())).harness_address() == address


def test_the_registry_opens_beyond_loopback_only_for_other_machines():
    assert not needs_open_registry((HypervisorSpec("qemu:///system"), HypervisorSpec("qemu+ssh://root@127.0.0.1:2222/system")))
    assert needs_open_registry((HypervisorSpec("qemu:///system"), HypervisorSpec("qemu+ssh://lab-node/system")))


MATRIX = """
version: 1
hosts: [{name: plain, release: bookworm, arch: amd64, engine: podman}]
images: [{name: base, release: bookworm}]
scenarios: [useradd]
"""


def test_hypervisors_in_the_matrix(tmp_path, repo_root):
    shutil.copytree(repo_root / "vms", tmp_path / "vms")
    shutil.copytree(repo_root / "scenarios", tmp_path / "scenarios")
    assert load_matrix(write_matrix(tmp_path, MATRIX)).hypervisors == (HypervisorSpec("qemu:///system"),)
    extra = "hypervisors:\n  - {uri: 'qemu:///system'}\n  - {uri: 'qemu+ssh://root@node7/system', slots: 3}\n"
    matrix = load_matrix(write_matrix(tmp_path, MATRIX + extra))
    assert [(h.name, h.slots, h.remote) for h in matrix.hypervisors] == [("local", None, False), ("node7", 3, True)]
    clash = "hypervisors:\n  - {uri: 'qemu+ssh://a/system', name: n}\n  - {uri: 'qemu+ssh://b/system', name: n}\n"
    with pytest.raises(MatrixError, match="duplicate hypervisor name 'n'"):
        load_matrix(write_matrix(tmp_path, MATRIX + clash))
    with pytest.raises(MatrixError, match=r"hypervisors\[0\]\.uri"):
        load_matrix(write_matrix(tmp_path, MATRIX + "hypervisors:\n  - {uri: node7}\n"))


def test_cleanup_removes_the_volumes_of_dead_runs_only(tmp_path):
    conn = libvirt.open("test:///default")
    pool = harness_pool(conn)
    assert pool.name() == POOL_NAME and pool.isActive()
    for name in ("run-live-1-h-root.qcow2", "run-dead-h-root.qcow2", "run-dead-h-console.log", "cache-abc-root"):
        pool.createXML(f"<volume><name>{name}</name><capacity>1</capacity></volume>", 0)
    (tmp_path / "runs" / "live-1" / "owners").mkdir(parents=True)
    cleaned = cleanup([conn], tmp_path, keep={"live-1"})
    assert sorted(cleaned.volumes) == ["run-dead-h-console.log", "run-dead-h-root.qcow2"]
    assert sorted(v.name() for v in pool.listAllVolumes(0)) == ["cache-abc-root", "run-live-1-h-root.qcow2"]


def test_an_emulated_guest_gets_one_vcpu_unless_the_matrix_says():
    from harness.hosts.libvirt import guest_vcpus

    assert guest_vcpus(None, 4, "kvm") == 4 and guest_vcpus(None, 4, "qemu") == 1
    assert guest_vcpus(2, 1, "qemu") == 2 and guest_vcpus(3, 4, "kvm") == 3
