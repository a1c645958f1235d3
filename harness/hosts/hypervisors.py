"""The pool of libvirt hypervisors a run places its VM hosts on, and the placement itself.

Each hypervisor has slots: how many hosts it runs at once (the matrix's `slots:`, or as many as its
cores and memory allow, read from libvirt). A slot is a lock file in the run's directory, held by
the process running a host there for as long as the host lives, so every xdist worker of a run sees
the same occupancy. A host goes to a hypervisor that can run its architecture (from libvirt's
capabilities), preferring one of the same architecture (KVM may work there), then the emptiest.
A hypervisor that stops answering during the run is lost: it leaves the pool (for every worker: a
`.lost` file beside the slots says so) and its hosts start again elsewhere.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO
from urllib.parse import urlsplit

import libvirt

from harness.config.model import HypervisorSpec, Matrix
from harness.hosts.accel import AccelVerdicts
from harness.hosts.files import HostFiles, LocalFiles, VolumeFiles
from harness.hosts.provider import HostError
from harness.registry.publish import GUEST_GATEWAY

class HypervisorLost(HostError):
    """The hypervisor running a host stopped answering: the host is not broken, its place is gone."""

    def __init__(self, message: str, hypervisor: str):
        super().__init__(message)
        self.hypervisor = hypervisor


# Memory a hypervisor keeps for itself and for each guest's QEMU process, beyond the guest's RAM.
RESERVED_MIB = 512


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Hypervisor:
    """One connected hypervisor of the pool."""

    spec: HypervisorSpec
    conn: libvirt.virConnect
    _caps: ET.Element | None = None
    _slots: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def capabilities(self) -> ET.Element:
        if self._caps is None:
            self._caps = ET.fromstring(self.conn.getCapabilities())
        return self._caps

    @property
    def native_arch(self) -> str:
        return self.capabilities.findtext("host/cpu/arch") or ""

    def runs(self, qemu_arch: str) -> bool:
        """Whether it has a QEMU for guests of this architecture."""
        return any(g.get("name") == qemu_arch and g.find("emulator") is not None for g in self.capabilities.iterfind("guest/arch"))

    def offers_kvm(self, qemu_arch: str) -> bool:
        return any(
            g.get("name") == qemu_arch and g.find("domain[@type='kvm']") is not None for g in self.capabilities.iterfind("guest/arch")
        )

    def verdicts(self, cache_root: Path) -> AccelVerdicts:
        """Whether KVM works there: this machine's own judgement, or one kept for the remote hypervisor."""
        if not self.spec.remote:
            return AccelVerdicts(cache_root)
        return AccelVerdicts(cache_root, self.name, self.offers_kvm)

    @property
    def cpus(self) -> int:
        return int(self.conn.getInfo()[2])

    def slots(self, memory_mib: int, vcpus: int | None) -> int:
        """Hosts it runs at once: the matrix's number, or as many as its cores (counting each
        guest's vCPUs, one where the matrix leaves them to the harness: an emulated vCPU keeps a
        core busy, and oversubscribed guests stall) and memory allow."""
        if not self._slots:
            _model, memory, cpus, *_ = self.conn.getInfo()
            fit = min(cpus // (vcpus or 1), (memory - RESERVED_MIB) // (memory_mib + RESERVED_MIB))
            self._slots = self.spec.slots or max(1, fit)
        return self._slots

    def guest_vcpus(self, memory_mib: int, vcpus: int | None) -> int:
        """A guest's vCPUs: the matrix's, else its share of the cores when every slot is busy (on 2
        cores: two 1-vCPU hosts at once, measured 1.67x one 2-vCPU host by bench/workers.py). An
        emulated guest gets one at most (hosts/libvirt.guest_vcpus)."""
        return vcpus or max(1, self.cpus // self.slots(memory_mib, vcpus))

    def answers(self) -> bool:
        """Whether its libvirt still answers a call (a closed or dead connection does not)."""
        try:
            return bool(self.conn.isAlive()) and bool(self.conn.getLibVersion())
        except libvirt.libvirtError:
            return False

    def files(self, run_id: str, host: str, workdir: Path, locks: Path) -> HostFiles:
        if self.spec.remote:
            return VolumeFiles(self.conn, run_id, host, locks)
        return LocalFiles(workdir)

    def harness_address(self) -> str:
        """This machine's address as this hypervisor's guests reach it (the harness's registry is
        there): QEMU's gateway when the hypervisor shares this machine's loopback, else this
        machine's address on the route to the node (the registry then listens on every address;
        see needs_open_registry), unless the matrix says otherwise."""
        if self.spec.harness_address:
            return self.spec.harness_address
        if not off_machine(self.spec):
            return GUEST_GATEWAY
        return _address_towards(urlsplit(self.spec.uri).hostname or "")


def _address_towards(node: str) -> str:
    """This machine's address on the route to `node` (no packet is sent)."""
    family = socket.getaddrinfo(node, None)[0]
    with socket.socket(family[0], socket.SOCK_DGRAM) as s:
        s.connect((family[4][0], 9))
        return s.getsockname()[0]


def off_machine(spec: HypervisorSpec) -> bool:
    """Whether the hypervisor runs on another machine (not this one's loopback)."""
    node = urlsplit(spec.uri).hostname
    return bool(node) and not _is_loopback(node)


def needs_open_registry(pool: tuple[HypervisorSpec, ...]) -> bool:
    """Whether guests reach the registry from another machine: it must not listen on loopback only."""
    return any(off_machine(h) for h in pool)


@dataclass
class Slot:
    """A held slot on a hypervisor; released by release() or when this process ends."""

    hypervisor: Hypervisor
    lock: TextIO
    vcpus: int  # the guest's, as the pool chose them

    def release(self) -> None:
        if not self.lock.closed:
            self.lock.close()


@dataclass
class HypervisorPool:
    specs: tuple[HypervisorSpec, ...]
    slots_dir: Path
    memory_mib: int  # the largest host's memory and vCPUs (None: chosen here): what one slot must hold
    vcpus: int | None
    connect: Callable[[str], libvirt.virConnect]
    # How long a hypervisor whose connection died is given to answer a new one before it is lost:
    # a libvirtd restarting (a crash and restart, an upgrade) takes a second or two.
    reconnect_within: float = 15.0
    _connected: dict[str, Hypervisor] = field(default_factory=dict)
    _unreachable: dict[str, str] = field(default_factory=dict)
    _lost: list[Hypervisor] = field(default_factory=list)

    @classmethod
    def for_matrix(cls, matrix: Matrix, specs: tuple[HypervisorSpec, ...], slots_dir: Path, connect) -> "HypervisorPool":
        """A pool whose slots each hold the matrix's largest VM host."""
        vms = [h.machine for h in matrix.vm_hosts()]
        asked = [m.vcpus for m in vms if m.vcpus]
        return cls(specs, slots_dir, max((m.memory_mib for m in vms), default=0), max(asked) if asked else None, connect)

    def total_slots(self) -> int:
        """Hosts the whole pool runs at once (its answering hypervisors)."""
        return sum(h.slots(self.memory_mib, self.vcpus) for h in self.hypervisors())

    def _lost_file(self, name: str) -> Path:
        return self.slots_dir / f"{name}.lost"

    def hypervisors(self) -> list[Hypervisor]:
        """Every hypervisor that answers (connected once per process, again when its connection
        died: a restarted libvirtd) and was not lost during the run (by any worker); the others
        are remembered with why."""
        for spec in self.specs:
            if spec.name not in self._unreachable and self._lost_file(spec.name).exists():
                self._lose(spec.name, self._lost_file(spec.name).read_text().strip())
            if spec.name in self._unreachable:
                continue
            if spec.name in self._connected:
                if not self._connected[spec.name].answers():
                    self.forget(spec.name, "its connection died, and it answered no new one")
                continue
            try:
                self._reconnect(spec)
            except HostError as exc:
                self._unreachable[spec.name] = str(exc)
        return [self._connected[s.name] for s in self.specs if s.name in self._connected]

    def _reconnect(self, spec: HypervisorSpec) -> None:
        """A new connection to the hypervisor (HostError if it does not answer one); a dead one it
        replaces is closed at the end, since hosts started on it still hold it."""
        conn = self.connect(spec.uri)
        if dead := self._connected.pop(spec.name, None):
            self._lost.append(dead)
        self._connected[spec.name] = Hypervisor(spec, conn)

    def _candidates(self, host: str, qemu_arch: str) -> list[Hypervisor]:
        able = [h for h in self.hypervisors() if h.runs(qemu_arch)]
        if not able:
            tried = [f"{h.name} (no {qemu_arch} guests)" for h in self.hypervisors()]
            tried += [f"{name} ({why})" for name, why in self._unreachable.items()]
            raise HostError(f"host {host}: no hypervisor of the pool can run it: {'; '.join(tried) or 'the pool is empty'}")
        return able

    def _try(self, hypervisor: Hypervisor, vcpus: int | None) -> Slot | None:
        self.slots_dir.mkdir(parents=True, exist_ok=True)
        for index in range(hypervisor.slots(self.memory_mib, self.vcpus)):
            lock = open(self.slots_dir / f"{hypervisor.name}.{index}", "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            return Slot(hypervisor, lock, hypervisor.guest_vcpus(self.memory_mib, vcpus))
        return None

    def _free_slots(self, hypervisor: Hypervisor) -> int:
        free = 0
        for index in range(hypervisor.slots(self.memory_mib, self.vcpus)):
            with open(self.slots_dir / f"{hypervisor.name}.{index}", "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    free += 1
                except BlockingIOError:
                    pass
        return free

    def place(self, host: str, qemu_arch: str, waiting: Callable[[str], None] = lambda _msg: None, vcpus: int | None = None) -> Slot:
        """A slot for the host on the best hypervisor with one free; waits while every able one is
        full. vcpus: the host's own, if the matrix gives them."""
        self.slots_dir.mkdir(parents=True, exist_ok=True)
        while True:
            candidates = self._candidates(host, qemu_arch)  # again each round: one may be lost meanwhile
            natives = [h for h in candidates if h.native_arch == qemu_arch]
            for group in (natives, [h for h in candidates if h not in natives]):
                for hypervisor in sorted(group, key=self._free_slots, reverse=True):
                    if slot := self._try(hypervisor, vcpus):
                        return slot
            waiting(f"every slot of {', '.join(h.name for h in candidates)} is taken")
            time.sleep(2)

    def forget(self, name: str, why: str) -> None:
        """Take a hypervisor that stopped answering out of the pool, for every worker of the run,
        unless it answers a new connection (its libvirtd was restarted): then it serves on."""
        spec = next(s for s in self.specs if s.name == name)
        deadline = time.monotonic() + self.reconnect_within
        while True:
            try:
                self._reconnect(spec)
                if self._connected[name].answers():
                    return
            except HostError:
                pass
            if time.monotonic() >= deadline:
                self._lose(name, why)
                return
            time.sleep(1)

    def _lose(self, name: str, why: str) -> None:
        self.slots_dir.mkdir(parents=True, exist_ok=True)
        if not self._lost_file(name).exists():
            self._lost_file(name).write_text(why + "\n")
        self._unreachable[name] = f"lost during the run: {why}"
        if hypervisor := self._connected.pop(name, None):
            self._lost.append(hypervisor)  # closed at the end: hosts on it still hold the connection

    def close(self) -> None:
        for hypervisor in [*self._connected.values(), *self._lost]:
            try:
                hypervisor.conn.close()
            except libvirt.libvirtError:
                pass
        self._connected.clear()
        self._lost.clear()
