"""The result cache's keys: two cells share a verdict only when everything that ran was the same."""

from __future__ import annotations

import shutil

import pytest

from harness.cache import tree_digest
from harness.cells.cache import CellKeys
from harness.config.load import load_matrix
from harness.context import RunContext
from harness.hosts.kinds.vm import VmKind
from harness.session import RunSession
from tests.conftest import write_matrix

MATRIX = """
version: 1
hosts:
  - {name: plain, release: bookworm, arch: amd64, engine: podman, runtime: runc}
  - {name: cgroup1, release: bookworm, arch: amd64, engine: podman, runtime: runc, cgroup: v1}
  - {name: nolsm, release: bookworm, arch: amd64, engine: podman, runtime: runc, lsm: none}
  - {name: nehalem, release: bookworm, arch: amd64, engine: podman, runtime: runc, cpu: Nehalem}
  - {name: trixie-kernel, release: bookworm, arch: amd64, engine: podman, runtime: runc, kernel: trixie}
  - {name: cmdline, release: bookworm, arch: amd64, engine: podman, runtime: runc, kernel_cmdline: "quiet"}
images:
  - {name: img, release: bookworm}
  - {name: app-2.1, reference: "127.0.0.1:9/vendor/app:2.1"}
  - {name: app-9.9, reference: "127.0.0.1:9/vendor/app:9.9"}
scenarios: [useradd, threads]
"""


@pytest.fixture
def matrix(tmp_path, repo_root):
    shutil.copytree(repo_root / "vms", tmp_path / "vms")
    (tmp_path / "scenarios").symlink_to(repo_root / "scenarios")
    return load_matrix(write_matrix(tmp_path, MATRIX))


def key(matrix, host: str, image: str = "img", scenario: str = "useradd", digest: str = "") -> str:
    return CellKeys(matrix, lambda spec: VmKind.cache_key(spec, matrix)).key(host, image, scenario, digest)


def test_hosts_that_differ_in_one_boot_setting_never_share_a_verdict(matrix):
    """bookworm-amd64 and bookworm-amd64-cgroup1 have the same disk recipe; cgroup v1 is set at boot."""
    keys = {name: key(matrix, name) for name in ("plain", "cgroup1", "nolsm", "nehalem", "trixie-kernel", "cmdline")}
    assert len(set(keys.values())) == len(keys), keys
    assert key(matrix, "plain") == key(matrix, "plain")


def test_the_guest_scripts_are_in_the_key(matrix):
    before = key(matrix, "plain")
    (matrix.vms_dir / "guest" / "init").write_text((matrix.vms_dir / "guest" / "init").read_text() + "\n# changed\n")
    assert key(matrix, "plain") != before


def test_two_references_that_differ_only_in_their_tag_have_two_keys(matrix):
    assert key(matrix, "plain", "app-2.1", digest="sha256:i sha256:m") != key(matrix, "plain", "app-9.9", digest="sha256:i sha256:m")
    assert key(matrix, "plain", "app-2.1", digest="sha256:i sha256:m") != key(matrix, "plain", "app-2.1", digest="sha256:j sha256:n")  # re-pushed tag


def test_a_reference_whose_registry_cannot_be_read_keeps_and_takes_no_verdict(matrix, tmp_path):
    session = RunSession(matrix, RunContext("r", tmp_path / "cache", tmp_path / "reports", ()))
    assert session.settings("plain", "app-2.1", "useradd").cache_key == ""
    assert session.settings("plain", "img", "useradd").cache_key == key(matrix, "plain")


def test_scenarios_and_retries_are_in_the_key(matrix):
    from dataclasses import replace

    assert key(matrix, "plain", scenario="useradd") != key(matrix, "plain", scenario="threads")
    more_retries = replace(matrix, retries=matrix.retries + 1)
    assert key(more_retries, "plain") != key(matrix, "plain")


def test_a_change_to_any_file_changes_a_trees_digest(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "judge.py").write_text("x = 1\n")
    before = tree_digest(tmp_path)
    (tmp_path / "a" / "judge.py").write_text("x = 2\n")
    assert tree_digest(tmp_path) != before


def test_a_built_images_manifest_is_in_the_key_once_it_is_built(matrix):
    assert key(matrix, "plain", digest="") != key(matrix, "plain", digest="sha256:" + "1" * 64)
    assert key(matrix, "plain", digest="sha256:" + "1" * 64) != key(matrix, "plain", digest="sha256:" + "2" * 64)  # rebuilt


def test_a_run_reads_each_hosts_recipe_and_each_scenario_once_not_once_per_cell(matrix, tmp_path, monkeypatch):
    """A VM host's recipe is recipes.yaml parsed (25 ms); read per cell, it was most of the time of
    a rerun that reused every cell (a minute of the default matrix's 2,352 cells)."""
    import harness.cells.cache as cell_cache
    import harness.hosts.build as build

    cell_cache.harness_digest()  # once per process, whichever test asks first
    parsed, digested = [], []
    monkeypatch.setattr(build.yaml, "safe_load", lambda text, load=build.yaml.safe_load: parsed.append(1) or load(text))
    monkeypatch.setattr(cell_cache, "tree_digest", lambda root, digest=cell_cache.tree_digest: digested.append(root) or digest(root))
    session = RunSession(matrix, RunContext("r", tmp_path / "cache", tmp_path / "reports", ()))
    keys = {session.settings(host, "img", scenario).cache_key for host in ("plain", "cgroup1") for scenario in ("useradd", "threads") for _ in range(3)}
    assert len(keys) == 4
    assert len(parsed) == 2  # one recipe per host
    assert sorted(map(str, digested)) == sorted(str(matrix.scenario(s).path) for s in ("useradd", "threads"))
    assert session.settings("plain", "img", "useradd").cache_key == key(matrix, "plain")  # the same key as one computed alone
