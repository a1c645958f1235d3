"""What a run's processes share, passed to whatever needs it instead of set in the environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.config.model import HypervisorSpec
from harness.progress import ProgressLog


@dataclass(frozen=True)
class RunContext:
    run_id: str
    cache_root: Path
    reports: Path
    hypervisors: tuple[HypervisorSpec, ...]  # the pool this run places VM hosts on
    registry: str | None = None  # the run's registry (http://127.0.0.1:PORT), None when it has none
    progress: ProgressLog | None = None
    # VM hosts' kept image stores (hosts/store.py): "warm" boots with what earlier runs pulled,
    # "fresh" with an empty store (every image pulled; kept afterwards), "off" with none.
    image_stores: str = "warm"

    @property
    def workdir(self) -> Path:
        """This run's working files: <cache>/runs/<run id>."""
        return self.cache_root / "runs" / self.run_id

    def phase(self, host: str, phase: str, detail: str = "", step: int = 0, steps: int = 0) -> None:
        """Tell the progress sink (if any) what a host is doing."""
        if self.progress is not None:
            self.progress.emit(host, phase, detail, step, steps)
