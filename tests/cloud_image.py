"""A disk built the way distributions build their cloud images, from Debian packages (no other
distribution's archive can be reached here): a GPT disk with an EFI system partition holding GRUB
as the removable-media boot loader, an ext4 root with systemd, cloud-init, qemu-guest-agent and
podman, shipped as qcow2. Nothing of the harness is in it: the harness must find its way in
through the firmware, the NoCloud seed and the guest agent, as with a RHEL, Fedora or Ubuntu image.

Cached like the harness's own builds (BuildCache), so a second test run reuses it.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

from harness.cache import BuildCache, digest_of
from harness.config.model import DEFAULT_MIRROR
from harness.mmdebstrap import mmdebstrap_argv, run_logged

FORMAT = 2
ESP_MIB = 64
FREE_MIB = 3072  # room for images and containers
ROOT_UUID = "6a4b0c52-1d2e-4f3a-9b8c-0d1e2f3a4b5c"  # fixed, so the disk's recipe says everything

EFI = {  # Debian arch -> (GRUB platform, removable-media file name, serial console)
    "amd64": ("x86_64-efi", "BOOTX64.EFI", "ttyS0"),
    "arm64": ("arm64-efi", "BOOTAA64.EFI", "ttyAMA0"),
}
PACKAGES = {
    "amd64": ["linux-image-cloud-amd64", "grub-efi-amd64-bin", "grub2-common"],
    "arm64": ["linux-image-cloud-arm64", "grub-efi-arm64-bin", "grub2-common"],
}
COMMON = [
    "systemd-sysv", "udev", "dbus", "initramfs-tools", "cloud-init", "qemu-guest-agent",
    "podman", "conmon", "catatonit", "crun", "iproute2", "procps", "kmod", "util-linux", "mount", "e2fsprogs",
]
GRUB_MODULES = "part_gpt fat ext2 normal linux search search_fs_uuid configfile echo gzio test efi_gop"


def recipe(release: str, arch: str, cloud_init: bool = True) -> dict:
    packages = [p for p in COMMON if cloud_init or p != "cloud-init"]
    return {"format": FORMAT, "release": release, "arch": arch, "packages": sorted(packages + PACKAGES[arch]), "root_uuid": ROOT_UUID}


def cloud_image(cache_root: Path, release: str, arch: str, mirror: str = DEFAULT_MIRROR, cloud_init: bool = True) -> Path:
    """The qcow2 disk (built now, or taken from the cache). cloud_init=False: a disk that only runs
    the guest agent (Debian's starts it when its virtio port appears), as some appliances ship."""
    spec = recipe(release, arch, cloud_init)

    def build(tmp: Path, log: Path) -> None:
        rootfs = tmp / "rootfs"
        run_logged(mmdebstrap_argv(release, arch, spec["packages"], rootfs, mirror), log, f"cloud image {release}/{arch}")
        platform, loader, console = EFI[arch]
        kernel = sorted((rootfs / "boot").glob("vmlinuz-*"))[-1].name
        initrd = "initrd.img-" + kernel.removeprefix("vmlinuz-")
        if not (rootfs / "boot" / initrd).exists():
            run_logged(["chroot", str(rootfs), "update-initramfs", "-c", "-k", kernel.removeprefix("vmlinuz-")], log, "initramfs")
        (rootfs / "boot/grub").mkdir(parents=True, exist_ok=True)
        # As grub-install leaves it: the modules beside grub.cfg, and /etc/default/grub for
        # update-grub, which rewrites grub.cfg in the running guest (the harness's cgroup setting).
        shutil.copytree(rootfs / "usr/lib/grub" / platform, rootfs / "boot/grub" / platform)
        (rootfs / "etc/default/grub").write_text(
            f'GRUB_DEFAULT=0\nGRUB_TIMEOUT=0\nGRUB_DISTRIBUTOR=Debian\nGRUB_CMDLINE_LINUX_DEFAULT="console={console} panic=1"\nGRUB_CMDLINE_LINUX=""\nGRUB_DISABLE_OS_PROBER=true\n')
        (rootfs / "boot/grub/grub.cfg").write_text(
            "set timeout=0\n"
            f"linux /boot/{kernel} root=UUID={ROOT_UUID} ro console={console} panic=1\n"
            f"initrd /boot/{initrd}\nboot\n"
        )
        (rootfs / "etc/fstab").write_text(f"UUID={ROOT_UUID} / ext4 defaults 0 1\n")
        (rootfs / "etc/hostname").write_text("debian-cloud\n")
        (rootfs / "etc/systemd/network").mkdir(parents=True, exist_ok=True)
        (rootfs / "etc/systemd/network/80-dhcp.network").write_text("[Match]\nName=en*\n\n[Network]\nDHCP=yes\n")
        run_logged(["chroot", str(rootfs), "systemctl", "enable", "systemd-networkd"], log, "networkd")
        # The removable-media path, which firmware boots without any boot entry in NVRAM.
        (rootfs / "tmp/early.cfg").write_text(f"search --no-floppy --fs-uuid --set=root {ROOT_UUID}\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n")
        run_logged(["chroot", str(rootfs), "grub-mkimage", "-O", platform, "-o", f"/tmp/{loader}", "-p", "/boot/grub", "-c", "/tmp/early.cfg", *GRUB_MODULES.split()], log, "grub")
        shutil.move(rootfs / "tmp" / loader, tmp / loader)
        (rootfs / "tmp/early.cfg").unlink()

        esp, root, raw = tmp / "esp.img", tmp / "root.img", tmp / "disk.raw"
        run_logged(["mkfs.vfat", "-n", "ESP", "-C", str(esp), str(ESP_MIB * 1024)], log, "esp")
        run_logged(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], log, "esp")
        run_logged(["mcopy", "-i", str(esp), str(tmp / loader), f"::/EFI/BOOT/{loader}"], log, "esp")
        used = int(subprocess.run(["du", "-sm", str(rootfs)], capture_output=True, text=True, check=True).stdout.split()[0])
        root_mib = used + FREE_MIB
        run_logged(["mkfs.ext4", "-q", "-F", "-U", ROOT_UUID, "-L", "cloudimg-rootfs", "-d", str(rootfs), str(root), f"{root_mib}M"], log, "root")
        shutil.rmtree(rootfs)
        with open(raw, "wb") as fh:
            fh.truncate((1 + ESP_MIB + root_mib + 1) * 1024 * 1024)
        table = (
            "label: gpt\n"
            f"start=2048, size={ESP_MIB * 2048}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid={uuid.UUID(int=1)}\n"
            f"start={2048 + ESP_MIB * 2048}, size={root_mib * 2048}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid={uuid.UUID(int=2)}\n"
        )
        subprocess.run(["sfdisk", "-q", str(raw)], input=table, text=True, check=True, capture_output=True)
        for part, offset_mib in ((esp, 1), (root, 1 + ESP_MIB)):
            run_logged(["dd", f"if={part}", f"of={raw}", "bs=1M", f"seek={offset_mib}", "conv=notrunc,sparse", "status=none"], log, "disk")
            part.unlink()
        run_logged(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp / "disk.qcow2")], log, "qcow2")
        raw.unlink()
        (tmp / loader).unlink()

    directory, _ = BuildCache(cache_root, "cloud-images").get_or_build(digest_of(spec), spec, build)
    return directory / "disk.qcow2"


if __name__ == "__main__":  # build one by hand: python -m tests.cloud_image RELEASE ARCH CACHE_ROOT
    import sys

    print(cloud_image(Path(sys.argv[3]), sys.argv[1], sys.argv[2]))
