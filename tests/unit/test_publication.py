"""Which architectures an image is built and published for: those of the run's selected hosts."""

from __future__ import annotations

import pytest

import harness.session as session_module
from harness.config.load import load_matrix
from harness.registry.publish import Publication
from harness.results.model import ImageRecord
from harness.session import MatrixSession
from tests.conftest import write_matrix

MATRIX = """
version: 1
hosts:
  - {name: x86, release: bookworm, arch: amd64, engine: podman}
  - {name: arm, release: bookworm, arch: arm64, engine: podman}
images:
  - {name: base, release: bookworm}
  - {name: arm-only, release: bookworm, arches: [arm64]}
scenarios: [useradd]
"""


@pytest.fixture
def published(tmp_path, repo_root, monkeypatch):
    """A session whose builds and pushes only record what they were asked for."""
    (tmp_path / "scenarios").symlink_to(repo_root / "scenarios")
    (tmp_path / "vms").symlink_to(repo_root / "vms")
    session = MatrixSession(load_matrix(write_matrix(tmp_path, MATRIX)), "r1", tmp_path / "reports", tmp_path / "cache")
    asked: dict[str, list] = {"built": [], "index": []}

    def build(name: str, arch: str):
        asked["built"].append((name, arch))
        session.image_records.setdefault(name, ImageRecord(name, "bookworm"))
        return object()

    def publish(_url, name, builds, index):
        asked["index"].append((name, index))
        return Publication(f"harness/{name}", "c-0", "sha256:0", tuple(sorted(builds)))

    monkeypatch.setattr(session, "_image_or_none", build)
    monkeypatch.setattr(session_module, "publish", publish)
    monkeypatch.setattr(session_module, "registry_url", lambda: "http://127.0.0.1:1")
    return session, asked


def test_a_slice_of_amd64_hosts_builds_no_other_architecture(published):
    session, asked = published
    session.select([("x86", "base", "useradd")])
    assert session.publication("base", "amd64").arches == ("amd64",)
    assert asked == {"built": [("base", "amd64")], "index": [("base", True)]}  # still an index: the image is multi-arch


def test_every_selected_architecture(published):
    session, _ = published
    session.select([("x86", "base", "useradd"), ("arm", "base", "useradd")])
    assert session.publication("base", "arm64").arches == ("amd64", "arm64")


def test_the_images_own_architectures_when_no_selected_host_has_one(published):
    session, asked = published
    session.select([("x86", "arm-only", "useradd")])
    assert session.publication("arm-only", "amd64").arches == ("arm64",)  # the amd64 host finds no amd64 in it
    assert asked["index"] == [("arm-only", False)]
