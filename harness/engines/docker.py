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

    certs_dir: str = "/etc/docker/certs.d"  # the daemon reads it at each pull
    auth_name: str = "config.json"

    def pull(self, reference: str, tls_verify: bool = False, auth_dir: str | None = None) -> list[str]:
        # The harness's registry is in daemon.json's insecure-registries; the CLI sends the
        # credentials of the config directory it is given to the daemon for this pull.
        return [*(["env", f"DOCKER_CONFIG={auth_dir}"] if auth_dir else []), "docker", "pull", reference]

    def login(self, registry: str, tls_verify: bool) -> list[str]:
        return ["docker", "login", registry]

    def remove(self, name: str) -> list[str]:
        return ["docker", "rm", "--force", name]

    def ready(self) -> list[str] | None:
        return ["docker", "info", "--format", "{{.ServerVersion}}"]

    store_dir: str = "/var/lib/docker"

    def quiesce(self) -> list[str] | None:
        """dockerd (and the containerd it started) stopped, as its service would be."""
        return ["sh", "-c", "pkill -TERM -x dockerd || exit 0; for i in $(seq 60); do pgrep -x dockerd >/dev/null || exit 0; sleep 0.5; done; exit 1"]


def engine_cli(engine: str, runtime: str) -> Podman:
    return Docker(runtime) if engine == "docker" else Podman(runtime)
