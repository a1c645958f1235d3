"""An application layer computed as the difference of two root file systems: checked entry by entry,
and by a real podman that stacks it on the base layer and runs the result."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from harness.images.layers import write_diff_layer
from harness.images.oci import Layer, write_oci_archive
from tests.unit.test_oci import BUSYBOX, PODMAN_RUN


def _tree(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None, dirs: tuple[str, ...] = ()) -> Path:
    """A root file system tar with busybox as /bin/sh, the given directories, files and hard links."""
    with tarfile.open(path, "w") as tar:
        for d in ("./bin", "./etc", *dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="./bin/busybox")
        sh = tarfile.TarInfo("./bin/sh")
        sh.type, sh.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(sh)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.LNKTYPE, target
            tar.addfile(info)
    return path


@pytest.fixture
def layers(tmp_path):
    base = _tree(tmp_path / "base.tar", {"./etc/kept": b"same\n", "./etc/changed": b"old\n", "./etc/gone": b"x\n", "./opt/old/file": b"y\n"}, dirs=("./opt", "./opt/old"))
    full = _tree(
        tmp_path / "full.tar",
        {"./etc/kept": b"same\n", "./etc/changed": b"new\n", "./usr/app/bin": b"app\n"},
        links={"./usr/app/alias": "./usr/app/bin"},
        dirs=("./opt", "./usr", "./usr/app"),
    )
    upper = tmp_path / "upper.tar"
    write_diff_layer(base, full, upper)
    return base, upper


@pytest.mark.skipif(not BUSYBOX.exists(), reason="needs busybox-static")
def test_the_layer_holds_only_the_difference(layers):
    _, upper = layers
    with tarfile.open(upper) as tar:
        names = sorted(m.name for m in tar)
    assert names == sorted(["./etc", "./etc/changed", "./etc/.wh.gone", "./opt/.wh.old", "./usr", "./usr/app", "./usr/app/bin", "./usr/app/alias"])


@pytest.mark.skipif(shutil.which("podman") is None or not BUSYBOX.exists(), reason="needs podman and busybox-static")
def test_real_podman_stacks_the_layer_on_its_base(layers, tmp_path):
    base, upper = layers
    archive = tmp_path / "app.oci.tar"
    image = write_oci_archive([Layer.of_file(base), Layer.of_file(upper)], archive, architecture="amd64", ref_name="harness-layer-test", cmd=["/bin/sh"], labels={})
    assert subprocess.run(["podman", "load", "--input", str(archive)], capture_output=True).returncode == 0
    try:
        script = "cat /etc/kept /etc/changed /usr/app/alias; ls /etc/gone /opt/old 2>&1 | wc -l"
        run = subprocess.run([*PODMAN_RUN, image.config_digest, "/bin/sh", "-c", script], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == ["same", "new", "app", "2"]  # two "No such file" lines
    finally:
        subprocess.run(["podman", "rmi", "--force", image.config_digest], capture_output=True)
