"""What differs per guest architecture: QEMU machine, console, kernel package, default CPU model."""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.model import ARCHES


@dataclass(frozen=True)
class Platform:
    arch: str  # Debian's name; its other names are in config.model.ARCHES
    machine: str
    console: str  # the kernel's name for the serial console
    kernel_package: str
    tcg_cpu: str  # explicit CPU model under emulation ("max" = everything TCG implements)
    features: tuple[str, ...] = ()
    max_without: tuple[str, ...] = ()  # features of "max" that emulation gets wrong
    firmware: str = ""  # what boots a disk image: "efi" (OVMF, AAVMF), or "" for the machine's own (SLOF, s390-ccw)

    @property
    def qemu_arch(self) -> str:
        return ARCHES[self.arch].qemu


PLATFORMS: dict[str, Platform] = {
    # qemu64, libvirt's TCG default, lacks x86-64-v2; "max" gives every feature TCG emulates, except
    # two that QEMU 7.2's TCG gets wrong: trixie's 6.12 kernel double-faults in SLUB's per-CPU
    # cmpxchg16b (seen with 1 and 2 vCPUs, with max and Haswell) and early with 5-level paging.
    # Without cx16 the host is not x86-64-v2: the facts' CPU flags say so, and `cpu:` overrides.
    "amd64": Platform("amd64", "q35", "ttyS0", "linux-image-cloud-amd64", "max", ("acpi",), ("la57", "cx16"), "efi"),
    # cortex-a57 boots 2.5x faster under TCG than "max" (no pointer authentication to emulate).
    "arm64": Platform("arm64", "virt", "ttyAMA0", "linux-image-cloud-arm64", "cortex-a57", firmware="efi"),
    "ppc64el": Platform("ppc64el", "pseries", "hvc0", "linux-image-powerpc64le", "POWER9"),
    "s390x": Platform("s390x", "s390-ccw-virtio", "ttysclp0", "linux-image-s390x", "qemu"),
}
