"""Debian's `docker-registry` (the distribution registry, v2 API) served from the harness's cache.

Plain HTTP on one port, no auth: it is the harness's own delivery point, like a lab's internal
registry. The harness reuses a registry that already answers there and stops only its own.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

from harness.daemon import DaemonError, start_daemon, stop_daemon

CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {addr}
"""


# Not 5000: Debian's docker-registry service takes that port, with authentication, where an init
# system starts it. 8008 is an http_port_t port in SELinux's reference policy, one that podman's
# confined domain may connect to (5050 is mmcc_port_t, and was denied). HARNESS_REGISTRY_PORT
# overrides it where the port is taken.
REGISTRY_PORT = int(os.environ.get("HARNESS_REGISTRY_PORT", "8008"))


class RegistryError(Exception):
    """The registry could not be started or refused an operation; the message says which."""


def answers(url: str) -> bool:
    """True if a v2 registry that takes anonymous pushes answers at url (GET /v2/ gives 200)."""
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=5) as reply:
            return reply.status == 200
    except OSError:  # HTTPError (401: one that wants credentials) included
        return False


class RegistryServer:
    def __init__(self, root: Path, addr: str = f"127.0.0.1:{REGISTRY_PORT}", listen_all: bool = False):
        """listen_all: serve on every address of this machine (guests of remote hypervisors pull
        from it), not on loopback only; the harness itself still pushes over loopback."""
        self.root, self.addr, self.listen_all = root, addr, listen_all
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    @property
    def listen(self) -> str:
        return f":{self.addr.rsplit(':', 1)[1]}" if self.listen_all else self.addr

    @property
    def pid_file(self) -> Path:
        return self.root / "registry.pid"

    def start(self, timeout: float = 30.0) -> str:
        """Serve (or find served) the registry; returns its URL. Raises RegistryError."""
        if answers(self.url):
            return self.url
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(CONFIG.format(root=self.root / "storage", addr=self.listen))
        try:
            self.process = start_daemon(
                ["docker-registry", "serve", str(config)],
                self.root / "registry.log",
                self.pid_file,
                lambda: answers(self.url),
                f"docker-registry at {self.url}",
                "Debian package docker-registry; ./setup-machine installs it",
                timeout,
            )
        except DaemonError as exc:
            raise RegistryError(str(exc)) from None
        return self.url

    def stop(self) -> None:
        if self.process is not None:
            stop_daemon(self.process, self.pid_file)
            self.process = None
