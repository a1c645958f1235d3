"""Results as plain dataclasses with a versioned JSON form; the report reads only these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from harness.config.model import DeliveryMethod, HostKind

SCHEMA_VERSION = 2  # 2: typed host facts, enums, a cell's original outcome

# Output kept per stream in results: the head and the tail, which is where the evidence is.
MAX_OUTPUT = 64 * 1024


def clip(text: str, limit: int = MAX_OUTPUT) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut by the harness ...]\n{text[-half:]}"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Outcome(StrEnum):
    """How one cell (host x image x scenario) ended. ERROR is the harness's or the host's fault,
    never the image's; FLAKY failed and then passed on a retry; KNOWN_ISSUE failed as a listed bug
    says it does; FIXED is a listed bug's cell that passes now. Declared in the report's order:
    the most alarming first."""

    FAIL = "fail"
    TIMEOUT = "timeout"
    FIXED = "fixed?"
    ENGINE_ERROR = "engine-error"  # the engine could not create or start the container (exit 125)
    ERROR = "error"
    KNOWN_ISSUE = "known-issue"
    FLAKY = "flaky"
    NOT_APPLICABLE = "not-applicable"
    PASS = "pass"

    @property
    def label(self) -> str:
        return self.value

    @property
    def broken(self) -> bool:
        """Counts against the image."""
        return self in (Outcome.FAIL, Outcome.TIMEOUT)

    @property
    def passed(self) -> bool:
        return self in (Outcome.PASS, Outcome.FLAKY)

    @property
    def infrastructure(self) -> bool:
        """The host's, the engine's or the harness's trouble: never the image's."""
        return self in (Outcome.ERROR, Outcome.ENGINE_ERROR)


class PairClass(StrEnum):
    """The supportability verdict of a host x image pair, in the report's order, the loudest first.
    Each says exactly what was observed: a supported pair passes only when every applicable
    scenario passed at the first attempt with no known issue."""

    SUPPORTED_FAIL = "supported-fail"
    SUPPORTED_FLAKY = "supported-flaky"  # passed, but a cell failed before passing, or a known issue's cell passes now
    SUPPORTED_KNOWN_ISSUES = "supported-known-issues"  # passes, but for cells failing as listed bugs say
    SUPPORTED_PASS = "supported-pass"
    UNSUPPORTED_WORKS = "unsupported-works"
    UNSUPPORTED_BROKEN = "unsupported-broken"
    NOT_TESTED = "not-tested"  # no scenario applied to the image
    NOT_PORTABLE = "not-portable"
    ERROR = "error"
    PENDING = "pending"

    @property
    def label(self) -> str:
        return _CLASS_LABELS[self]

    @property
    def supported_and_passing(self) -> bool:
        return self == PairClass.SUPPORTED_PASS


_CLASS_LABELS = {
    PairClass.SUPPORTED_FAIL: "supported, FAILING",
    PairClass.SUPPORTED_FLAKY: "supported, flaky",
    PairClass.SUPPORTED_KNOWN_ISSUES: "supported, passing with known issues",
    PairClass.SUPPORTED_PASS: "supported, passing",
    PairClass.UNSUPPORTED_WORKS: "works, unsupported",
    PairClass.UNSUPPORTED_BROKEN: "broken, unsupported",
    PairClass.NOT_TESTED: "not tested (no scenario applied)",
    PairClass.NOT_PORTABLE: "not portable",
    PairClass.ERROR: "error (host, engine or harness)",
    PairClass.PENDING: "not run",
}

# The enums results.json's schema takes its value lists from (harness/results/schema.py).
ENUMS: dict[str, type[StrEnum]] = {"outcome": Outcome, "pair_class": PairClass, "host_kind": HostKind, "delivery_method": DeliveryMethod}  # and "layer" below


@dataclass
class ExecRecord:
    """One command run on a host: what was run, how it ended, what it printed."""

    argv: list[str]
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False  # the harness's own time limit stopped it (not an exit 124 of its own)
    oom_killed: bool = False  # the kernel's OOM killer ended the container
    # A service's container exited with this status before the scenario could start in it.
    container_exit: int | None = None


@dataclass(frozen=True)
class HostFacts:
    """What a running host really is, read from it by its kind's parser (hosts/kinds/): the facts
    every kind has, typed, and everything it read, as read (`raw`, shown in the report)."""

    os: str = ""  # pretty name
    kernel: str = ""
    machine: str = ""  # uname -m, or the engine's architecture
    cpus: int | None = None
    memory_kib: int | None = None
    page_size: int | None = None
    cgroup: str = ""  # v1 or v2
    lsm: str = ""
    engine: str = ""
    engine_version: str = ""
    runtime: str = ""
    runtime_version: str = ""
    raw: dict[str, str] = field(default_factory=dict)


@dataclass
class HostRecord:
    """A host as it really was during the run: recipe, facts read from the running guest, boot evidence."""

    name: str
    release: str
    arch: str
    engine: str
    runtime: str
    kind: HostKind = HostKind.VM
    recipe_digest: str = ""
    accel: str = ""
    cpu_model: str = ""
    boot_seconds: float | None = None
    cpu_seconds: float | None = None  # the guest's CPU time, from its hypervisor when it stopped
    time_scale: float = 1.0  # timeouts were multiplied by this (emulation is slower)
    settings: dict[str, str] = field(default_factory=dict)  # as the matrix asked: kernel, cgroup, lsm, cpu
    facts: HostFacts = field(default_factory=HostFacts)
    console_log: str = ""  # path relative to the reports directory
    health: str = ""  # "ok", or why a trivial container failed on this host's engine
    error: str = ""
    hypervisor: str = ""  # the name of the libvirt hypervisor that ran it (VM hosts)
    moved: str = ""  # why it started again on this hypervisor: the one it was on stopped answering
    image_store: str = ""  # its engine's kept image store: how it started, and whether it was kept
    # Set when this run did not boot it (every cell of it reused): its figures are of the run that judged them.
    reused: str = ""

    def __post_init__(self) -> None:
        self.kind = HostKind(self.kind)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "HostRecord":
        return cls(**{**data, "kind": HostKind(data.get("kind", HostKind.VM)), "facts": HostFacts(**data.get("facts", {}))})


class StoreUse(StrEnum):
    """Whether a pull found the image in the host's kept image store (hosts/store.py)."""

    NONE = ""  # no kept store (an archive load, an engine host, a remote hypervisor)
    IN_STORE = "in store"  # already there: not pulled (its first pull's evidence is in `output`)
    PULLED = "pulled"  # fetched from the registry, wholly or its new layers only


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
    method: DeliveryMethod = DeliveryMethod.LOAD
    reference: str = ""  # what was pulled
    platform: str = ""  # os/architecture of the image the engine selected
    mismatch: str = ""  # "image is linux/amd64, host is linux/arm64" when they differ (it runs anyway)
    # Set when the delivery failed because of the image: the registry has no manifest for the
    # host's platform, or the engine refuses the image's format. A failure it does not name (a
    # network, a registry, a host in trouble) is not the image's.
    not_portable: str = ""
    tries: int = 1  # pulls that failed for another reason were tried again
    store: StoreUse = StoreUse.NONE
    received_bytes: int | None = None  # what the guest's network received during the pull
    # Set when this run did not deliver it (its cells reused): its figures are of the run that did.
    reused: str = ""
    tls_verify: bool = False  # pulled over TLS with the certificate checked (a private registry's)
    credentials: str = ""  # the matrix's credentials file, when the pull logged in: `command` names a per-pull copy, gone after it

    def __post_init__(self) -> None:
        self.method = DeliveryMethod(self.method)
        self.store = StoreUse(self.store)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DeliveryRecord":
        return cls(**{**data, "method": DeliveryMethod(data.get("method", DeliveryMethod.LOAD))})


