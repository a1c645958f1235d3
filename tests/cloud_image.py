"""A disk built the way distributions build their cloud images, from Debian packages (no other
distribution's archive can be reached here): partitioned, with the boot loader each architecture's
firmware expects, an ext4 root with systemd, cloud-init, qemu-guest-agent and podman, shipped as
qcow2. Nothing of the harness is in it: the harness must find its way in through the firmware, the
NoCloud seed and the guest agent, as with a RHEL, Fedora or Ubuntu image.

Boot loaders, as those distributions install them:
- amd64, arm64: a GPT disk whose EFI system partition holds GRUB at the removable-media path;
- ppc64el: a GPT disk whose PReP boot partition holds GRUB's powerpc-ieee1275 core image (SLOF
  loads it, as grub-install does it on POWER);
- s390x: a DOS-labelled disk made IPL-able by zipl (s390-tools), told the disk's geometry through
  its target options, as image builders (kiwi) do it for a disk that is not a DASD.

Cached like the harness's own builds (BuildCache), so a second test run reuses it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.cache import BuildCache, digest_of
from harness.config.model import DEFAULT_MIRROR
from harness.mmdebstrap import mmdebstrap_argv, run_logged

FORMAT = 2  # amd64 and arm64 disks are byte-for-byte what format 2 built
FREE_MIB = 3072  # room for images and containers
ROOT_UUID = "6a4b0c52-1d2e-4f3a-9b8c-0d1e2f3a4b5c"  # fixed, so the disk's recipe says everything
LINUX_GUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


@dataclass(frozen=True)
class Loader:
    """How one architecture's disk boots: its boot partition (empty for s390x, where zipl writes
    the IPL record into the disk's first block), GRUB's platform and image, the serial console."""

    packages: tuple[str, ...]
    console: str
    grub_platform: str = ""
    grub_image: str = ""  # the file the firmware loads
    boot_mib: int = 0
    boot_guid: str = ""


LOADERS = {
    "amd64": Loader(("linux-image-cloud-amd64", "grub-efi-amd64-bin", "grub2-common"), "ttyS0", "x86_64-efi", "BOOTX64.EFI", 64, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
    "arm64": Loader(("linux-image-cloud-arm64", "grub-efi-arm64-bin", "grub2-common"), "ttyAMA0", "arm64-efi", "BOOTAA64.EFI", 64, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
    "ppc64el": Loader(("linux-image-powerpc64le", "grub-ieee1275-bin", "grub2-common"), "hvc0", "powerpc-ieee1275", "core.elf", 8, "9E1A2D38-C612-4316-AA26-8B49521E5A8B"),
    "s390x": Loader(("linux-image-s390x", "s390-tools"), "ttysclp0"),
}
COMMON = [
    "systemd-sysv", "udev", "dbus", "initramfs-tools", "cloud-init", "qemu-guest-agent",
    "podman", "conmon", "catatonit", "crun", "iproute2", "procps", "kmod", "util-linux", "mount", "e2fsprogs",
]
GRUB_MODULES = {
    "efi": "part_gpt fat ext2 normal linux search search_fs_uuid configfile echo gzio test efi_gop",
    "powerpc-ieee1275": "part_gpt part_msdos ext2 normal linux search search_fs_uuid configfile echo gzio test",
}


def recipe(release: str, arch: str, cloud_init: bool = True) -> dict:
    packages = [p for p in COMMON if cloud_init or p != "cloud-init"]
    return {"format": FORMAT, "release": release, "arch": arch, "packages": sorted(packages + list(LOADERS[arch].packages)), "root_uuid": ROOT_UUID}


def _kernel(rootfs: Path) -> tuple[str, str]:
    """The kernel's and initrd's file names in /boot (ppc64el ships an uncompressed vmlinux)."""
    kernel = sorted((rootfs / "boot").glob("vmlinu[xz]-*"))[-1].name
    return kernel, "initrd.img-" + kernel.split("-", 1)[1]


def _grub(rootfs: Path, tmp: Path, loader: Loader, cmdline: str, log: Path) -> Path:
    """GRUB as grub-install leaves it: its modules beside grub.cfg, /etc/default/grub for
    update-grub (which rewrites grub.cfg in the running guest: the harness's cgroup setting), and
    a core image that finds the root by its UUID."""
    kernel, initrd = _kernel(rootfs)
    (rootfs / "boot/grub").mkdir(parents=True, exist_ok=True)
    shutil.copytree(rootfs / "usr/lib/grub" / loader.grub_platform, rootfs / "boot/grub" / loader.grub_platform)
    (rootfs / "etc/default/grub").write_text(
        f'GRUB_DEFAULT=0\nGRUB_TIMEOUT=0\nGRUB_DISTRIBUTOR=Debian\nGRUB_CMDLINE_LINUX_DEFAULT="{cmdline}"\nGRUB_CMDLINE_LINUX=""\nGRUB_DISABLE_OS_PROBER=true\n')
    (rootfs / "boot/grub/grub.cfg").write_text(f"set timeout=0\nlinux /boot/{kernel} root=UUID={ROOT_UUID} ro {cmdline}\ninitrd /boot/{initrd}\nboot\n")
    (rootfs / "tmp/early.cfg").write_text(f"search --no-floppy --fs-uuid --set=root {ROOT_UUID}\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n")
    modules = GRUB_MODULES["efi" if loader.grub_platform.endswith("-efi") else loader.grub_platform]
    run_logged(["chroot", str(rootfs), "grub-mkimage", "-O", loader.grub_platform, "-o", f"/tmp/{loader.grub_image}", "-p", "/boot/grub", "-c", "/tmp/early.cfg", *modules.split()], log, "grub")
    (rootfs / "tmp/early.cfg").unlink()
    image = tmp / loader.grub_image
    shutil.move(rootfs / "tmp" / loader.grub_image, image)
    return image


def _boot_partition(tmp: Path, loader: Loader, grub_image: Path, log: Path) -> Path:
    """The partition's content: an EFI system partition (FAT) with GRUB at the removable-media
    path, which firmware boots without any entry in NVRAM; or the PReP partition, which is the
    core image itself."""
    if loader.grub_platform == "powerpc-ieee1275":
        return grub_image
    esp = tmp / "esp.img"
    run_logged(["mkfs.vfat", "-n", "ESP", "-C", str(esp), str(loader.boot_mib * 1024)], log, "esp")
    run_logged(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], log, "esp")
    run_logged(["mcopy", "-i", str(esp), str(grub_image), f"::/EFI/BOOT/{loader.grub_image}"], log, "esp")
    return esp


def _zipl_conf(rootfs: Path, cmdline: str, target: str = "") -> str:
    """zipl's configuration; `target` adds the options that describe a disk image (a loop device)
    whose type zipl cannot ask the kernel for."""
    kernel, initrd = _kernel(rootfs)
    geometry = f"targetbase={target}\ntargettype=SCSI\ntargetblocksize=512\ntargetoffset=2048\n" if target else ""
    return (
        "[defaultboot]\ndefault=debian\n"
        f"[debian]\ntarget=/boot/zipl\n{geometry}image=/boot/{kernel}\nramdisk=/boot/{initrd}\nparameters=\"root=UUID={ROOT_UUID} ro {cmdline}\"\n"
    )


@contextlib.contextmanager
def _loop(raw: Path, *options: str) -> Iterator[str]:
    loop = subprocess.run(["losetup", "--find", "--show", *options, str(raw)], capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield loop
    finally:
        subprocess.run(["losetup", "-d", loop], capture_output=True)


@contextlib.contextmanager
def _mounted_root(raw: Path, log: Path) -> Iterator[tuple[str, Path]]:
    """The whole disk on one loop device (zipl's target), its root partition on another (no udev
    here makes partition nodes), mounted with /dev and /proc for zipl."""
    mnt = raw.parent / "mnt"
    mnt.mkdir()
    with _loop(raw) as disk, _loop(raw, "--offset", str(2048 * 512)) as root:
        run_logged(["mount", root, str(mnt)], log, "mount")
        try:
            run_logged(["mount", "--bind", "/dev", str(mnt / "dev")], log, "mount")
            run_logged(["mount", "-t", "proc", "proc", str(mnt / "proc")], log, "mount")
            yield disk, mnt
        finally:
            for path in (mnt / "proc", mnt / "dev", mnt):
                subprocess.run(["umount", str(path)], capture_output=True)


def _zipl(raw: Path, cmdline: str, log: Path) -> None:
    """The IPL record in the disk's first block and the boot map in /boot/zipl, as zipl writes them."""
    with _mounted_root(raw, log) as (disk, mnt):
        (mnt / "tmp/zipl-image.conf").write_text(_zipl_conf(mnt, cmdline, disk))
        run_logged(["chroot", str(mnt), "zipl", "--verbose", "--config", "/tmp/zipl-image.conf"], log, "zipl")
        (mnt / "tmp/zipl-image.conf").unlink()


def cloud_image(cache_root: Path, release: str, arch: str, mirror: str = DEFAULT_MIRROR, cloud_init: bool = True) -> Path:
    """The qcow2 disk (built now, or taken from the cache). cloud_init=False: a disk that only runs
    the guest agent (Debian's starts it when its virtio port appears), as some appliances ship."""
    spec = recipe(release, arch, cloud_init)
    loader = LOADERS[arch]
    cmdline = f"console={loader.console} panic=1"

    def build(tmp: Path, log: Path) -> None:
        rootfs = tmp / "rootfs"
        run_logged(mmdebstrap_argv(release, arch, spec["packages"], rootfs, mirror), log, f"cloud image {release}/{arch}")
        kernel, initrd = _kernel(rootfs)
        if not (rootfs / "boot" / initrd).exists():
            run_logged(["chroot", str(rootfs), "update-initramfs", "-c", "-k", kernel.split("-", 1)[1]], log, "initramfs")
        boot = _boot_partition(tmp, loader, _grub(rootfs, tmp, loader, cmdline, log), log) if loader.grub_platform else None
        if arch == "s390x":  # the configuration the guest's own zipl reads (a kernel update, the harness's cgroup setting)
            (rootfs / "etc/zipl.conf").write_text(_zipl_conf(rootfs, cmdline))
            (rootfs / "boot/zipl").mkdir(exist_ok=True)  # where zipl writes its boot map
        (rootfs / "etc/fstab").write_text(f"UUID={ROOT_UUID} / ext4 defaults 0 1\n")
        (rootfs / "etc/hostname").write_text("debian-cloud\n")
        (rootfs / "etc/systemd/network").mkdir(parents=True, exist_ok=True)
        (rootfs / "etc/systemd/network/80-dhcp.network").write_text("[Match]\nName=en*\n\n[Network]\nDHCP=yes\n")
        run_logged(["chroot", str(rootfs), "systemctl", "enable", "systemd-networkd"], log, "networkd")

        root, raw = tmp / "root.img", tmp / "disk.raw"
        used = int(subprocess.run(["du", "-sm", str(rootfs)], capture_output=True, text=True, check=True).stdout.split()[0])
        root_mib = used + FREE_MIB
        run_logged(["mkfs.ext4", "-q", "-F", "-U", ROOT_UUID, "-L", "cloudimg-rootfs", "-d", str(rootfs), str(root), f"{root_mib}M"], log, "root")
        shutil.rmtree(rootfs)
        with open(raw, "wb") as fh:
            fh.truncate((1 + loader.boot_mib + root_mib + 1) * 1024 * 1024)
        parts = ([(boot, loader.boot_mib, loader.boot_guid)] if boot else []) + [(root, root_mib, LINUX_GUID)]
        if boot:
            table = "label: gpt\n" + "".join(
                f"start={2048 * (1 + sum(p[1] for p in parts[:i]))}, size={mib * 2048}, type={guid}, uuid={uuid.UUID(int=i + 1)}\n"
                for i, (_, mib, guid) in enumerate(parts))
        else:
            table = f"label: dos\nstart=2048, size={root_mib * 2048}, type=83\n"
        subprocess.run(["sfdisk", "-q", str(raw)], input=table, text=True, check=True, capture_output=True)
        for i, (part, _, _) in enumerate(parts):
            offset_mib = 1 + sum(p[1] for p in parts[:i])
            run_logged(["dd", f"if={part}", f"of={raw}", "bs=1M", f"seek={offset_mib}", "conv=notrunc,sparse", "status=none"], log, "disk")
            part.unlink()
        if arch == "s390x":
            _zipl(raw, cmdline, log)
        run_logged(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp / "disk.qcow2")], log, "qcow2")
        raw.unlink()

    directory, _ = BuildCache(cache_root, "cloud-images").get_or_build(digest_of(spec), spec, build)
    return directory / "disk.qcow2"


if __name__ == "__main__":  # build one by hand: python -m tests.cloud_image RELEASE ARCH CACHE_ROOT
    import sys

    print(cloud_image(Path(sys.argv[3]), sys.argv[1], sys.argv[2]))
