"""Debian's `docker-registry` (the distribution registry, v2 API) served from the harness's cache.

Plain HTTP on one port, no auth: it is the harness's own delivery point, like a lab's internal
registry. The harness reuses a registry that already answers there and stops only its own (or
one a killed run left serving loopback only, when this run's remote guests need every address).
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

from harness.daemon import DaemonError, start_daemon, stop_daemon, stop_orphaned_daemon

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
# confined domain may connect to (5050 is mmcc_port_t, and was denied; 8009 is http_port_t too).
# A matrix's `registry_port` chooses another where the port is taken.
REGISTRY_PORT = 8008


def registry_root(cache_root: Path, port: int = REGISTRY_PORT) -> Path:
    """Where the registry of a port keeps its storage, configuration, log and pid file."""
    return cache_root / ("registry" if port == REGISTRY_PORT else f"registry-{port}")


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
            if not self.listen_all or self._serves_every_address():
                return self.url
            self._stop_loopback_only(timeout)
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

    def _serves_every_address(self) -> bool:
        """Whether the registry answering here is the harness's, serving every address (not loopback only)."""
        try:
            return f"addr: {self.listen}\n" in (self.root / "config.yml").read_text()
        except OSError:
            return False

    def _stop_loopback_only(self, timeout: float) -> None:
        """A registry that guests of other machines cannot reach answers on the port: stop it if the
        run that started it is gone; otherwise say who has to."""
        if stop_orphaned_daemon(self.pid_file, "the registry") is None:
            raise RegistryError(
                f"a registry at {self.url} serves this machine only (a running harness's, or not the harness's), "
                "but guests on other machines must pull from it: stop it, or give the matrix another registry_port"
            )
        deadline = time.monotonic() + timeout
        while answers(self.url):
            if time.monotonic() > deadline:
                raise RegistryError(f"the registry left at {self.url} by a killed run does not stop")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            stop_daemon(self.process, self.pid_file)
            self.process = None
