"""Find and remove what runs left behind: libvirt domains (by the owner recorded in their metadata)
and working directories of runs whose harness process is gone."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import libvirt

from harness.daemon import stop_orphaned_daemon
from harness.engines.service import stop_orphaned
from harness.hosts.domain import owner_of
from harness.hosts.files import PER_RUN, POOL_NAME, remove_run_volumes

OWNERS = "owners"


def claim(workdir: Path) -> None:
    """Mark a run's working directory as owned by this process too: the controller and every xdist
    worker claim it, and cleanup leaves a run alone while any of them lives."""
    (workdir / OWNERS).mkdir(parents=True, exist_ok=True)
    (workdir / OWNERS / str(os.getpid())).touch()


def release(workdir: Path) -> None:
    """This process is done with the run (its claim goes; the run's directory stays for the others)."""
    (workdir / OWNERS / str(os.getpid())).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lives(run_dir: Path) -> bool:
    """Whether a process that claimed the run's directory still runs."""
    return any(_alive(int(p.name)) for p in (run_dir / OWNERS).glob("*") if p.name.isdigit())


def live_runs(runs_dir: Path) -> set[str]:
    return {run.name for run in runs_dir.glob("*") if _lives(run)}


@dataclass
class Cleaned:
    domains: list[str] = field(default_factory=list)
    workdirs: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.domains or self.workdirs or self.services or self.volumes)

    def __str__(self) -> str:
        if not self:
            return "nothing left over from earlier runs"
        parts = list(self.services)
        if self.domains:
            parts.append(f"destroyed {len(self.domains)} leftover domain(s): {', '.join(self.domains)}")
        if self.volumes:
            parts.append(f"removed {len(self.volumes)} leftover volume(s) on remote hypervisors: {', '.join(self.volumes)}")
        if self.workdirs:
            parts.append(f"removed {len(self.workdirs)} leftover run directory(ies): {', '.join(self.workdirs)}")
        return "; ".join(parts)


def cleanup(conns: Iterable[libvirt.virConnect], cache_root: Path, keep: set[str] = frozenset()) -> Cleaned:
    """Destroy domains, remove per-run volumes (on remote hypervisors) and work directories of runs
    that are not running any more (nor in `keep`), on every hypervisor of `conns`."""
    runs_dir = cache_root / "runs"
    spare = live_runs(runs_dir) | set(keep)
    cleaned = Cleaned()
    for conn in conns:
        for dom in conn.listAllDomains():
            try:
                owner = owner_of(dom.XMLDesc())
            except libvirt.libvirtError:
                continue  # vanished meanwhile
            if owner is None or owner.run in spare:
                continue
            if owner.run_dir and _lives(Path(owner.run_dir)):  # a live run with another cache directory
                spare.add(owner.run)
                continue
            try:
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefine()
            except libvirt.libvirtError:
                continue
            cleaned.domains.append(dom.name())
        try:
            pool = conn.storagePoolLookupByName(POOL_NAME)
        except libvirt.libvirtError:
            continue  # no harness volumes there (this machine's own hypervisor uses files in place)
        cleaned.volumes += remove_run_volumes(pool, lambda name: not any(name.startswith(f"{PER_RUN}{run}-") for run in spare))
    for run in sorted(runs_dir.glob("*")):
        if run.name not in spare:
            shutil.rmtree(run, ignore_errors=True)
            cleaned.workdirs.append(run.name)
    # The registry is shared by the runs on this machine: one whose starter is gone is stopped only
    # when no other run lives (one may be pulling from it).
    registry = None if live_runs(runs_dir) - set(keep) else stop_orphaned_daemon(cache_root / "registry" / "registry.pid", "the registry")
    for stopped in (stop_orphaned(), registry):
        if stopped:
            cleaned.services.append(stopped)
    return cleaned
