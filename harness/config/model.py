"""The matrix as typed, validated dataclasses: what the rest of the harness works with."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from harness.config.registries import RegistryAccess

DEFAULT_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class Arch:
    """One architecture under its three names: Debian's (the matrix's), QEMU's and libvirt's, OCI's."""

    debian: str
    qemu: str
    oci: str

    @property
    def platform(self) -> str:
        return f"linux/{self.oci}"


# The one architecture table: every other name of an architecture is looked up here.
ARCHES: dict[str, Arch] = {
    a.debian: a
    for a in (
        Arch("amd64", "x86_64", "amd64"),
        Arch("arm64", "aarch64", "arm64"),
        Arch("ppc64el", "ppc64le", "ppc64le"),
        Arch("s390x", "s390x", "s390x"),
    )
}


def debian_arch(name: str) -> str:
    """The Debian name of an architecture given by any of its names (an engine says x86_64 or
    amd64, uname says ppc64le); an unknown name is returned as it is."""
    return next((a.debian for a in ARCHES.values() if name in (a.debian, a.qemu, a.oci)), name)


class HostKind(StrEnum):
    """What a host is: a VM the harness builds from a release, or an engine that already runs."""

    VM = "vm"
    DISK = "disk"  # a VM booted from a disk image the user brings (any distribution's cloud image)
    ENGINE = "engine"

    @property
    def label(self) -> str:
        return {HostKind.VM: "VM", HostKind.DISK: "VM from a disk image", HostKind.ENGINE: "engine host"}[self]

    @property
    def is_vm(self) -> bool:
        """Booted by the harness through libvirt: placed on a hypervisor, images built for its arch."""
        return self in (HostKind.VM, HostKind.DISK)


class DeliveryMethod(StrEnum):
    """How an image reached a host's engine."""

    PULL = "pull"  # by reference, from a registry
    LOAD = "load"  # from an archive

    @property
    def label(self) -> str:
        return {DeliveryMethod.PULL: "pulled", DeliveryMethod.LOAD: "loaded"}[self]


@dataclass(frozen=True)
class Machine:
    """Virtual hardware and time limits of a host. Timeouts are for real hardware: the harness
    multiplies them for emulated hosts (see hosts/accel.time_scale). vCPUs left unset are chosen
    with the number of hosts run at once, from the hypervisor's cores (hosts/hypervisors.py)."""

    memory_mib: int = 1536
    vcpus: int | None = None
    boot_timeout: float = 120.0
    cell_timeout: float = 120.0

    def merged(self, override: dict) -> "Machine":
        return Machine(**{**self.__dict__, **override})


@dataclass(frozen=True)
class HostSpec:
    """What every kind of host of the matrix has; each kind's own settings are in its subclass
    (harness/config/kinds/), and what the harness does with it in its driver (harness/hosts/kinds/)."""

    kind: ClassVar[HostKind]
    name: str
    machine: Machine
    release: str = ""
    arch: str = ""  # Debian's name; for an engine host, empty until read from the engine
    engine: str = ""
    runtime: str = ""
    via: str = "engine"  # how cells reach the engine: "engine" (its own CLI) or "pod" (a Pod spec, podman kube play)

    def settings(self) -> dict[str, str]:
        """The host's own settings as the report shows them."""
        return {}

    def via_problem(self) -> str | None:
        """Why this host cannot run its cells the way `via` asks, or None."""
        return None

    @property
    def qemu_arch(self) -> str:
        return ARCHES[self.arch].qemu

    @property
    def oci_arch(self) -> str:
        return ARCHES[self.arch].oci


