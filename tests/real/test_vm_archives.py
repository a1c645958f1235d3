"""Images given as files, for real: an OCI archive with a nested index of two platforms and a
docker archive, made here from a real Debian build with a label of their own (as a pipeline's
would be), delivered through the run's registry and pulled by a VM host's own podman."""

from __future__ import annotations

import json
import os

import pytest

from harness.cache import BuildCache, default_root
from harness.config.load import load_matrix
from harness.images.build import build_image
from tests.archives import digest, harness_image, write_docker, write_oci
from tests.conftest import BOOKWORM_IMAGE, add_scenario, project_copy, run_harness, write_matrix

pytestmark = pytest.mark.vm

MATRIX = """
version: 1
retries: 0
hosts:
  - {name: bookworm-amd64, release: bookworm, arch: amd64, engine: podman, runtime: crun}
images:
  - {name: from-oci, oci-archive: pipeline/app.oci.tar}
  - {name: from-docker, docker-archive: pipeline/app.docker.tar, release: bookworm}
scenarios: [which-debian]
"""


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    directory = project_copy(tmp_path_factory.mktemp("archives"))
    # The catalogue's debian-bookworm (from the build cache), relabelled as a pipeline's image.
    write_matrix(directory, f"version: 1\nhosts:\n  - {{name: h, release: bookworm, arch: amd64, engine: podman}}\nimages:{BOOKWORM_IMAGE}scenarios: [useradd]\n", "base.yaml")
    build, _ = build_image(load_matrix(directory / "base.yaml").image("debian-bookworm"), "amd64", "http://deb.debian.org/debian", BuildCache(default_root(), "images"))
    config, layers = harness_image(build.archive)
    (directory / "pipeline").mkdir()

    def relabelled(arch: str, label: str) -> bytes:
        return json.dumps({**config, "architecture": arch, "config": {**config["config"], "Labels": {**config["config"].get("Labels", {}), "org.example.pipeline": label}}}).encode()

    manifests = write_oci(directory / "pipeline" / "app.oci.tar", {"amd64": (relabelled("amd64", "oci-42"), layers), "arm64": (relabelled("arm64", "oci-42"), layers)})
    docker_id = write_docker(directory / "pipeline" / "app.docker.tar", relabelled("amd64", "docker-7"), layers)
    add_scenario(directory / "scenarios", "which-debian", "#!/bin/sh\necho \"debian $(cat /etc/debian_version)\"\n")
    write_matrix(directory, MATRIX)
    proc, reports = run_harness(directory, f"archives-{os.getpid()}", "--quiet")
    return proc, json.loads((reports / "results.json").read_text()), manifests, docker_id, relabelled("amd64", "oci-42"), build


def test_both_archives_run_on_the_host_pulled_from_the_runs_registry(archives):
    proc, data, _, docker_id, oci_config, build = archives
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    for image, image_id in (("from-oci", digest(oci_config)), ("from-docker", docker_id)):
        cell = data["cells"][f"bookworm-amd64/{image}/which-debian"]
        assert cell["outcome"] == "pass" and f"debian {build.debian_version}" in cell["stdout"], cell
        delivery = data["deliveries"][f"bookworm-amd64/{image}"]
        # The image ID is what the guest's podman reports for what it pulled: the archive's config.
        assert delivery["method"] == "pull" and delivery["image_id"].removeprefix("sha256:") == image_id.removeprefix("sha256:"), delivery
        assert "10.0.2.2:" in delivery["reference"], delivery


def test_an_oci_archives_manifest_and_facts_are_its_own(archives):
    _, data, manifests, _, _, build = archives
    image = data["images"]["from-oci"]
    amd64 = image["builds"]["amd64"]
    assert image["source"].startswith("oci-archive ") and image["source"].endswith("pipeline/app.oci.tar")
    assert amd64["manifest_digest"] == manifests["amd64"] and amd64["labels"]["org.example.pipeline"] == "oci-42"
    assert amd64["debian_version"] == build.debian_version and amd64["package_count"] == build.package_count
    docker = data["images"]["from-docker"]["builds"]["amd64"]
    assert docker["labels"]["org.example.pipeline"] == "docker-7" and docker["freshness"]["grade"], docker
