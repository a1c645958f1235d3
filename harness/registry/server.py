"""Debian's `docker-registry` (the distribution registry, v2 API) served from the harness's cache.

Plain HTTP on one port, no auth: it is the harness's own delivery point, like a lab's internal
registry. The harness reuses a registry that already answers there, whichever run (of whichever
cache) started it: each run using the port claims it, and the last one out stops it (or a later
cleanup, when that one was killed). A registry a killed run left serving loopback only is replaced
when this run's remote guests need every address.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from harness.daemon import DaemonError, start_daemon, stop_daemon, stop_orphaned_daemon, stop_recorded_daemon
from harness.runs import claim, lives, release

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


def users_of(port: int) -> Path:
    """Where the runs using the registry on a port claim it: one place for the machine, since a run
    uses the registry answering on its port whoever started it, and its pid file is in that one's cache."""
    return Path(tempfile.gettempdir()) / f"harness-registry-{port}"


def port_of(root: Path) -> int | None:
    """The port the registry kept at root was configured for (None: never configured there)."""
    try:
        config = (root / "config.yml").read_text()
    except OSError:
        return None
    addr = next((line.split(":", 1)[1].strip() for line in config.splitlines() if line.strip().startswith("addr:")), "")
    return int(addr.rsplit(":", 1)[1]) if ":" in addr else None


def in_use(root: Path) -> bool:
    """Whether a live run claims the registry kept at root (one of any cache may pull from it)."""
    port = port_of(root)
    return port is not None and lives(users_of(port))


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

    @property
    def users(self) -> Path:
        return users_of(int(self.addr.rsplit(":", 1)[1]))

    def start(self, timeout: float = 30.0) -> str:
        """Serve (or find served) the registry, and claim it for this process; returns its URL.
        Raises RegistryError."""
        if answers(self.url):
            if not self.listen_all or self._serves_every_address():
                claim(self.users)
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
        claim(self.users)
        (self.users / "pid-file").write_text(str(self.pid_file))
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
        """Give up this process's claim; stop the registry only if no other live run claims it. The
        last one out stops it whoever started it: the starter's pid file says which daemon it is."""
        release(self.users)
        if lives(self.users):
            return
        if self.process is not None:
            stop_daemon(self.process, self.pid_file)
            self.process = None
            return
        try:
            started_by = Path((self.users / "pid-file").read_text())
        except OSError:
            return
        stop_recorded_daemon(started_by, "the registry")