@dataclass
class Attempt:
    """An earlier run of a cell that was retried: kept so a flake's failure is not lost."""

    outcome: Outcome
    exit_code: int | None
    duration: float
    stdout: str
    stderr: str

    def __post_init__(self) -> None:
        self.outcome = Outcome(self.outcome)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Attempt":
        return cls(**{**data, "outcome": Outcome(data["outcome"])})


@dataclass(frozen=True)
class CellResult:
    """One host x image x scenario cell, final when made: the cell runner (harness/cells/runner.py)
    makes it judged, retried and with known issues applied, and nothing changes it afterwards."""

    host: str
    image: str
    scenario: str
    outcome: Outcome
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
    original_outcome: Outcome | None = None  # as judged, when a known issue changed it

    def __post_init__(self) -> None:
        # Typed whatever the caller passed (a value read back from JSON is a plain string).
        object.__setattr__(self, "outcome", Outcome(self.outcome))
        if self.original_outcome is not None:
            object.__setattr__(self, "original_outcome", Outcome(self.original_outcome))

    @property
    def key(self) -> str:
        return f"{self.host}/{self.image}/{self.scenario}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CellResult":
        original = data.get("original_outcome")
        return cls(
            **{
                **data,
                "outcome": Outcome(data["outcome"]),
                "original_outcome": Outcome(original) if original else None,
                "attempts": [Attempt.from_json(a) for a in data.get("attempts", [])],
            }
        )


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
    facts_error: str = ""  # why a reference's facts could not be read from its registry

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
    status: str  # works, flaky, known-issues, broken, not-tested, error, not-portable, pending
    klass: PairClass

    def __post_init__(self) -> None:
        self.klass = PairClass(self.klass)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PairResult":
        return cls(**{**data, "klass": PairClass(data["klass"])})


