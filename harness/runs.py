"""A run's working directory under the cache (<cache>/runs/<run id>/) and who still uses it.

Every process of a run (the controller and each xdist worker) claims the directory; cleanup leaves
a run alone while any of them lives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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


def lives(run_dir: Path) -> bool:
    """Whether a process that claimed the run's directory still runs."""
    return any(_alive(int(p.name)) for p in (run_dir / OWNERS).glob("*") if p.name.isdigit())


def live_runs(runs_dir: Path) -> set[str]:
    return {run.name for run in runs_dir.glob("*") if lives(run)}


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
