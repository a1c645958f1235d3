"""Results as plain dataclasses with a versioned JSON form; the report reads only these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1

# Outcomes of one cell (host x image x scenario). "error" is the harness's or the host's fault, never
# the image's; "flaky" failed and then passed on a retry; "known-issue" failed as a listed bug says
# it does; "fixed?" is a listed bug's cell that passes now.
OUTCOMES = ("pass", "fail", "error", "timeout", "not-applicable", "flaky", "known-issue", "fixed?")

# Classes of a host x image pair, the supportability verdict the report is about.
CLASSES = ("supported-pass", "supported-fail", "unsupported-works", "unsupported-broken", "not-portable", "error", "pending")


@dataclass
class ExecRecord:
    """One command run on a host: what was run, how it ended, what it printed."""

    argv: list[str]
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False


@dataclass
class HostRecord:
    """A host as it really was during the run: recipe, facts read from the running guest, boot evidence."""

    name: str
    release: str
    arch: str
    engine: str
    runtime: str
    kind: str = "vm"
    recipe_digest: str = ""
    accel: str = ""
    cpu_model: str = ""
    boot_seconds: float | None = None
    time_scale: float = 1.0  # timeouts were multiplied by this (emulation is slower)
    settings: dict[str, str] = field(default_factory=dict)  # as the matrix asked: kernel, cgroup, lsm, cpu
    facts: dict[str, str] = field(default_factory=dict)
    console_log: str = ""  # path relative to the reports directory
    health: str = ""  # "ok", or why a trivial container failed on this host's engine
    error: str = ""
    hypervisor: str = ""  # the name of the libvirt hypervisor that ran it (VM hosts)
    moved: str = ""  # why it started again on this hypervisor: the one it was on stopped answering


@dataclass
class DeliveryRecord:
    """How an image reached a host's engine (the portability half of a cell)."""

    host: str
    image: str
    image_id: str
    ok: bool
    duration: float
    command: list[str]
    output: str = ""
    method: str = "load"  # "pull": by reference from the harness's registry; "load": from an archive
    reference: str = ""  # what was pulled
    platform: str = ""  # os/architecture of the image the engine selected
    mismatch: str = ""  # "image is linux/amd64, host is linux/arm64" when they differ (it runs anyway)


@dataclass
class Attempt:
    """An earlier run of a cell that was retried: kept so a flake's failure is not lost."""

    outcome: str
    exit_code: int | None
    duration: float
    stdout: str
    stderr: str


@dataclass
class CellResult:
    """One host x image x scenario cell."""

    host: str
    image: str
    scenario: str
    outcome: str
    duration: float
    message: str = ""
    command: list[str] = field(default_factory=list)
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    started_at: str = ""
    reproduce: list[str] = field(default_factory=list)  # shell lines to run the cell by hand on the host
    attempts: list[Attempt] = field(default_factory=list)  # earlier attempts, when retried
    bug: str = ""  # the known issue's reference, for "known-issue" and "fixed?"

    @property
    def key(self) -> str:
        return f"{self.host}/{self.image}/{self.scenario}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CellResult":
        return cls(**{**data, "attempts": [Attempt(**a) for a in data.get("attempts", [])]})


@dataclass
class Freshness:
    """How stale an image's packages are against its release's fix archive, judged during the run."""

    grade: str  # A to F, or "?" when the archive could not be read
    outdated: int  # installed packages the fix archive has a newer version of
    checked: int  # installed packages compared
    against: str  # the archive suites compared with
    checked_at: str
    updates: list[str] = field(default_factory=list)  # "name installed -> fixed"
    error: str = ""


@dataclass
class ImageBuildRecord:
    """One architecture's build of a candidate image, as its OCI config and dpkg database say."""

    arch: str
    platform: str  # linux/arm64
    image_id: str  # config digest, what engines call the image
    manifest_digest: str
    size: int  # bytes of its layers, uncompressed
    layers: int
    created: str  # the build date: the archive state it was built from (reproducible)
    debian_version: str
    glibc: str
    package_count: int
    recipe_digest: str
    labels: dict[str, str] = field(default_factory=dict)
    freshness: Freshness | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ImageBuildRecord":
        fresh = data.get("freshness")
        return cls(**{**data, "freshness": Freshness(**fresh) if fresh else None})


@dataclass
class ImageRecord:
    """A candidate image: what the matrix asked for, and (once built and published) what it is."""

    name: str
    release: str
    packages: list[str] = field(default_factory=list)
    base: str = ""  # the image it is layered on, if any
    reference: str = ""  # in the harness's registry, as this machine reaches it
    index_digest: str = ""  # the OCI index (or the single manifest) behind `reference`
    builds: dict[str, ImageBuildRecord] = field(default_factory=dict)  # by Debian architecture
    source: str = "built"  # or "reference": published elsewhere and pulled as it is

    @property
    def grade(self) -> str:
        """The worst freshness grade of its builds ("?" beats nothing, F beats everything)."""
        grades = [b.freshness.grade for b in self.builds.values() if b.freshness]
        return max(grades, key=lambda g: "?ABCDF".index(g), default="")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ImageRecord":
        builds = {k: ImageBuildRecord.from_json(v) for k, v in data.get("builds", {}).items()}
        return cls(**{**data, "builds": builds})


@dataclass
class PairResult:
    """The supportability verdict of one host x image pair."""

    host: str
    image: str
    supported: bool
    support_reason: str
    status: str  # works, broken, error, not-portable, pending
    klass: str  # one of CLASSES


@dataclass
class RunResults:
    """Everything one matrix run measured, as written to results.json."""

    run_id: str
    matrix: str
    started_at: str
    harness_version: str
    finished_at: str = ""
    hosts: dict[str, HostRecord] = field(default_factory=dict)
    images: dict[str, ImageRecord] = field(default_factory=dict)
    deliveries: dict[str, DeliveryRecord] = field(default_factory=dict)
    cells: dict[str, CellResult] = field(default_factory=dict)
    pairs: dict[str, PairResult] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunResults":
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"results schema version {data.get('schema_version')!r} is not {SCHEMA_VERSION}")
        plain = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        plain["hosts"] = {k: HostRecord(**v) for k, v in data.get("hosts", {}).items()}
        plain["deliveries"] = {k: DeliveryRecord(**v) for k, v in data.get("deliveries", {}).items()}
        plain["images"] = {k: ImageRecord.from_json(v) for k, v in data.get("images", {}).items()}
        plain["cells"] = {k: CellResult.from_json(v) for k, v in data.get("cells", {}).items()}
        plain["pairs"] = {k: PairResult(**v) for k, v in data.get("pairs", {}).items()}
        return cls(**plain)
