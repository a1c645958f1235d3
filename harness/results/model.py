"""Results as plain dataclasses with a versioned JSON form; the report reads only these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1

# Outcomes of one cell. "error" is the harness's or the host's fault, never the image's.
OUTCOMES = ("pass", "fail", "error", "timeout")


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
    recipe_digest: str = ""
    accel: str = ""
    cpu_model: str = ""
    boot_seconds: float | None = None
    facts: dict[str, str] = field(default_factory=dict)
    console_log: str = ""  # path relative to the reports directory
    error: str = ""


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

    @property
    def key(self) -> str:
        return f"{self.host}/{self.image}/{self.scenario}"


@dataclass
class RunResults:
    """Everything one matrix run measured, as written to results.json."""

    run_id: str
    matrix: str
    started_at: str
    harness_version: str
    finished_at: str = ""
    hosts: dict[str, HostRecord] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    deliveries: dict[str, DeliveryRecord] = field(default_factory=dict)
    cells: dict[str, CellResult] = field(default_factory=dict)
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
        plain["cells"] = {k: CellResult(**v) for k, v in data.get("cells", {}).items()}
        return cls(**plain)
