"""Helper daemons the harness starts on this machine (podman's API service, the registry): started
in their own session with their output in a log, recorded in a pid file with the starting process
(so a later run can stop one whose starter died), and stopped only by whoever started them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable


class DaemonError(RuntimeError):
    """The daemon could not be started or did not answer; the message names it and its log."""


def start_daemon(argv: list[str], log: Path, pid_file: Path, answers: Callable[[], bool], what: str, missing: str, timeout: float = 30.0) -> subprocess.Popen:
    """Start argv and wait until `answers()`; raise DaemonError (naming `missing` when argv[0] is absent)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        try:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        except FileNotFoundError:
            raise DaemonError(f"{argv[0]} is not installed ({missing})") from None
    pid_file.write_text(f"{process.pid} {os.getpid()}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers():
            return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    stop_daemon(process, pid_file)
    raise DaemonError(f"{what} did not answer; see {log}")


def stop_daemon(process: subprocess.Popen, pid_file: Path) -> None:
    """SIGTERM its whole session, SIGKILL after 10 s."""
    pid_file.unlink(missing_ok=True)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _recorded(pid_file: Path) -> tuple[int, int] | None:
    """The daemon's pid and its starter's, as the pid file records them."""
    try:
        daemon_pid, owner_pid = (int(x) for x in pid_file.read_text().split())
    except (OSError, ValueError):
        return None
    return daemon_pid, owner_pid


def stop_recorded_daemon(pid_file: Path, what: str) -> str | None:
    """Stop the daemon a pid file records, whoever started it; returns what was done, if anything."""
    if (pids := _recorded(pid_file)) is None:
        return None
    try:
        os.killpg(pids[0], signal.SIGTERM)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)
    return f"stopped {what} (pid {pids[0]})"


def stop_orphaned_daemon(pid_file: Path, what: str) -> str | None:
    """Stop a daemon whose starting harness process is gone (killed); returns what was done, if anything."""
    if (pids := _recorded(pid_file)) is None:
        return None
    try:
        os.kill(pids[1], 0)
        return None  # its harness still runs
    except ProcessLookupError:
        pass
    stopped = stop_recorded_daemon(pid_file, what)
    return stopped and f"{stopped} of a harness that is gone"
