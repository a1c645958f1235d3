"""Command lines of the podman engine, as run on a host (never on the harness machine)."""

from __future__ import annotations

from dataclasses import dataclass

# Where a scenario's directory is mounted inside the container.
SCENARIO_MOUNT = "/harness/scenario"


@dataclass(frozen=True)
class Podman:
    runtime: str

    name = "podman"

    def load(self, archive: str) -> list[str]:
        return ["podman", "load", "--input", archive]

    def image_exists(self, image_id: str) -> list[str]:
        return ["podman", "image", "exists", image_id]

    def run(self, image_id: str, scenario_dir: str, script: str = "run") -> list[str]:
        """The exact command a cell runs; it is recorded so the cell can be reproduced by hand."""
        return [
            "podman",
            "run",
            "--rm",
            "--runtime",
            self.runtime,
            "--network",
            "none",
            "--volume",
            f"{scenario_dir}:{SCENARIO_MOUNT}:ro",
            image_id,
            f"{SCENARIO_MOUNT}/{script}",
        ]


def engine_for(engine: str, runtime: str) -> Podman:
    if engine != "podman":
        raise ValueError(f"unknown engine {engine!r}")
    return Podman(runtime)
