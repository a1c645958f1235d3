"""results.json, kept current while a run goes: every change (a finished cell, a host's or a
delivery's record) is appended at once to results.journal.jsonl beside it, and results.json itself
is rewritten atomically at most every few seconds and at the end, when the journal goes. Reading
applies a journal it finds, so a run killed between two rewrites loses no finished cell; and a
results file is read back only when it is valid against its schema."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

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


def journal_of(path: Path) -> Path:
    """Where the changes not yet in the results file `path` are kept."""
    return path.with_name(path.stem + ".journal.jsonl")


class ResultsWriter:
    """Keeps `path` current with `results` as they change. Rewriting the whole file after every
    cell cost time that grew with the run (at 600 cells, 85 ms per cell: more than a reused cell's
    whole cost); a change appended to the journal costs what the change is."""

    def __init__(self, path: Path, results: RunResults, every: float = 5.0):
        self.path, self.results = path, results
        self.every = self.floor = every  # seconds between rewrites; at least ten times a rewrite's own time
        self.saved_at = 0.0
        self._journal: IO[str] | None = None

    def change(self, **parts: dict[str, Any] | str) -> None:
        """Record that these parts of the results changed, e.g. cells={key: cell}; already applied
        to `results`. Durable when this returns."""
        line = {"run_id": self.results.run_id}
        for name, value in parts.items():
            line[name] = value if isinstance(value, str) else {k: asdict(v) for k, v in value.items()}
        if self._journal is None:
            self._journal = open(journal_of(self.path), "a")
        self._journal.write(json.dumps(line, sort_keys=True) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        if time.monotonic() - self.saved_at >= self.every:
            self.save()

    def save(self) -> None:
        """Rewrite the results file with everything; the journal it now holds goes."""
        started = time.monotonic()
        save(self.results, self.path)
        self.discard_journal()
        self.saved_at = time.monotonic()
        self.every = max(self.floor, 10 * (self.saved_at - started))

    def discard_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        journal_of(self.path).unlink(missing_ok=True)


def _replay(data: dict[str, Any], journal: Path) -> None:
    """Apply to a results file's data the changes its journal holds for the same run. A last line
    cut short (the run killed while writing it) is a change that was never finished: left out."""
    try:
        lines = journal.read_text().splitlines()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ResultsError(f"{journal}: cannot read it: {exc.strerror}") from None
    for number, text in enumerate(lines, 1):
        try:
            change = json.loads(text)
        except ValueError:
            if number == len(lines):
                break
            raise ResultsError(f"{journal}: line {number} is not JSON: a damaged journal?") from None
        if not isinstance(change, dict) or change.pop("run_id", None) != data.get("run_id"):
            continue  # another run's (its results file replaced since)
        for name, value in change.items():
            if isinstance(data.get(name), dict) and isinstance(value, dict):
                data[name].update(value)
            else:
                data[name] = value


def load(path: Path) -> RunResults:
    """The results in `path` (with the changes its journal holds); ResultsError when it cannot be
    read, is not JSON, or is not results."""
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
    _replay(data, journal_of(path))
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(results_schema()).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise ResultsError(f"{path}: {where}: {error.message}")
    return RunResults.from_json(data)
