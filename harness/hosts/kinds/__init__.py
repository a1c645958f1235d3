"""Host kinds, their host half: one driver per kind (base.py says what a driver brings). The
registration point is DRIVERS below; the kind's matrix half is registered in harness/config/kinds/."""

from __future__ import annotations

from harness.config.model import HostKind
from harness.hosts.kinds.base import HostKindDriver
from harness.hosts.kinds.disk import DiskKind
from harness.hosts.kinds.engine import EngineKind
from harness.hosts.kinds.vm import VmKind

DRIVERS: dict[HostKind, type[HostKindDriver]] = {HostKind.VM: VmKind, HostKind.DISK: DiskKind, HostKind.ENGINE: EngineKind}
