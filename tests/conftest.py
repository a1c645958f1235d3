"""Shared fixtures: the repository root and a way to write small matrices next to real scenarios."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return ROOT


needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman (./setup-machine installs it)")

# The local podman as an engine host; this machine's podman needs runc and explicit ulimits.
LOCAL_PODMAN_HOST = """
  - name: local-podman
    kind: engine
    local: true
    runtime: runc
    ulimits: {nofile: 20000, nproc: 20000}
"""
BOOKWORM_IMAGE = """
  - name: debian-bookworm
    release: bookworm
    packages: [passwd]
"""


def project_copy(directory: Path) -> Path:
    """The project's vms/ and scenarios/ copied beside where a test writes its matrix.yaml."""
    shutil.copytree(ROOT / "vms", directory / "vms")
    shutil.copytree(ROOT / "scenarios", directory / "scenarios")
    return directory


@pytest.fixture
def matrix_dir(tmp_path: Path) -> Path:
    return project_copy(tmp_path)


def write_matrix(directory: Path, text: str, name: str = "matrix.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def add_scenario(scenarios: Path, name: str, script: str, meta: str = "purpose: a test's own scenario\ndimension: engine\n") -> Path:
    """A scenario directory with an executable `run` and its scenario.yaml."""
    directory = scenarios / name
    directory.mkdir(parents=True)
    (directory / "run").write_text(script)
    (directory / "run").chmod(0o755)
    (directory / "scenario.yaml").write_text(meta)
    return directory


def run_harness(directory: Path, run_id: str, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    """`harness run` on directory/matrix.yaml into directory/reports, as a user would; the tail of
    its output is printed, so a failing test shows what the run said."""
    reports = directory / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(directory / "matrix.yaml"), "--reports", str(reports), f"--run-id={run_id}", *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    print(proc.stdout[-5000:], proc.stderr[-3000:])
    return proc, reports


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (a registry's, an sshd's, or one that must refuse)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
