"""Live progress: which phase each host is in (building, booting, loading, scenario k of n) and an ETA.

Whoever does the work (the plain pytest process, or each xdist worker) appends one JSON line per
phase change to reports/progress.jsonl; the controller tails that file and prints a line per change.
A file, because xdist workers cannot write to the terminal, and because `tail -f` works on it too.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class ProgressEvent:
    t: float
    host: str
    phase: str  # building, waiting (for a hypervisor slot), booting, loading, checking, scenario, moving (its hypervisor was lost), done
    detail: str = ""
    step: int = 0  # for "scenario": k of n
    steps: int = 0


class ProgressLog:
    """Appends events; one short write per line with O_APPEND, so writers from several processes interleave whole lines."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, host: str, phase: str, detail: str = "", step: int = 0, steps: int = 0) -> None:
        line = json.dumps(asdict(ProgressEvent(time.time(), host, phase, detail, step, steps))) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class ProgressBoard:
    """What each host is doing, and how long its remaining scenarios should take at its own pace."""

    hosts: dict[str, ProgressEvent] = field(default_factory=dict)
    first_scenario: dict[str, ProgressEvent] = field(default_factory=dict)

    def eta(self, host: str, now: float) -> float | None:
        """Seconds left for the host's cells: its mean time per scenario so far times those left."""
        event, first = self.hosts.get(host), self.first_scenario.get(host)
        if event is None or first is None or event.phase != "scenario" or event.step <= first.step:
            return None
        per_cell = (event.t - first.t) / (event.step - first.step)
        return max(0.0, per_cell * (event.steps - event.step + 1) - (now - event.t))

    def update(self, event: ProgressEvent) -> str:
        """Take an event; return the line to show for it."""
        self.hosts[event.host] = event
        if event.phase == "scenario":
            self.first_scenario.setdefault(event.host, event)
        what = f"{event.phase} {event.detail}".strip()
        if event.steps:
            what = f"scenario {event.step} of {event.steps}: {event.detail}"
        etas = [e for h in self.hosts if (e := self.eta(h, event.t)) is not None]
        tail = f"  (ETA {_duration(max(etas))})" if etas else ""
        return f"[{time.strftime('%H:%M:%S', time.localtime(event.t))}] {event.host}: {what}{tail}"


class ProgressPrinter:
    """Tails a progress log in a thread and hands each event's line to `write`."""

    def __init__(self, path: Path, write: Callable[[str], None], interval: float = 0.5):
        self.path, self.write, self.interval = path, write, interval
        self.board = ProgressBoard()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="harness-progress", daemon=True)
        self._offset = 0

    def start(self) -> None:
        self._offset = self.path.stat().st_size if self.path.exists() else 0  # only this run's events
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._drain()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._drain()

    def _drain(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            try:
                event = ProgressEvent(**json.loads(line))
            except (ValueError, TypeError):
                continue
            self.write(self.board.update(event))
