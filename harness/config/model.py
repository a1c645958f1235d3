"""The matrix as typed, validated dataclasses: what the rest of the harness works with."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_MIRROR = "http://deb.debian.org/debian"

# Debian architecture -> (QEMU/libvirt arch, OCI platform architecture)
ARCHES: dict[str, tuple[str, str]] = {
    "amd64": ("x86_64", "amd64"),
    "arm64": ("aarch64", "arm64"),
    "ppc64el": ("ppc64le", "ppc64le"),
    "s390x": ("s390x", "s390x"),
}


@dataclass(frozen=True)
class Machine:
    """Virtual hardware and time limits of a host. Timeouts are for real hardware: the harness
    multiplies them for emulated hosts (see hosts/accel.time_scale)."""

    memory_mib: int = 1536
    vcpus: int = 2
    boot_timeout: float = 120.0
    cell_timeout: float = 120.0

    def merged(self, override: dict) -> "Machine":
        return Machine(**{**self.__dict__, **override})


@dataclass(frozen=True)
class HostSpec:
    """A host of the matrix: a VM built from a release (kind "vm"), or an existing engine ("engine")."""

    name: str
    machine: Machine
    kind: str = "vm"
    release: str = ""
    arch: str = ""  # for an engine host, empty until read from the engine
    engine: str = ""
    runtime: str = ""
    kernel: str = ""  # the release whose kernel a VM host boots; its own release when empty
    cgroup: str = "v2"
    lsm: str = "apparmor"
    cpu: str | None = None
    kernel_cmdline: str = ""
    extra_packages: tuple[str, ...] = ()
    endpoint: str | None = None
    local: bool = False
    ulimits: dict[str, int] = field(default_factory=dict)

    @property
    def kernel_release(self) -> str:
        return self.kernel or self.release

    def settings(self) -> dict[str, str]:
        """A VM host's settings as the report shows them (an engine host has none of its own)."""
        if self.kind != "vm":
            return {}
        return {"kernel": self.kernel_release, "cgroup": self.cgroup, "lsm": self.lsm, **({"cpu": self.cpu} if self.cpu else {})}

    @property
    def qemu_arch(self) -> str:
        return ARCHES[self.arch][0]

    @property
    def oci_arch(self) -> str:
        return ARCHES[self.arch][1]


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


# A trivial image the harness runs on every host before any candidate image, so that a broken host
# is told apart from a broken image: one static binary, unpacked without running anything.
PROBE_IMAGE = ImageSpec("harness-probe", "bookworm", ("busybox-static",), ("/bin/busybox", "sh"), variant="extract", updates=False)


@dataclass(frozen=True)
class ScenarioOptions:
    """Engine options a scenario needs (a memory limit, a user, systemd...)."""

    memory: str | None = None
    pids_limit: int | None = None
    user: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    systemd: bool = False


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    path: Path  # the scenario's directory
    script: Path  # the executable run inside the container
    purpose: str
    timeout: float | None
    dimension: str = ""
    needs: tuple[str, ...] = ()
    mode: str = "run"
    init: tuple[str, ...] = ()
    options: ScenarioOptions = field(default_factory=ScenarioOptions)


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
    delivery: str = "registry"  # or "archive"
    hypervisors: tuple[HypervisorSpec, ...] = (LOCAL_HYPERVISOR,)

    def vm_arches(self) -> list[str]:
        """The architectures of the VM hosts: what every image is built and published for."""
        return sorted({h.arch for h in self.hosts if h.kind == "vm"})

    def host(self, name: str) -> HostSpec:
        return next(h for h in self.hosts if h.name == name)

    def image(self, name: str) -> ImageSpec:
        return next(i for i in self.images if i.name == name)

    def scenario(self, name: str) -> ScenarioSpec:
        return next(s for s in self.scenarios if s.name == name)
