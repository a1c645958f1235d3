"""The local podman's Docker-compatible API service, started by the harness for `local: true` hosts.

`podman system service` serves the API on a unix socket; the harness reuses one that already
answers and stops only the one it started itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from harness.daemon import start_daemon, stop_daemon, stop_orphaned_daemon


def default_socket() -> Path:
    if env := os.environ.get("HARNESS_PODMAN_SOCKET"):
        return Path(env)
    base = Path("/run") if os.geteuid() == 0 else Path(os.environ.get("XDG_RUNTIME_DIR", f"/tmp/{os.getuid()}"))
    return base / "container-matrix-harness" / "podman.sock"


def answers(sock: Path) -> bool:
    """True if something serves HTTP on the socket (a _ping gets a reply)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


class PodmanService:
    def __init__(self, sock: Path | None = None):
        self.sock = sock or default_socket()
        self.process: subprocess.Popen | None = None

    @property
    def pid_file(self) -> Path:
        return self.sock.with_suffix(".pid")

    @property
    def endpoint(self) -> str:
        return f"unix://{self.sock}"

    def start(self, timeout: float = 30.0) -> str:
        """Serve the API (or find it already served); returns the endpoint. Raises RuntimeError."""
        if answers(self.sock):
            return self.endpoint
        self.sock.parent.mkdir(parents=True, exist_ok=True)
        self.sock.unlink(missing_ok=True)
        # The pid file says who started it: `harness cleanup` stops a service whose starter died.
        self.process = start_daemon(
            ["podman", "system", "service", "--time=0", self.endpoint],
            self.sock.parent / "podman-service.log",
            self.pid_file,
            lambda: answers(self.sock),
            f"podman system service on {self.sock}",
            "Debian package podman",
            timeout,
        )
        return self.endpoint

    def stop(self) -> None:
        """Stop the service this object started (one found running is left alone)."""
        if self.process is None:
            return
        stop_daemon(self.process, self.pid_file)
        self.process = None
        self.sock.unlink(missing_ok=True)


def stop_orphaned(sock: Path | None = None) -> str | None:
    """Stop a service whose starting harness process is gone; returns what was done, if anything."""
    return stop_orphaned_daemon((sock or default_socket()).with_suffix(".pid"), "the podman API service")
