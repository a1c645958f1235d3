"""Earlier runs' outputs, kept: a run writes into the reports directory, and what the run before it
wrote there moves to reports/runs/<its run id>/ first, so no run destroys another's results. A run
that records no cell (a mistyped -k) puts them back, leaving the directory as it found it."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

# What a run writes into its reports directory (its progress.jsonl is appended to, and stays).
OUTPUTS = ("results.json", "results.journal.jsonl", "matrix.html", "support.html", "diff.html", "junit.xml", "hosts")
# Copied, not moved: a later run's cells reused from the result cache link their host's evidence
# where it was written; a host that boots again overwrites its own.
COPIED = ("hosts",)


def _run_id(reports: Path) -> str:
    try:
        return str(json.loads((reports / "results.json").read_text())["run_id"]).replace("/", "_")
    except (OSError, ValueError, KeyError, TypeError):
        stamp = datetime.fromtimestamp((reports / "results.json").stat().st_mtime, timezone.utc)
        return stamp.strftime("unreadable-%Y%m%d-%H%M%S")


def keep_previous(reports: Path) -> Path | None:
    """Move the previous run's outputs to reports/runs/<run id>/; returns where, or None."""
    if not (reports / "results.json").exists():
        return None
    kept = reports / "runs" / _run_id(reports)
    kept.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        if (reports / name).exists():
            shutil.rmtree(kept / name, ignore_errors=True)
            if name in COPIED:
                shutil.copytree(reports / name, kept / name)
            else:
                (reports / name).replace(kept / name)
    return kept


def put_back(reports: Path, kept: Path) -> None:
    """This run recorded nothing: the previous run's outputs return where they were."""
    for name in OUTPUTS:
        if (kept / name).exists() and name not in COPIED:
            (kept / name).replace(reports / name)
    shutil.rmtree(kept, ignore_errors=True)
