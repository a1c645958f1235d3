"""Writes results.json atomically after every finished cell, so no finished cell is ever lost; reads
it back only when it is valid against its schema."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import jsonschema

from harness.results.model import RunResults
from harness.results.schema import results_schema


class ResultsError(Exception):
    """A results file that cannot be read; str() is one line naming the file and what is wrong."""


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so a reader (or a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 would stay on the file, and a web server publishing the reports could
    # not read them; created 0666 here, the umask gives it the mode of any file the user writes.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
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
    """The results in `path`; ResultsError when it cannot be read, is not JSON, or is not results."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read it: {exc.strerror}") from None
    except ValueError as exc:
        raise ResultsError(f"{path}: not JSON ({exc}); a truncated or damaged results file?") from None
    if not isinstance(data, dict) or data.get("schema_version") != results_schema()["properties"]["schema_version"]["const"]:
        version = data.get("schema_version") if isinstance(data, dict) else None
        raise ResultsError(f"{path}: not a results file of schema version {results_schema()['properties']['schema_version']['const']} (schema_version {version!r})")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(results_schema()).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise ResultsError(f"{path}: {where}: {error.message}")
    return RunResults.from_json(data)
