"""Image test suites as they exist in the wild, each test a scenario column run on the host.

The one layout read so far is docker-library/official-images' `test/`: a directory `tests/` holding
one directory per test, whose executable `run.sh IMAGE` drives the engine itself (`docker run`,
`docker build`), and whose optional `expected-std-out.txt` is the stdout the test must print. Tests
may call their suite's helpers (`../run-in-container.sh`), so the whole `tests/` directory goes onto
the delivery disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from harness.config.model import ScenarioSpec

FORMATS = ("official-images",)
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # a scenario's name, as the matrix's schema takes it
EXPECTED = "expected-std-out.txt"

Problem = Callable[[list, str], str]  # (where in the matrix, message) -> "file:line: where: message"


def _tests_dir(root: Path) -> Path | None:
    """The suite's tests/ directory: `root/tests` (official-images' `test/` given), or `root`
    itself when it already is one (some test directory with a run.sh in it)."""
    for candidate in (root / "tests", root):
        if candidate.is_dir() and any((d / "run.sh").is_file() for d in candidate.iterdir() if d.is_dir()):
            return candidate
    return None


def load_suite(entry: dict, index: int, base: Path, problem: Problem) -> tuple[list[ScenarioSpec], list[str]]:
    """The scenarios of one `suites:` entry, or the problems that stop it (one line each)."""
    where = ["suites", index]
    root = (base / os.path.expanduser(entry["path"])).resolve()
    if not root.is_dir():
        return [], [problem([*where, "path"], f"suite {entry['path']!r}: no directory {root}")]
    tests_dir = _tests_dir(root)
    if tests_dir is None:
        return [], [problem([*where, "path"], f"suite {entry['path']!r} is not in the {entry['format']} layout: no tests/<name>/run.sh under {root}")]
    names = entry.get("tests") or sorted(d.name for d in tests_dir.iterdir() if (d / "run.sh").is_file())
    scenarios, problems = [], []
    for name in names:
        test = tests_dir / name
        script = test / "run.sh"
        if not NAME.match(name):
            problems.append(problem([*where, "tests"], f"suite test {name!r}: not usable as a scenario name (lower case letters, digits, '.', '_', '-')"))
        elif not script.is_file():
            problems.append(problem([*where, "tests"], f"suite test {name!r}: no {script}"))
        elif not os.access(script, os.X_OK):
            problems.append(problem([*where, "tests"], f"suite test {name!r}: {script} is not executable (chmod +x it)"))
        else:
            expected = test / EXPECTED
            scenarios.append(ScenarioSpec(
                name=name,
                path=test,
                script=script,
                purpose=f"{entry['format']} test {name} of {root}",
                timeout=float(entry["timeout"]) if "timeout" in entry else None,
                dimension="application",
                mode="host",
                suite_root=tests_dir,
                expected_stdout=expected.read_text() if expected.is_file() else None,
                image_as=entry.get("image_as", ScenarioSpec.image_as),
            ))
    return scenarios, problems
