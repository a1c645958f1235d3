"""Command lines of docker.io's engine on a host; the CLI spells nearly everything as podman's does."""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.model import ScenarioOptions
from harness.engines.podman import Podman


@dataclass(frozen=True)
class Docker(Podman):
    binary: str = "docker"

    def image_exists(self, image_id: str) -> list[str]:
        return ["docker", "image", "inspect", "--format", "{{.Id}}", image_id]

    def _systemd(self, options: ScenarioOptions) -> list[str]:
        return []  # docker has no --systemd: a scenario that wants systemd runs as docker's defaults allow

    def pull(self, reference: str, tls_verify: bool = False) -> list[str]:
        return ["docker", "pull", reference]  # the harness's registry is in daemon.json's insecure-registries

    def remove(self, name: str) -> list[str]:
        return ["docker", "rm", "--force", name]

    def ready(self) -> list[str] | None:
        return ["docker", "info", "--format", "{{.ServerVersion}}"]


def engine_cli(engine: str, runtime: str) -> Podman:
    return Docker(runtime) if engine == "docker" else Podman(runtime)
