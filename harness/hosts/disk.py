"""A host booted from a disk image the user brought: any distribution's cloud image, through its
firmware (UEFI on amd64 and arm64, SLOF on ppc64el, the s390x loader) and its own boot loader.

The disk is never written: each boot runs on a throw-away overlay. A NoCloud seed starts the guest
agent (hosts/nocloud.py); through the agent the harness then mounts the delivery disk, finds the
engine the disk has, tells it the run's registries, and reads the same facts as on built hosts.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.config.kinds.disk import DiskHostSpec
from harness.engines.docker import engine_cli
from harness.hosts.accel import AccelVerdicts
from harness.hosts.domain import Disk
from harness.hosts.files import HostFiles
from harness.hosts.hypervisors import Slot
from harness.hosts.cell_paths import PAYLOAD_ROOT
from harness.hosts.libvirt import Boot, LibvirtHost
from harness.hosts.nocloud import make_seed
from harness.hosts.platform import PLATFORMS
from harness.hosts.provider import HostError
from harness.hosts.wait import CommandSucceeds

# The delivery disk (hosts/libvirt.py labels it "payload"), mounted where the engine commands look
# for scenarios; on an SELinux guest labelled as a shared container volume, as built hosts do.
MOUNT_PAYLOAD = (
    'mkdir -p "$1" && { mountpoint -q "$1" || '
    'if [ -e /sys/fs/selinux/enforce ]; then mount -o ro,context=system_u:object_r:container_file_t:s0 LABEL=payload "$1"; '
    'else mount -o ro LABEL=payload "$1"; fi; }'
)
ENGINES = 'for e in podman docker; do command -v "$e" >/dev/null && echo "$e"; done; true'
OS_RELEASE = '. /etc/os-release && echo "${ID:-linux}-${VERSION_ID:-}"'
# Words for the kernel command line, through the disk's own boot loader configuration, as its
# distribution does it: grubby (RHEL, Fedora), else a GRUB drop-in and update-grub or grub-mkconfig
# (Debian, Ubuntu, SUSE). Exit 3: the disk has none of them.
SET_CMDLINE = r"""
words="$1"
if command -v grubby >/dev/null; then
    grubby --update-kernel=ALL --args="$words"
elif command -v update-grub >/dev/null || command -v grub-mkconfig >/dev/null || command -v grub2-mkconfig >/dev/null; then
    mkdir -p /etc/default/grub.d
    printf 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX %s"\n' "$words" > /etc/default/grub.d/99-container-matrix-harness.cfg
    if command -v update-grub >/dev/null; then update-grub
    elif command -v grub2-mkconfig >/dev/null; then grub2-mkconfig -o "$(ls /boot/grub2/grub.cfg 2>/dev/null || echo /boot/grub/grub.cfg)"
    else grub-mkconfig -o /boot/grub/grub.cfg; fi
else
    echo "the disk has neither grubby nor update-grub nor grub-mkconfig" >&2; exit 3
fi
"""
BOOT_ID = ["cat", "/proc/sys/kernel/random/boot_id"]
CGROUP_FS = {"v1": "tmpfs", "v2": "cgroup2fs"}


def virtual_size(path: Path) -> int:
    """The disk's size as the guest sees it (a qcow2 file is smaller than its disk)."""
    info = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True)
    if info.returncode != 0:
        raise HostError(f"{path} is not a disk image qemu-img can read: {info.stderr.strip()[-300:]}")
    return int(json.loads(info.stdout)["virtual-size"])


