"""What a host kind brings besides its matrix half (harness/config/kinds/): how a host of the kind
is provisioned, what of it goes into a cell's cache key, what this machine needs for it, what a
killed run leaves of it, and how what is read from a running host becomes typed facts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, ClassVar, Iterable

import libvirt

from harness.config.model import HostKind, HostSpec, HypervisorSpec, Matrix
from harness.context import RunContext
from harness.hosts.provider import Host
from harness.results.model import HostFacts
from harness.runs import Cleaned


def as_int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


class HostKindDriver(ABC):
    """One per kind per run: it owns what the kind's hosts of the run share (a hypervisor pool, an
    engine service) and closes it at the end."""

    kind: ClassVar[HostKind]

    def __init__(self, matrix: Matrix, run: RunContext):
        self.matrix, self.run = matrix, run

    @abstractmethod
    def provision(self, spec: HostSpec, waiting: Callable[[str], None]) -> Host:
        """The host, not yet started (built or taken from the cache, placed)."""

    def close(self) -> None:
        """Release what the kind's hosts of this run shared."""

    def lose_hypervisor(self, name: str, why: str) -> None:
        """A hypervisor stopped answering: place none of this run's hosts there any more."""

    @classmethod
    @abstractmethod
    def cache_key(cls, spec: HostSpec, matrix: Matrix) -> dict:
        """Everything of the host that could change a cell's verdict, for the result cache."""

    @classmethod
    def doctor(cls, specs: list[HostSpec], pool: tuple[HypervisorSpec, ...]) -> list[str]:
        """What this machine lacks to run these hosts, a line each."""
        return []

    @classmethod
    def cleanup(cls, conns: Iterable[libvirt.virConnect], cache_root: Path, spare: set[str], cleaned: Cleaned) -> None:
        """Remove what runs not in `spare` left of hosts of this kind, and say so in `cleaned`."""

    @classmethod
    def parse_facts(cls, raw: dict[str, str]) -> HostFacts:
        """The typed facts of what was read from a running host of this kind. The VM's facts script
        and the engine host's reading of its API name what they read alike, so this serves both; a
        kind whose hosts say it otherwise brings its own."""
        return HostFacts(
            os=raw.get("os_pretty_name", ""),
            kernel=raw.get("kernel", ""),
            machine=raw.get("machine", ""),
            cpus=as_int(raw.get("cpus")),
            memory_kib=as_int(raw.get("memory_kib")),
            page_size=as_int(raw.get("page_size")),
            cgroup=raw.get("cgroup", ""),
            lsm=raw.get("lsm", ""),
            engine=raw.get("engine", ""),
            engine_version=raw.get("engine_version", ""),
            runtime=raw.get("runtime", ""),
            runtime_version=raw.get("runtime_version", ""),
            raw=dict(raw),
        )
