"""The OCI archive writer, checked by its own digests and by a real podman loading and running it."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from harness.images.oci import Layer, write_oci_archive

BUSYBOX = Path("/bin/busybox")


def busybox_rootfs(tmp_path: Path) -> Path:
    """A one-binary root file system: enough for an engine to run a command."""
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        tar.add(BUSYBOX, arcname="./bin/busybox")
        sh = tarfile.TarInfo("./bin/sh")
        sh.type, sh.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(sh)
    return rootfs


def blobs(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.mark.skipif(not BUSYBOX.exists(), reason="needs busybox-static (./setup-machine installs it)")
def test_digests_are_consistent(tmp_path):
    image = write_oci_archive([Layer.of_file(busybox_rootfs(tmp_path))], tmp_path / "i.oci.tar", architecture="amd64", ref_name="t", cmd=["/bin/sh"], labels={"a": "b"})
    files = blobs(tmp_path / "i.oci.tar")
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    index = json.loads(files["index.json"])
    assert index["manifests"][0]["digest"] == image.manifest_digest
    assert index["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}
    manifest = json.loads(files[f"blobs/sha256/{image.manifest_digest[7:]}"])
    assert manifest["config"]["digest"] == image.config_digest
    config = json.loads(files[f"blobs/sha256/{image.config_digest[7:]}"])
    assert config["rootfs"]["diff_ids"] == image.layer_digests
    assert config["config"]["Labels"] == {"a": "b"}


# This machine's podman needs runc and explicit ulimits (crun refuses its hybrid cgroups).
PODMAN_RUN = ["podman", "run", "--rm", "--runtime", "runc", "--network", "none", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=20000:20000"]


@pytest.mark.skipif(shutil.which("podman") is None or not BUSYBOX.exists(), reason="needs podman and busybox-static (./setup-machine installs them)")
def test_real_podman_loads_and_runs_the_archive(tmp_path):
    archive = tmp_path / "i.oci.tar"
    image = write_oci_archive([Layer.of_file(busybox_rootfs(tmp_path))], archive, architecture="amd64", ref_name="harness-oci-test", cmd=["/bin/sh"], labels={})
    load = subprocess.run(["podman", "load", "--input", str(archive)], capture_output=True, text=True)
    assert load.returncode == 0, load.stderr
    try:
        inspect = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}} {{.Architecture}}", image.config_digest], capture_output=True, text=True)
        assert inspect.stdout.split() == [image.config_digest.removeprefix("sha256:"), "amd64"], inspect.stderr
        run = subprocess.run([*PODMAN_RUN, image.config_digest, "/bin/sh", "-c", "echo hello from $(uname -m)"], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "hello from x86_64"
    finally:
        subprocess.run(["podman", "rmi", "--force", image.config_digest], capture_output=True)