class DiskHost(LibvirtHost):
    spec: DiskHostSpec

    def __init__(self, spec: DiskHostSpec, disk: Path, digest: str, slot: Slot, vms_dir: Path, workdir: Path, run_id: str, verdicts: AccelVerdicts, files: HostFiles):
        super().__init__(spec, digest, slot, vms_dir, workdir, run_id, verdicts, files)
        self.disk, self.digest = disk, digest

    def _boot(self) -> Boot:
        seed = make_seed(self.workdir / "seed", f"{self.run_id}-{self.name}", self.name)
        return Boot(
            root=self.files.cached(self.disk, f"disk-{self.digest}"),
            root_size=virtual_size(self.disk),
            root_format=self.spec.image_format,
            firmware=PLATFORMS[self.spec.arch].firmware,
            nvram=self.files.scratch("nvram.fd") if PLATFORMS[self.spec.arch].firmware else "",
            disks=(Disk(self.files.own(seed), "raw", readonly=True),),
        )

    def _ready(self, timeout: float) -> None:
        """The guest runs and its agent answers: its kernel command line set, deliveries mounted,
        engine found and configured."""
        self._set_cmdline(timeout)
        self.must(["sh", "-c", MOUNT_PAYLOAD, "mount", PAYLOAD_ROOT], "mounting the delivery disk")
        if not self.record.release:
            self.record.release = self.must(["sh", "-c", OS_RELEASE], "reading /etc/os-release")
        found = self.must(["sh", "-c", ENGINES], "looking for an engine").split()
        engine = self.spec.engine or (found[0] if found else "")
        if engine not in found:
            has = f"it has {', '.join(found)}" if found else "it has neither podman nor docker"
            raise HostError(f"host {self.name}: its disk {self.disk} has no {engine or 'container engine'} ({has})")
        if engine == "docker":
            self._allow_plain_http()
        self.engine = engine_cli(engine, self.spec.runtime or ("crun" if engine == "podman" else "runc"))
        self.record.engine = engine
        super()._ready(timeout)
        if not self.record.runtime:
            runtime = ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"] if engine == "podman" else ["docker", "info", "--format", "{{.DefaultRuntime}}"]
            self.record.runtime = self.must(runtime, "asking the engine for its OCI runtime")
            self.engine = engine_cli(engine, self.record.runtime)

    def _set_cmdline(self, timeout: float) -> None:
        """The matrix's settings that live on the kernel command line (cgroup mode, its own words),
        written into the disk's boot loader configuration (on the overlay), then one reboot; what
        the guest booted with afterwards is checked, so a setting its distribution ignores is a host
        error rather than a silent no-op."""
        words = self.spec.cmdline_words()
        cmdline = self.must(["cat", "/proc/cmdline"], "reading the kernel command line").split()
        if all(word in cmdline for word in words):
            return self._check_cgroup()
        self.must(["sh", "-c", SET_CMDLINE, "set-cmdline", " ".join(words)], f"adding {' '.join(words)!r} to the kernel command line")
        before = self.must(BOOT_ID, "reading the boot id")
        self.must(["sh", "-c", "(sleep 1; systemctl reboot || reboot) >/dev/null 2>&1 &"], "rebooting")
        booted = ["sh", "-c", '[ "$(cat /proc/sys/kernel/random/boot_id)" != "$1" ]', "boot-id", before]
        CommandSucceeds(self.agent, booted).wait_until_ready(self.domain, timeout)
        cmdline = self.must(["cat", "/proc/cmdline"], "reading the kernel command line").split()
        if missing := [word for word in words if word not in cmdline]:
            raise HostError(f"host {self.name}: its boot loader was told {' '.join(words)!r}, but the kernel booted without {' '.join(missing)!r}: {' '.join(cmdline)}")
        self._check_cgroup()

    def _check_cgroup(self) -> None:
        if not self.spec.cgroup:
            return
        fs = self.must(["stat", "-fc", "%T", "/sys/fs/cgroup"], "reading the cgroup file system")
        if fs != CGROUP_FS[self.spec.cgroup]:
            raise HostError(f"host {self.name}: cgroup {self.spec.cgroup} was set on its kernel command line, but its init mounted {fs} on /sys/fs/cgroup (systemd 256 and later refuse the v1 hierarchy)")

    def _allow_plain_http(self) -> None:
        """dockerd reaches a registry over plain HTTP only when its daemon.json lists it: the disk's
        own daemon.json, with the run's registries added, then dockerd restarted."""
        said = self.must(["sh", "-c", "cat /etc/docker/daemon.json 2>/dev/null || echo '{}'"], "reading dockerd's daemon.json")
        try:
            daemon = json.loads(said or "{}")
        except json.JSONDecodeError as exc:
            raise HostError(f"host {self.name}: its /etc/docker/daemon.json is not JSON: {exc}") from None
        daemon["insecure-registries"] = sorted(set(daemon.get("insecure-registries", [])) | set(self.plain_http))
        self.must(["sh", "-c", "mkdir -p /etc/docker && cat > /etc/docker/daemon.json"], "writing dockerd's daemon.json", json.dumps(daemon, indent=1).encode())
        self.must(["sh", "-c", "systemctl restart docker.service || service docker restart"], "restarting dockerd")
