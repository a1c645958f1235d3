"""The host seam: anything that can run a container engine for the matrix (a libvirt VM today)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from harness.results.model import ExecRecord, HostRecord


class HostError(Exception):
    """The host (not the image) failed: it did not boot, stopped answering, or its engine is broken."""


class Host(ABC):
    """A running host. Modelled on tmt's Guest: start, execute, facts, stop."""

    #: Where the payload directory given to start() appears inside the host.
    payload_root: str

    def __init__(self, record: HostRecord):
        self.record = record

    @property
    def name(self) -> str:
        return self.record.name

    @abstractmethod
    def start(self, payload: Path) -> None:
        """Boot the host with `payload` (images, scenarios) readable at payload_root; raise HostError."""

    @abstractmethod
    def run(self, argv: list[str], timeout: float) -> ExecRecord:
        """Run argv on the host (not in a container) with a time limit; raise HostError if unreachable."""

    @abstractmethod
    def facts(self) -> dict[str, str]:
        """What the running host really is: os-release, kernel, arch, engine and runtime versions..."""

    @abstractmethod
    def stop(self) -> None:
        """Tear the host down and remove everything start() created; safe to call twice."""
