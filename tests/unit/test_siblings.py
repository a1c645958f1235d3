"""Host-level blame from the matrix's own cells on hosts that differ in exactly one setting."""

from __future__ import annotations

import shutil

from harness.cells.siblings import siblings, with_siblings
from harness.config.load import load_matrix
from harness.results.model import CellResult, Layer, Outcome, RunResults, Verdict
from tests.conftest import write_matrix

MATRIX = """
version: 1
hosts:
  - {name: podman, release: bookworm, arch: amd64, engine: podman, runtime: runc}
  - {name: docker, release: bookworm, arch: amd64, engine: docker, runtime: runc}
  - {name: v1-and-nolsm, release: bookworm, arch: amd64, engine: podman, runtime: runc, cgroup: v1, lsm: none}
  - {name: arm, release: bookworm, arch: arm64, engine: docker, runtime: runc}
images:
  - {name: img, release: bookworm}
scenarios: [useradd]
"""


def test_a_failure_that_passes_under_the_other_engine_is_blamed_on_the_engine(tmp_path, repo_root):
    shutil.copytree(repo_root / "vms", tmp_path / "vms")
    (tmp_path / "scenarios").symlink_to(repo_root / "scenarios")
    matrix = load_matrix(write_matrix(tmp_path, MATRIX))
    assert siblings(matrix, "podman") == [("docker", "engine")]  # two settings apart, or another arch: no sibling
    results = RunResults("r", "m", "t", "0")
    for host, outcome in (("podman", Outcome.FAIL), ("docker", Outcome.PASS), ("v1-and-nolsm", Outcome.PASS)):
        results.cells[f"{host}/img/useradd"] = CellResult(host, "img", "useradd", outcome, 1.0)
    found = with_siblings(matrix, results, Verdict(Layer.IMAGE, "the image or the scenario: ...", ["podman/img/useradd"]))
    assert found.layer == Layer.ENGINE and found.summary == "engine: passes on docker (engine docker instead of podman)"
    assert found.confirmed is None and "not confirmed" in found.confirmation
    kept = with_siblings(matrix, results, Verdict(Layer.SECCOMP, "seccomp: passes with seccomp=unconfined", ["podman/img/useradd"], confirmed=True))
    assert kept.layer == Layer.SECCOMP and kept.siblings == ["pass on docker (engine docker instead of podman)"]
