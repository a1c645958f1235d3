"""Images taken from files: OCI archives (an index of two platforms) and docker archives, taken
into the build cache as they are, with their facts read from their layers."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pytest

from harness.cache import BuildCache
from harness.config.load import MatrixError, load_matrix
from harness.images.imported import ArchiveError, archive_arches, import_archive
from tests.archives import config, layer, write_docker, write_oci
from tests.conftest import write_matrix

STATUS = b"Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u9\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"


def two_platforms(tmp_path):
    base = layer({"etc/debian_version": b"12.8\n", "var/lib/dpkg/status": STATUS})
    app = layer({"srv/app": b"#!/bin/sh\necho hi\n"})
    images = {arch: (config(arch, {"org.example.pipeline": "42"}, [base, app]), [base, app]) for arch in ("amd64", "arm64")}
    path = tmp_path / "app.oci.tar"
    return path, write_oci(path, images)


def spec_of(tmp_path, kind: str, path):
    write_matrix(tmp_path, f"version: 1\nhosts:\n  - {{name: h, release: bookworm, arch: amd64, engine: podman}}\nimages:\n  - {{name: app, {kind}: {path.name}}}\nscenarios: [useradd]\n")
    return load_matrix(tmp_path / "matrix.yaml").image("app")


def test_an_oci_archive_keeps_each_platforms_manifest_and_its_facts(tmp_path, repo_root):
    (tmp_path / "scenarios").symlink_to(repo_root / "scenarios")
    path, manifests = two_platforms(tmp_path)
    spec = spec_of(tmp_path, "oci-archive", path)
    assert archive_arches(path, "oci-archive") == ("amd64", "arm64") and spec.archive == str(path)
    cache = BuildCache(tmp_path / "cache", "images")
    build, taken = import_archive(spec, "arm64", cache)
    again, taken_again = import_archive(spec, "arm64", cache)
    assert taken and not taken_again and again.digest == build.digest
    assert build.manifest_digest == manifests["arm64"] and build.layers == 2
    assert (build.debian_version, build.glibc, build.package_count) == ("12.8", "2.36-9+deb12u9", 1)
    assert build.labels == {"org.example.pipeline": "42"} and build.installed() == {"libc6": "2.36-9+deb12u9"}
    with tarfile.open(build.archive) as tar:  # one of the harness's own archives: one manifest, byte for byte
        (descriptor,) = json.loads(tar.extractfile("index.json").read())["manifests"]
        assert descriptor["digest"] == manifests["arm64"] and descriptor["platform"]["architecture"] == "arm64"


def test_a_docker_archive_gets_a_manifest_and_keeps_its_image_id(tmp_path, repo_root):
    (tmp_path / "scenarios").symlink_to(repo_root / "scenarios")
    base = layer({"etc/debian_version": b"13.1\n", "var/lib/dpkg/status": STATUS})
    image_id = write_docker(tmp_path / "app.docker.tar", config("amd64", {}, [base]), [base])
    build, _ = import_archive(spec_of(tmp_path, "docker-archive", tmp_path / "app.docker.tar"), "amd64", BuildCache(tmp_path / "cache", "images"))
    assert build.image_id == image_id and build.debian_version == "13.1" and build.manifest_digest.startswith("sha256:")


def test_a_file_that_is_not_an_image_archive_is_one_line(tmp_path, repo_root):
    (tmp_path / "scenarios").symlink_to(repo_root / "scenarios")
    (tmp_path / "notes.tar").write_bytes(b"not a tar at all")
    with pytest.raises(ArchiveError, match=r"notes.tar is not an OCI archive \(a tar of an OCI layout with index.json\)"):
        archive_arches(tmp_path / "notes.tar", "oci-archive")
    spec_of(tmp_path, "oci-archive", tmp_path / "notes.tar")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "validate", str(tmp_path / "matrix.yaml")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "image app:" in proc.stderr and "is not an OCI archive" in proc.stderr


def test_an_archive_that_is_missing_or_given_twice_is_a_matrix_error(tmp_path, repo_root):
    (tmp_path / "scenarios").symlink_to(repo_root / "scenarios")
    write_matrix(tmp_path, "version: 1\nhosts:\n  - {name: h, release: bookworm, arch: amd64, engine: podman}\nimages:\n  - {name: app, oci-archive: gone.tar, reference: 'r.example/a:1'}\nscenarios: [useradd]\n")
    with pytest.raises(MatrixError) as caught:
        load_matrix(tmp_path / "matrix.yaml")
    said = str(caught.value)
    assert "give one of reference, oci-archive, docker-archive" in said and "gone.tar is not a file" in said
