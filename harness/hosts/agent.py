"""Commands in a guest through the QEMU guest agent, via libvirt: no guest network, no SSH keys.

Arguments travel as a JSON argv (never through a shell on the harness machine) and output comes
back base64-encoded, so nothing the guest prints is ever interpreted here.
"""

from __future__ import annotations

import base64
import json
import time

import libvirt
import libvirt_qemu

from harness.results.model import ExecRecord

# The guest's `timeout` exits with 124 when it had to stop the command (137 if it had to kill it).
_TIMEOUT_CODES = (124, 137)


def limit_reached(code: int | None, duration: float, limit: float) -> bool:
    """Whether a `timeout LIMIT` wrapper stopped the command: it exits 124 or 137, but only once
    LIMIT has passed. A command that exits 124 or 137 by itself sooner (a scenario's own, an OOM
    kill) was not stopped by the harness."""
    return code in _TIMEOUT_CODES and duration >= limit
# Grace the harness allows beyond a command's own timeout before calling the guest unresponsive.
_GRACE_SECONDS = 60.0


class AgentError(Exception):
    """The guest agent could not be reached or stopped answering."""


class GuestAgent:
    def __init__(self, domain: libvirt.virDomain):
        self.domain = domain

    def _call(self, command: str, arguments: dict | None = None, timeout: int = 10) -> dict:
        request = {"execute": command, **({"arguments": arguments} if arguments else {})}
        try:
            reply = libvirt_qemu.qemuAgentCommand(self.domain, json.dumps(request), timeout, 0)
        except libvirt.libvirtError as exc:
            raise AgentError(f"guest agent {command}: {exc.get_error_message()}") from None
        return json.loads(reply)["return"]

    def _alive(self) -> bool:
        try:
            return bool(self.domain.isActive())
        except libvirt.libvirtError:
            return False

    def _patient_call(self, command: str, arguments: dict, deadline: float) -> dict:
        """A call that rides out a busy agent: under emulation and load libvirt may report the agent
        "not available for now" for a while. It gives up when the domain is gone or at the deadline."""
        while True:
            try:
                return self._call(command, arguments)
            except AgentError:
                if time.monotonic() > deadline or not self._alive():
                    raise
                time.sleep(1)

    def ping(self, timeout: int = 2) -> None:
        self._call("guest-ping", timeout=timeout)

    def execute(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> ExecRecord:
        """Run argv in the guest with a hard time limit, returning its exit code and output."""
        limit = max(1, int(timeout))
        limited = ["timeout", "-k", "10", f"{limit}", *argv]
        args: dict = {"path": limited[0], "arg": limited[1:], "capture-output": True}
        if stdin is not None:
            args["input-data"] = base64.b64encode(stdin).decode()
        started = time.monotonic()
        deadline = started + timeout + _GRACE_SECONDS
        pid = self._patient_call("guest-exec", args, min(deadline, started + _GRACE_SECONDS))["pid"]
        # Poll fast at first, then every quarter second: a command's end is seen at most that late
        # (half a second made cells cost up to 0.5 s more than their command), for a few cheap
        # agent calls a second.
        delay = 0.02
        while True:
            status = self._patient_call("guest-exec-status", {"pid": pid}, deadline)
            if status.get("exited"):
                break
            if time.monotonic() > deadline:
                raise AgentError(f"guest stopped answering: {argv[0]} still running {timeout + _GRACE_SECONDS:.0f}s after start")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        duration = time.monotonic() - started
        code = status.get("exitcode")
        if code is None and "signal" in status:
            code = 128 + int(status["signal"])
        return ExecRecord(
            argv=argv,
            exit_code=code,
            stdout=_output(status, "out"),
            stderr=_output(status, "err"),
            duration=duration,
            timed_out=limit_reached(code, duration, limit),
        )


def _output(status: dict, stream: str) -> str:
    data = status.get(f"{stream}-data")
    text = base64.b64decode(data).decode("utf-8", errors="replace") if data else ""
    return text + ("\n[output truncated by the guest agent]" if status.get(f"{stream}-truncated") else "")