@dataclass(frozen=True)
class ImageSpec:
    name: str
    release: str
    packages: tuple[str, ...]
    cmd: tuple[str, ...]
    variant: str = "minbase"  # mmdebstrap's; "extract" for the harness's own probe image
    arches: tuple[str, ...] = ()  # built and published for these only; empty: every VM host's
    base: str = ""  # the image of the matrix this one is layered on (same release)
    updates: bool = True  # built with the release's security and point updates, as Debian's images are
    reference: str = ""  # already published elsewhere: pulled by this reference, never built
    tls_verify: bool = True  # for pulling `reference`
    trim: tuple[str, ...] = ()  # paths (shell globs, from the root) removed from the built tree
    archive: str = ""  # taken from this file, never built (an absolute path)
    archive_kind: str = ""  # "oci-archive" or "docker-archive"

    @property
    def source(self) -> str:
        """Where the image comes from, as results.json says: built, reference, or the file."""
        if self.reference:
            return "reference"
        return f"{self.archive_kind} {self.archive}" if self.archive else "built"


# A small image the harness runs on every host before any candidate image, so that a broken host
# is told apart from a broken image, and a container's view of its confinement is measured: a
# static busybox, and perl (with only the C library) to make raw system calls, all unpacked
# without running anything. Documentation, locales and charset converters are left out (35 MB
# became 9 MB, so every host pulls less).
PROBE_IMAGE = ImageSpec(
    "harness-probe",
    "bookworm",
    ("busybox-static", "perl-base"),
    ("/bin/busybox", "sh"),
    variant="extract",
    updates=False,
    trim=("usr/share/*", "usr/lib/*/gconv", "usr/lib/*/perl-base", "var/lib/dpkg", "var/cache/*"),
)


@dataclass(frozen=True)
class ScenarioOptions:
    """Engine options a scenario needs (a memory limit, a user, systemd...)."""

    memory: str | None = None
    pids_limit: int | None = None
    user: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    systemd: bool = False
    cap_add: tuple[str, ...] = ()  # capabilities beyond the engine's default set (SYS_ADMIN...)
    read_only: bool = False  # the container's root file system mounted read-only
    # Set by a blame experiment only (harness/cells/blame.py), never by a scenario.yaml: engine
    # security options (seccomp=unconfined, apparmor=unconfined, label=disable) and another runtime.
    security_opt: tuple[str, ...] = ()
    runtime: str | None = None
    rootless: bool = False  # run by the host's unprivileged user (podman's rootless mode)
    via: str | None = None  # "engine": a pod host's cell run through the engine's CLI instead


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    path: Path  # the scenario's directory
    script: Path  # the executable run inside the container
    purpose: str
    timeout: float | None
    dimension: str = ""
    needs: tuple[str, ...] = ()
    mode: str = "run"  # run, service, or host: the script runs on the host and drives the engine itself
    init: tuple[str, ...] = ()
    options: ScenarioOptions = field(default_factory=ScenarioOptions)
    # A test of a suite (config/suites.py): its suite's whole directory goes onto the delivery disk,
    # since tests call their suite's helpers; its stdout must equal expected_stdout when one is given.
    suite_root: Path | None = None
    expected_stdout: str | None = None
    # For mode host: the repo:tag the image is found under ({image}: the matrix's image name); the
    # cell runner binds it to the cell's image.
    image_as: str = "{image}:latest"

    @property
    def payload_dir(self) -> str:
        """Where the scenario's own files are on the delivery disk, relative to its root."""
        if self.suite_root is None:
            return f"scenarios/{self.name}"
        suite = f"{self.suite_root.name}-{hashlib.sha256(str(self.suite_root).encode()).hexdigest()[:8]}"  # two suites may share a name
        return f"suites/{suite}/{self.path.relative_to(self.suite_root)}"

    @property
    def payload_script(self) -> str:
        return f"{self.payload_dir}/{self.script.name}"


@dataclass(frozen=True)
class CellPattern:
    """Glob patterns over host, image and scenario names."""

    host: str = "*"
    image: str = "*"
    scenario: str = "*"

    def matches(self, host: str, image: str, scenario: str = "*") -> bool:
        return fnmatchcase(host, self.host) and fnmatchcase(image, self.image) and (scenario == "*" or fnmatchcase(scenario, self.scenario))


