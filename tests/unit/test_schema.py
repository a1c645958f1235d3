"""matrix.yaml validation: every mistake is one line naming file, line and key path."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.config.load import MatrixError, load_matrix
from tests.conftest import write_matrix

GOOD = """
version: 1
hosts:
  - name: h1
    release: bookworm
    arch: amd64
    engine: podman
  - name: h2
    release: trixie
    arch: arm64
    engine: podman
    runtime: runc
images:
  - name: img
    release: bookworm
scenarios:
  - useradd
"""


def problems_of(path) -> list[str]:
    with pytest.raises(MatrixError) as info:
        load_matrix(path)
    return info.value.problems


def test_default_matrix_is_valid(repo_root):
    matrix = load_matrix(repo_root / "matrix.yaml")
    assert {h.arch for h in matrix.hosts} >= {"amd64", "arm64"}
    assert len({h.release for h in matrix.hosts}) >= 2
    assert matrix.scenario("useradd").script.name == "run"


def test_good_matrix_loads_with_defaults(matrix_dir):
    matrix = load_matrix(write_matrix(matrix_dir, GOOD))
    assert matrix.host("h1").runtime == "crun"
    assert matrix.host("h2").runtime == "runc"
    assert matrix.host("h2").qemu_arch == "aarch64"
    assert matrix.image("img").cmd == ("/bin/bash",)


def test_bad_arch_names_file_line_and_path(matrix_dir, monkeypatch):
    monkeypatch.chdir(matrix_dir)
    path = write_matrix(matrix_dir, GOOD.replace("arch: arm64", "arch: arm"))
    assert problems_of(path) == ["matrix.yaml:9: hosts[1].arch: 'arm' is not one of amd64, arm64, ppc64el, s390x"]


@pytest.mark.parametrize(
    "change, expected",
    [
        (("    runtime: runc", "    runtime: runc\n    colour: red"), ":12: hosts[1].colour: unknown key"),
        (("    engine: podman\n  - name: h2", "  - name: h2"), ":3: hosts[0]: missing required key 'engine'"),
        (("version: 1", "version: 2"), ":1: version: unsupported matrix version 2"),
        (("release: trixie", "release: jessie"), ":8: hosts[1].release: 'jessie' is not one of bullseye, bookworm, trixie"),
        (("name: h2", "name: h1"), ":7: hosts[1].name: duplicate host name 'h1'"),
        (("  - useradd", "  - nosuch"), ":16: scenarios[0]: scenario 'nosuch' not found"),
        (("hosts:", "hosts: [\n"), "YAML syntax error"),
    ],
)
def test_mistakes_are_one_clear_line(matrix_dir, change, expected):
    path = write_matrix(matrix_dir, GOOD.replace(*change))
    problems = problems_of(path)
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert problems[0].startswith(str(os.path.relpath(path))) or problems[0].startswith(str(path))


def test_non_executable_scenario(matrix_dir):
    (matrix_dir / "scenarios" / "useradd" / "run").chmod(0o644)
    problems = problems_of(write_matrix(matrix_dir, GOOD))
    assert "scenario 'useradd' has no executable" in problems[0]


def test_cli_validate_prints_one_line_and_no_traceback(matrix_dir):
    path = write_matrix(matrix_dir, GOOD.replace("arch: arm64", "arch: arm"))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "validate", str(path)], capture_output=True, text=True, cwd=matrix_dir)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "matrix.yaml:9: hosts[1].arch: 'arm' is not one of amd64, arm64, ppc64el, s390x"
    assert "Traceback" not in proc.stderr


def test_cli_run_rejects_bad_matrix_before_anything_boots(matrix_dir):
    path = write_matrix(matrix_dir, GOOD.replace("engine: podman\n  - name: h2", "engine: podmn\n  - name: h2"))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(path)], capture_output=True, text=True, cwd=matrix_dir)
    assert proc.returncode == 2
    assert "hosts[0].engine: 'podmn' is not one of podman" in proc.stderr
    assert "Traceback" not in proc.stderr
