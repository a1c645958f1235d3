"""A container engine that already runs, reached over the Docker API (engine.schema.json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from harness.config.model import HostKind, HostSpec, Machine


@dataclass(frozen=True)
class EngineHostSpec(HostSpec):
    kind: ClassVar[HostKind] = HostKind.ENGINE
    endpoint: str | None = None  # None: DOCKER_HOST's, or (local) the harness's own podman service
    local: bool = False
    ulimits: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_entry(cls, h: dict, machine: Machine) -> "EngineHostSpec":
        return cls(
            name=h["name"],
            machine=machine,
            arch=h.get("arch", ""),
            runtime=h.get("runtime", ""),
            endpoint=h.get("endpoint"),
            local=h.get("local", False),
            ulimits=dict(h.get("ulimits", {})),
        )
