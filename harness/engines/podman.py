"""Command lines of the podman engine, as run on a host (never on the harness machine)."""

from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True)
class Podman:
    runtime: str

    name = "podman"

    def load(self, archive: str) -> list[str]:
        return ["podman", "load", "--input", archive]

    def image_exists(self, image_id: str) -> list[str]:
        return ["podman", "image", "exists", image_id]

    def run(self, image_id: str, mount: tuple[str, str], command: str) -> list[str]:
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
            f"{mount[0]}:{mount[1]}:ro",
            image_id,
            command,
        ]

