"""The harness's own initramfs: busybox, the few modules that reach the root disk, and a stage-1 init.

Debian's initramfs (udev, scripts, fsck) took most of a host's boot under emulation. Ours loads the
virtio modules, mounts the root disk and hands over to the harness init, so a host boots in about
the time its kernel needs to reach a minimal busybox init.

The part that depends on the host's tree (busybox and modules) is built with the host and cached;
the harness's own scripts are appended per boot as a second cpio archive (the kernel unpacks
concatenated archives in order), so changing them never rebuilds a host.
"""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

from harness.mmdebstrap import BuildError

# What stage 1 needs to find the root disk on any of the platforms (built-in ones are skipped), and the
# guest agent's port, so stage 2 finds it at once.
BOOT_MODULES = ("virtio_pci", "virtio_mmio", "virtio_ccw", "virtio_blk", "virtio_console", "ext4")
DECOMPRESS = {".xz": lzma.decompress, ".gz": gzip.decompress}


def newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the kernel's "newc" format; entries are (path, mode, data), directories
    and symlinks included (a symlink's data is its target)."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def _module_name(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name[: name.index(".ko")].replace("-", "_")


def boot_modules(modules_dir: Path) -> list[Path]:
    """The module files stage 1 loads, dependencies first, from a kernel's /lib/modules/<version>."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        module, _, needs = line.partition(":")
        deps[_module_name(module)] = (module, needs.split())
    order: list[str] = []
    for wanted in BOOT_MODULES:
        if wanted not in deps:
            continue  # built into this kernel, or not on this platform
        module, needs = deps[wanted]
        for path in [*reversed(needs), module]:  # modprobe's order: the list's end first
            if path not in order:
                order.append(path)
    return [modules_dir / path for path in order]


def _plain(module: Path) -> bytes:
    data = module.read_bytes()
    if module.suffix == ".ko":
        return data
    if module.suffix not in DECOMPRESS:
        raise BuildError(f"kernel module {module.name}: compression {module.suffix} is not supported")
    return DECOMPRESS[module.suffix](data)


def build_base(rootfs: Path, target: Path) -> None:
    """The cached part, from a host's tree: its static busybox and its boot modules."""
    busybox = next((p for p in (rootfs / "usr/bin/busybox", rootfs / "bin/busybox") if p.is_file()), None)
    if busybox is None:
        raise BuildError("the host tree has no /bin/busybox (package busybox-static)")
    versions = sorted((rootfs / "usr/lib/modules").iterdir()) if (rootfs / "usr/lib/modules").is_dir() else sorted((rootfs / "lib/modules").iterdir())
    if len(versions) != 1:
        raise BuildError(f"expected one kernel's modules in the host tree, found {[v.name for v in versions]}")
    modules = boot_modules(versions[0])
    entries = [(d, 0o40755, b"") for d in ("bin", "dev", "proc", "sys", "newroot", "modules", "harness")]
    entries.append(("bin/busybox", 0o100755, busybox.read_bytes()))
    entries.append(("bin/sh", 0o120777, b"busybox"))
    for i, module in enumerate(modules):
        entries.append((f"modules/{i:02d}-{_module_name(module.name)}.ko", 0o100644, _plain(module)))
    target.write_bytes(newc(entries))


def boot_initrd(base: Path, guest_dir: Path, target: Path) -> None:
    """This boot's initrd: the cached base, then stage 1 and the harness init (vms/guest) as they are now."""
    scripts = newc([("init", 0o100755, (guest_dir / "stage1").read_bytes()), ("harness/init", 0o100755, (guest_dir / "init").read_bytes())])
    target.write_bytes(base.read_bytes() + scripts)
