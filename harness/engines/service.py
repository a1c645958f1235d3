"""The local podman's Docker-compatible API service, started by the harness for `local: true` hosts.

`podman system service` serves the API on a unix socket; the harness reuses one that already
answers and stops only the one it started itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def default_socket() -> Path:
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
    def endpoint(self) -> str:
        return f"unix://{self.sock}"

    def start(self, timeout: float = 30.0) -> str:
        """Serve the API (or find it already served); returns the endpoint. Raises RuntimeError."""
        if answers(self.sock):
            return self.endpoint
        self.sock.parent.mkdir(parents=True, exist_ok=True)
        self.sock.unlink(missing_ok=True)
        log = open(self.sock.parent / "podman-service.log", "ab")
        try:
            self.process = subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.endpoint],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise RuntimeError("podman is not installed (Debian package podman)") from None
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if answers(self.sock):
                return self.endpoint
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"podman system service did not answer on {self.sock}; see {self.sock.parent / 'podman-service.log'}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
