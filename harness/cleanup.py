"""Find and remove what runs left behind: libvirt domains (by the owner recorded in their metadata)
and working directories of runs whose harness process is gone."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

import libvirt

from harness.daemon import stop_orphaned_daemon
from harness.registry.server import in_use
from harness.hosts.kinds import DRIVERS
from harness.runs import Cleaned, live_runs


def cleanup(conns: Iterable[libvirt.virConnect], cache_root: Path, keep: set[str] = frozenset()) -> Cleaned:
    """Remove what runs that are not running any more (nor in `keep`) left: each host kind's
    leftovers (its driver says what they are) on every hypervisor of `conns`, the runs' working
    directories, and the registry when no run uses it."""
    runs_dir = cache_root / "runs"
    spare = live_runs(runs_dir) | set(keep)
    cleaned = Cleaned()
    for driver in DRIVERS.values():
        driver.cleanup(conns, cache_root, spare, cleaned)
    for run in sorted(runs_dir.glob("*")):
        if run.name not in spare:
            shutil.rmtree(run, ignore_errors=True)
            cleaned.workdirs.append(run.name)
    # The registry is shared by the runs on this machine: one whose starter is gone is stopped only
    # when no other run of this cache lives, nor a run of another cache claims it (one may be pulling).
    if not live_runs(runs_dir) - set(keep):
        for pid_file in sorted(cache_root.glob("registry*/registry.pid")):
            if in_use(pid_file.parent):
                continue
            if stopped := stop_orphaned_daemon(pid_file, "the registry"):
                cleaned.services.append(stopped)
    return cleaned
