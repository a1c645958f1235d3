"""Writes results.json atomically after every finished cell, so no finished cell is ever lost."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from harness.results.model import RunResults


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so a reader (or a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save(results: RunResults, path: Path) -> None:
    write_atomically(path, json.dumps(results.to_json(), indent=1, sort_keys=True))


def load(path: Path) -> RunResults:
    return RunResults.from_json(json.loads(Path(path).read_text()))