@dataclass(frozen=True)
class KnownIssue:
    pattern: CellPattern
    bug: str
    note: str = ""


@dataclass(frozen=True)
class Policy:
    """The vendor's support statement: an image of release N is supported on hosts of release N+d for d
    in host_newer_by, on the listed architectures, plus `include` and minus `exclude`."""

    release_order: tuple[str, ...] = ("bullseye", "bookworm", "trixie", "forky", "sid")
    host_newer_by: tuple[int, ...] = (0, 1)
    architectures: tuple[str, ...] = ("amd64", "arm64", "ppc64el", "s390x")
    include: tuple[CellPattern, ...] = ()
    exclude: tuple[CellPattern, ...] = ()


def hypervisor_name(uri: str) -> str:
    """A hypervisor's default name: its URI's host (and port), or "local" for this machine's."""
    authority = urlsplit(uri).netloc.rpartition("@")[2]
    return authority.replace(":", "-") or "local"


@dataclass(frozen=True)
class HypervisorSpec:
    """A libvirt hypervisor VM hosts may be placed on."""

    uri: str
    name: str = ""
    slots: int | None = None  # hosts at once; None: as many as its cores and memory allow
    harness_address: str | None = None  # where its guests reach this machine; None: worked out

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", hypervisor_name(self.uri))

    @property
    def remote(self) -> bool:
        """Whether it runs elsewhere (as far as libvirt knows): files reach it as storage volumes."""
        return bool(urlsplit(self.uri).netloc)


LOCAL_HYPERVISOR = HypervisorSpec("qemu:///system")


@dataclass(frozen=True)
class Matrix:
    path: Path
    mirror: str
    vms_dir: Path
    scenarios_dir: Path
    hosts: tuple[HostSpec, ...]
    images: tuple[ImageSpec, ...]
    scenarios: tuple[ScenarioSpec, ...]
    defaults: Machine = field(default_factory=Machine)
    policy: Policy = field(default_factory=Policy)
    known_issues: tuple[KnownIssue, ...] = ()
    retries: int = 1
    delivery: str = "registry"  # or "archive": how images reach VM hosts
    registry_port: int = 8008  # where the run's registry listens
    hypervisors: tuple[HypervisorSpec, ...] = (LOCAL_HYPERVISOR,)
    warnings: tuple[str, ...] = ()  # file:line: warning: ... (a pattern that matches nothing)
    registries: tuple[RegistryAccess, ...] = ()  # private registries' credentials and CAs

    def access_for(self, reference: str) -> RegistryAccess | None:
        """How to reach the registry a reference names, if the matrix says anything of it."""
        host = reference.partition("/")[0]
        return next((r for r in self.registries if r.host == host), None)

    def vm_arches(self) -> list[str]:
        """The architectures of the VM hosts: what every image is built and published for."""
        return sorted({h.arch for h in self.vm_hosts()})

    def vm_hosts(self) -> list[HostSpec]:
        """The hosts the harness boots as virtual machines, built or from a disk image."""
        return [h for h in self.hosts if h.kind.is_vm]

    def pool(self, uris: list[str] | tuple[str, ...] | None = None) -> tuple[HypervisorSpec, ...]:
        """The hypervisors a run uses: those given on the command line (--hypervisor), else the
        matrix's. The one place the pool is worked out, for the run, `--workers auto` and doctor."""
        return tuple(HypervisorSpec(uri) for uri in uris) if uris else self.hypervisors

    def host(self, name: str) -> HostSpec:
        return next(h for h in self.hosts if h.name == name)

    def image(self, name: str) -> ImageSpec:
        return next(i for i in self.images if i.name == name)

    def scenario(self, name: str) -> ScenarioSpec:
        return next(s for s in self.scenarios if s.name == name)
