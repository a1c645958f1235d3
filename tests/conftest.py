"""Shared fixtures: the repository root and a way to write small matrices next to real scenarios."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def matrix_dir(tmp_path: Path) -> Path:
    """A directory with the project's vms/ and scenarios/ beside where a test writes matrix.yaml."""
    shutil.copytree(ROOT / "vms", tmp_path / "vms")
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios")
    return tmp_path


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
