"""Whether hosts can use KVM here or must be emulated with TCG, detected rather than configured.

An accessible /dev/kvm is not enough: under some nested hypervisors QEMU aborts setting MSRs with
host-passthrough, or a KVM guest boots, runs real-mode firmware, and then hangs without printing a
byte. So KVM is tried first for native guests and judged by the guest kernel's first console output;
a KVM that fails is remembered for the rest of this machine boot and every host falls back to TCG.
On a remote hypervisor, whether KVM is offered comes from its libvirt capabilities, and a verdict
is kept per hypervisor.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# How long a KVM guest may stay silent before KVM is judged broken. A working KVM prints within 1 s.
KVM_FIRST_OUTPUT_SECONDS = 15.0


def native_qemu_arch() -> str:
    """This machine's architecture by QEMU's name (which is the kernel's, `uname -m`)."""
    return platform.machine()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


@dataclass(frozen=True)
class AccelVerdicts:
    """The per-boot memory of whether KVM works, kept in the cache directory."""

    cache_dir: Path
    hypervisor: str = ""  # empty: this machine's own
    offers_kvm: Callable[[str], bool] | None = None  # a remote hypervisor's answer, by QEMU arch

    @property
    def _file(self) -> Path:
        at = f"{self.hypervisor}-" if self.hypervisor else ""
        return self.cache_dir / f"kvm-broken-{at}{_boot_id()}"

    def kvm_broken(self) -> str | None:
        """Why KVM was found broken on this boot, or None."""
        try:
            return self._file.read_text()
        except OSError:
            return None

    def mark_kvm_broken(self, reason: str) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._file.write_text(reason)

    def candidates(self, qemu_arch: str) -> list[str]:
        """Libvirt domain types to try in order for a guest of `qemu_arch`."""
        if self.offers_kvm is not None:
            offered = self.offers_kvm(qemu_arch)
        else:
            offered = qemu_arch == native_qemu_arch() and os.access("/dev/kvm", os.R_OK | os.W_OK)
        usable = offered and self.kvm_broken() is None
        return ["kvm", "qemu"] if usable else ["qemu"]


def cpu_model_for(accel: str, requested: str | None, tcg_default: str) -> str:
    """The CPU model a host gets: what the matrix asks for, else the host's own CPU under KVM."""
    if requested:
        return requested
    return "host-passthrough" if accel == "kvm" else tcg_default


# How much slower than on real hardware a guest runs; timeouts in the matrix are for real
# hardware and are multiplied by this. Measured here under TCG: an x86 guest on x86 boots and
# starts containers 2-3x slower than with KVM, arm64 guests 3-4x, ppc64le and s390x 6x and more.
_TCG_SCALE = {"x86_64": 3.0, "aarch64": 4.0, "ppc64le": 8.0, "s390x": 8.0}


def time_scale(accel: str, qemu_arch: str) -> float:
    return 1.0 if accel != "qemu" else _TCG_SCALE.get(qemu_arch, 8.0)


def slowness(qemu_arch: str) -> float:
    """How slow a host of this architecture is expected to be here, before any is booted: the
    machine's own architecture as if under KVM, others as emulated. A run starts the slowest
    hosts first, so it does not end waiting for one emulated s390x host."""
    return 1.0 if qemu_arch == platform.machine() else time_scale("qemu", qemu_arch)
