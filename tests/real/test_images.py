"""Candidate images for real: built twice from the Debian archive with the same bytes, judged for
freshness against the real security archive, and layered images run by the local podman through the
harness, with their facts in results.json and the report."""

from __future__ import annotations

import json
import os

import pytest

from harness.cache import BuildCache, default_root
from harness.config.model import ImageSpec
from harness.images.build import build_image
from harness.images.freshness import freshness_of
from tests.conftest import LOCAL_PODMAN_HOST, needs_podman, project_copy, run_harness, write_matrix

MIRROR = "http://deb.debian.org/debian"


def test_the_same_recipe_from_the_same_archive_gives_the_same_image(tmp_path):
    spec = ImageSpec("debian-bookworm-min", "bookworm", (), ("/bin/bash",))
    first, _ = build_image(spec, "amd64", MIRROR, BuildCache(tmp_path / "one", "images"))
    second, _ = build_image(spec, "amd64", MIRROR, BuildCache(tmp_path / "two", "images"))
    assert (first.image_id, first.manifest_digest) == (second.image_id, second.manifest_digest)
    assert first.created == second.created and first.labels["org.opencontainers.image.created"].startswith(first.created[:10])


def test_an_image_never_updated_is_graded_against_the_real_security_archive():
    """bullseye as first released (no -security, no -updates) against bullseye-security today."""
    spec = ImageSpec("bullseye-as-released", "bullseye", ("passwd",), ("/bin/bash",), updates=False)
    build, _ = build_image(spec, "amd64", MIRROR, BuildCache(default_root(), "images"))
    assert build.labels["org.debian.sources"] == f"deb {MIRROR} bullseye main"
    fresh = freshness_of(build.installed(), "bullseye", "amd64", MIRROR, default_root() / "archive-indexes")
    assert fresh.error == "" and fresh.checked == build.package_count > 50
    assert fresh.against == "http://deb.debian.org/debian-security bullseye-security"
    assert fresh.outdated == len(fresh.updates) > 0 and fresh.grade != "A", fresh
    assert any(u.startswith("libc6 ") or u.startswith("libsystemd0 ") for u in fresh.updates), fresh.updates


MATRIX = f"""
version: 1
retries: 0
hosts:{LOCAL_PODMAN_HOST}images:
  - {{name: debian-bookworm, release: bookworm, packages: [passwd]}}
  - {{name: bookworm-python3, base: debian-bookworm, packages: [python3]}}
  - {{name: bookworm-jre, base: debian-bookworm, packages: [default-jre-headless]}}
scenarios: [python-runtime, jvm-container-limits]
"""


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    directory = project_copy(tmp_path_factory.mktemp("layered"))
    write_matrix(directory, MATRIX)
    proc, reports = run_harness(directory, f"layered-{os.getpid()}", "--quiet")
    return proc, reports, json.loads((reports / "results.json").read_text())


@needs_podman
def test_layered_application_images_run(layered):
    _, _, results = layered
    cells = results["cells"]
    assert cells["local-podman/bookworm-python3/python-runtime"]["outcome"] == "pass", cells["local-podman/bookworm-python3/python-runtime"]
    jvm = cells["local-podman/bookworm-jre/jvm-container-limits"]
    assert jvm["outcome"] == "pass" and "Memory Limit: 256.00M" in jvm["stdout"], jvm
    assert cells["local-podman/debian-bookworm/python-runtime"]["outcome"] == "not-applicable"


@needs_podman
def test_image_facts_are_recorded_and_shown(layered):
    _, reports, results = layered
    base = results["images"]["debian-bookworm"]["builds"]["amd64"]
    app = results["images"]["bookworm-jre"]["builds"]["amd64"]
    assert (base["layers"], app["layers"]) == (1, 2) and app["size"] > base["size"]
    assert base["glibc"].startswith("2.36-") and base["debian_version"].startswith("12.")
    assert app["package_count"] > base["package_count"] > 50
    assert app["labels"]["org.opencontainers.image.version"].startswith("default-jre-headless ")
    assert app["labels"]["org.opencontainers.image.base.name"] == "debian-bookworm"
    for build in (base, app):
        assert build["freshness"]["grade"] in "ABCDF" and build["freshness"]["checked"] == build["package_count"]
    html = (reports / "matrix.html").read_text()
    row = html.split('id="build-bookworm-jre-amd64"')[1].split("</tr>")[0]
    assert "linux/amd64" in row and app["glibc"] in row and f"{app['freshness']['outdated']} of {app['package_count']} outdated" in row


def test_an_architecture_the_archive_dropped_is_named_before_any_build(tmp_path):
    """bullseye is in LTS: the real archive's bullseye lists no ppc64el any more, and its build says
    so at once, naming the suite and what it does list, instead of failing inside mmdebstrap."""
    from harness.mmdebstrap import BuildError

    spec = ImageSpec("debian-bullseye", "bullseye", ("passwd",), ("/bin/sh",))
    with pytest.raises(BuildError) as caught:
        build_image(spec, "ppc64el", "http://deb.debian.org/debian", BuildCache(tmp_path, "images"))
    assert "image debian-bullseye for ppc64el: http://deb.debian.org/debian has no ppc64el in bullseye (its architectures: all amd64 arm64" in str(caught.value)
