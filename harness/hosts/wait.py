"""Composable "host ready" checks, after testcontainers' WaitStrategy.wait_until_ready.

Each strategy polls one sign of life and fails fast when the domain dies, instead of waiting out
the whole timeout for a guest that has already crashed.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Callable

import libvirt

from harness.hosts.agent import AgentError, GuestAgent


class WaitTimeout(Exception):
    """The host did not show the awaited sign of life in time (or died first)."""


class WaitStrategy(ABC):
    interval = 0.25

    @abstractmethod
    def ready(self) -> bool:
        """One poll: True once the sign of life is there."""

    @abstractmethod
    def describe(self) -> str:
        """What was awaited, for the timeout message."""

    def wait_until_ready(self, domain: libvirt.virDomain, timeout: float) -> float:
        """Poll until ready; return the seconds waited, or raise WaitTimeout."""
        start = time.monotonic()
        while True:
            if self.ready():
                return time.monotonic() - start
            try:
                alive = domain.isActive()
            except libvirt.libvirtError:
                alive = False
            if not alive:
                raise WaitTimeout(f"the domain stopped while waiting for {self.describe()}")
            if time.monotonic() - start > timeout:
                raise WaitTimeout(f"no {self.describe()} within {timeout:.0f}s")
            time.sleep(self.interval)


class ConsoleSpeaks(WaitStrategy):
    """The guest printed anything on its serial console (used to judge whether KVM works)."""

    def __init__(self, console_text: Callable[[], str]):
        self.console_text = console_text

    def ready(self) -> bool:
        return bool(self.console_text())

    def describe(self) -> str:
        return "console output"


class AgentAnswers(WaitStrategy):
    """The QEMU guest agent answers a ping: the host can take commands."""

    def __init__(self, agent: GuestAgent):
        self.agent = agent

    def ready(self) -> bool:
        try:
            self.agent.ping(timeout=2)
            return True
        except AgentError:
            return False

    def describe(self) -> str:
        return "answer from the guest agent"


class CommandSucceeds(WaitStrategy):
    """A command run through the guest agent exits 0: a daemon (dockerd) is up behind its socket."""

    interval = 1.0

    def __init__(self, agent: GuestAgent, argv: list[str]):
        self.agent, self.argv = agent, argv

    def ready(self) -> bool:
        try:
            return self.agent.execute(self.argv, timeout=30).exit_code == 0
        except AgentError:
            return False

    def describe(self) -> str:
        return f"success of `{' '.join(self.argv)}`"
