"""The harness's initramfs: a valid newc archive, and the boot modules in a loadable order."""

from __future__ import annotations

import subprocess

from harness.hosts.initramfs import boot_modules, newc


def test_newc_archive_unpacks_with_a_real_cpio(tmp_path):
    archive = newc([("dir", 0o40755, b""), ("dir/file", 0o100644, b"hello\n"), ("link", 0o120777, b"dir/file")])
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["busybox", "cpio", "-id"], input=archive, cwd=out, check=True, capture_output=True)
    assert (out / "dir/file").read_text() == "hello\n" and (out / "link").readlink().as_posix() == "dir/file"


def test_boot_modules_come_with_their_dependencies_first(tmp_path):
    (tmp_path / "modules.dep").write_text(
        "kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz kernel/drivers/virtio/virtio.ko.xz\n"
        "kernel/drivers/virtio/virtio_pci.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz kernel/drivers/virtio/virtio.ko.xz\n"
        "kernel/drivers/virtio/virtio_ring.ko.xz: kernel/drivers/virtio/virtio.ko.xz\n"
        "kernel/drivers/virtio/virtio.ko.xz:\n"
        "kernel/fs/unrelated.ko.xz:\n"
    )
    names = [p.name for p in boot_modules(tmp_path)]
    assert names == ["virtio.ko.xz", "virtio_ring.ko.xz", "virtio_pci.ko.xz", "virtio_blk.ko.xz"]


def test_the_base_is_read_out_of_a_root_disk(tmp_path):
    """As for a bullseye host: /lib/modules, not merged into /usr; busybox and the boot modules only."""
    from harness.hosts.initramfs import base_from_disk

    tree = tmp_path / "tree"
    modules = tree / "lib/modules/5.10.0-test"
    (modules / "kernel").mkdir(parents=True)
    (modules / "modules.dep").write_text("kernel/virtio_blk.ko: kernel/virtio.ko\nkernel/virtio.ko:\nkernel/sound.ko:\n")
    for name in ("virtio_blk", "virtio", "sound"):
        (modules / "kernel" / f"{name}.ko").write_bytes(name.encode())
    (tree / "bin").mkdir()
    (tree / "bin/busybox").write_bytes(b"busybox binary")
    disk = tmp_path / "root.img"
    subprocess.run(["mkfs.ext4", "-q", "-d", str(tree), str(disk), "8M"], check=True)
    base_from_disk(disk, tmp_path / "base.cpio")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["busybox", "cpio", "-id"], input=(tmp_path / "base.cpio").read_bytes(), cwd=out, check=True, capture_output=True)
    assert sorted(p.name for p in (out / "modules").iterdir()) == ["00-virtio.ko", "01-virtio_blk.ko"]
    assert (out / "bin/busybox").read_bytes() == b"busybox binary"
