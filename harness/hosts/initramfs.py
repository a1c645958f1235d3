"""The harness's own initramfs: busybox, the few modules that reach the root disk, and a stage-1 init.

Debian's initramfs (udev, scripts, fsck) took most of a host's boot under emulation. Ours loads the
virtio modules, mounts the root disk and hands over to the harness init, so a host boots in about
the time its kernel needs to reach a minimal busybox init.

The part that depends on the host's tree (busybox and modules) is read out of the host's built root
disk with debugfs and cached by the host's digest and the module list, so changing the list never
rebuilds a host; the harness's own scripts are appended per boot as a second cpio archive (the
kernel unpacks concatenated archives in order).
"""

from __future__ import annotations

import gzip
import lzma
import subprocess
import tempfile
from pathlib import Path

from harness.cache import BuildCache, digest_of
from harness.mmdebstrap import BuildError

# What stage 1 needs to find and mount the root disk on any of the platforms (built-in ones are
# skipped): virtio, ext4 and the crc32c that ext4's metadata checksums need (a module on ppc64el and
# s390x, with their accelerated variants); and the guest agent's port, so stage 2 finds it at once.
BOOT_MODULES = (
    "virtio_pci", "virtio_mmio", "virtio_ccw", "virtio_blk", "virtio_console",
    "crc32c_generic", "crc32c_vpmsum", "crc32c_vx", "crc32c_intel", "ext4",
)
# Bump when what goes into the base changes.
BASE_FORMAT = 2
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


def _debugfs(disk: Path, command: str) -> str:
    return subprocess.run(["debugfs", "-R", command, str(disk)], capture_output=True, text=True).stdout


def _dump(disk: Path, source: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    _debugfs(disk, f'dump "{source}" "{target}"')
    if not target.exists():
        raise BuildError(f"{source} is not on the root disk {disk}")


def base_from_disk(disk: Path, target: Path) -> None:
    """The base, from a built root disk: busybox, modules.dep and the boot modules, read with debugfs."""
    with tempfile.TemporaryDirectory(prefix="initramfs-") as tmp:
        tree = Path(tmp)
        modules_root = next((d for d in ("/usr/lib/modules", "/lib/modules") if _debugfs(disk, f"ls -p {d}").strip()), None)
        if modules_root is None:
            raise BuildError(f"no kernel modules on the root disk {disk}")
        versions = [line.split("/")[5] for line in _debugfs(disk, f"ls -p {modules_root}").splitlines() if line.count("/") >= 6]
        versions = [v for v in versions if v not in (".", "..")]
        if len(versions) != 1:
            raise BuildError(f"expected one kernel's modules on {disk}, found {versions}")
        local = tree / "usr/lib/modules" / versions[0]
        _dump(disk, f"{modules_root}/{versions[0]}/modules.dep", local / "modules.dep")
        for module in boot_modules(local):
            _dump(disk, f"{modules_root}/{versions[0]}/{module.relative_to(local)}", module)
        busybox = next((b for b in ("/usr/bin/busybox", "/bin/busybox") if _debugfs(disk, f"stat {b}").strip()), "/usr/bin/busybox")
        _dump(disk, busybox, tree / "usr/bin/busybox")
        build_base(tree, target)


def cached_base(host_digest: str, disk: Path, cache: BuildCache) -> Path:
    """The base for a host's build, made once per host build and module list."""
    recipe = {"format": BASE_FORMAT, "host": host_digest, "modules": list(BOOT_MODULES)}
    directory, _ = cache.get_or_build(digest_of(recipe), recipe, lambda tmp, log: base_from_disk(disk, tmp / "initramfs.cpio"))
    return directory / "initramfs.cpio"