class Layer(StrEnum):
    """What a failing cell's blame experiments name as the layer that broke."""

    FLAKY = "flaky"  # the unchanged rerun passed
    SECCOMP = "seccomp"
    LSM = "LSM"
    RUNTIME = "runtime"
    ENGINE = "engine"
    CGROUP = "cgroup mode"
    KERNEL = "kernel"
    CPU = "CPU model"
    RELEASE = "host release"
    ORCHESTRATION = "orchestration"  # the same cell on the same host passes through the engine's CLI, not as a pod
    ROOTLESS = "rootless"  # passes when an unprivileged user's engine runs it, in a user namespace
    INTERACTION = "interaction"  # more than one single swap turns it into a pass
    IMAGE = "the image or the scenario"  # no swap does
    IMAGE_CONTENT = "image"  # the same scenario passes in another image on the same host
    UNCHANGED = "unchanged"  # an experiment's layer: the cell run again as it was


@dataclass(frozen=True)
class Experiment:
    """One run of a failing cell with exactly one thing changed (or nothing, for the rerun)."""

    layer: Layer
    swap: str  # what was changed, e.g. "seccomp=unconfined"; "" for the unchanged rerun
    command: list[str]
    outcome: Outcome
    exit_code: int | None
    duration: float
    evidence: str = ""  # its output's tail, and the LSM denials the host logged meanwhile

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Experiment":
        return cls(**{**data, "layer": Layer(data["layer"]), "outcome": Outcome(data["outcome"])})


@dataclass(frozen=True)
class Verdict:
    """Which layer broke, for the failing cells that failed alike: its experiments, and whether
    repeating the decisive ones moved the outcome as the verdict predicts (confirmation)."""

    layer: Layer
    summary: str  # "LSM: passes with apparmor=unconfined"
    cells: list[str]  # the cells it covers (the same scenario failing the same way); the first was experimented on
    experiments: list[Experiment] = field(default_factory=list)
    confirmed: bool | None = None  # None: nothing to confirm (flaky, the image or the scenario)
    confirmation: str = ""
    # The same image and scenario on the matrix's hosts that differ from this cell's host in one
    # setting: "passes on bookworm-amd64-docker (engine docker instead of podman)".
    siblings: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Verdict":
        return cls(**{**data, "layer": Layer(data["layer"]), "experiments": [Experiment.from_json(e) for e in data.get("experiments", [])]})


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
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # keyed by the first cell they cover
    # With --history: per pair that was good in an earlier run and is bad now, what changed since.
    history: dict[str, list[str]] = field(default_factory=dict)
    coverage: str = ""  # with --cover: which cells were sampled, and the value combinations they cover
    schema_version: int = SCHEMA_VERSION

    def verdict_of(self, cell_key: str) -> Verdict | None:
        return next((v for v in self.verdicts.values() if cell_key in v.cells), None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunResults":
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"results schema version {data.get('schema_version')!r} is not {SCHEMA_VERSION}")
        plain = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        plain["hosts"] = {k: HostRecord.from_json(v) for k, v in data.get("hosts", {}).items()}
        plain["deliveries"] = {k: DeliveryRecord.from_json(v) for k, v in data.get("deliveries", {}).items()}
        plain["images"] = {k: ImageRecord.from_json(v) for k, v in data.get("images", {}).items()}
        plain["cells"] = {k: CellResult.from_json(v) for k, v in data.get("cells", {}).items()}
        plain["pairs"] = {k: PairResult.from_json(v) for k, v in data.get("pairs", {}).items()}
        plain["verdicts"] = {k: Verdict.from_json(v) for k, v in data.get("verdicts", {}).items()}
        return cls(**plain)
