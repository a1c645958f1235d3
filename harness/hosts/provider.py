"""The host seam: anything that runs a container engine for the matrix.

Two kinds sit behind it: libvirt VMs built from a release (hosts/libvirt.py) and existing engines
reached over the Docker API (hosts/engine.py). Like tmt's Guest, a Host is started, used and stopped;
unlike a plain shell guest, its operations are the engine's: load an image, run a scenario.
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass

from harness.config.model import HostSpec, ScenarioSpec
from harness.images.build import ImageBuild
from harness.registry.publish import GUEST_GATEWAY
from harness.results.model import DeliveryRecord, ExecRecord, HostRecord, StoreUse

# Where a scenario's directory appears inside every container: /harness/scenarios/<name>/run.
SCENARIOS_IN_CONTAINER = "/harness/scenarios"


# Exit code that means "not applicable" (automake's and meson's SKIP): a scenario may use it too.
NOT_APPLICABLE = 77
# podman's and docker's exit code when they could not create or start the container at all.
ENGINE_FAILED = 125
# Checks a scenario's needs inside the container before running it, in whatever /bin/sh it has.
# It names every missing command, so one check (running `true`) answers for the needs of every
# scenario of an image on a host.
_LACKS = "not applicable: the image has no"
_NEEDS = (
    'run=$1; shift; m=; for c; do command -v "$c" >/dev/null 2>&1 || m="$m $c"; done; '
    f'[ -z "$m" ] || {{ echo "{_LACKS}$m"; exit {NOT_APPLICABLE}; }}; exec "$run"'
)


@dataclass(frozen=True)
class PullAccess:
    """What one pull from a private registry needs on the host: an auth file holding only that
    registry's credentials (under the name the host reaches it by), and its CA certificate."""

    auth_json: bytes | None = None
    ca_pem: bytes | None = None
    auth_file: str = ""  # where the matrix's credentials came from: what logs may name

    def user(self) -> bytes:
        """The auth file's one entry as "user:password", the form containerd's ctr takes."""
        (entry,) = json.loads(self.auth_json or b"")["auths"].values()
        return base64.b64decode(entry["auth"])


@dataclass(frozen=True)
class PullResult:
    """What a pull gave: the command as run, the image ID and "os/arch" the engine selected (both
    "" when it failed), and whether the host's kept store already held it."""

    run: ExecRecord
    image_id: str = ""
    platform: str = ""
    store: StoreUse = StoreUse.NONE
    received_bytes: int | None = None


def missing_from(check: ExecRecord) -> set[str] | None:
    """The commands a needs check found missing; None when the check itself failed."""
    if check.exit_code == 0:
        return set()
    if check.exit_code == NOT_APPLICABLE and check.stdout.startswith(_LACKS):
        return set(check.stdout.splitlines()[0][len(_LACKS):].split())
    return None


def scenario_mount(scenario: ScenarioSpec) -> str:
    return f"{SCENARIOS_IN_CONTAINER}/{scenario.name}"


def scenario_command(scenario: ScenarioSpec, script: str | None = None) -> list[str]:
    """The container command: the scenario's script, behind a check of what it needs from the image."""
    script = script or f"{scenario_mount(scenario)}/run"
    if not scenario.needs:
        return [script]
    return ["/bin/sh", "-c", _NEEDS, "needs", script, *scenario.needs]


def needs_check(scenario: ScenarioSpec) -> list[str] | None:
    """For service scenarios: a command that only checks the needs, run before the image's init starts."""
    return scenario_command(scenario, "true") if scenario.needs else None


class HostError(Exception):
    """The host (not the image) failed: it did not boot, stopped answering, or its engine is broken."""


class Host(ABC):
    """A started host of one kind. Its record is written by the fleet and by the host itself only."""

    def __init__(self, spec: HostSpec, record: HostRecord):
        self.spec, self.record = spec, record

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def time_scale(self) -> float:
        """Factor for the matrix's timeouts (given for real hardware) on this host: >1 when emulated."""
        return self.record.time_scale

    @property
    def cell_timeout(self) -> float:
        """The matrix's cell timeout on this host (a health check, a needs check)."""
        return self.spec.machine.cell_timeout * self.time_scale

    @property
    def delivery_timeout(self) -> float:
        """For loading or pulling an image: four cells' worth."""
        return 4 * self.cell_timeout

    def timeout_for(self, scenario: ScenarioSpec) -> float:
        """The scenario's own timeout, else the matrix's, on this host."""
        return (scenario.timeout or self.spec.machine.cell_timeout) * self.time_scale

    @property
    def arch(self) -> str:
        """Debian name of the host's architecture: which build of each image it needs."""
        return self.record.arch

    @abstractmethod
    def start(self, images: list[ImageBuild], scenarios: list[ScenarioSpec], plain_http: list[str]) -> None:
        """Make the host ready, with `images` and `scenarios` within its reach, its engine allowed
        to pull over plain HTTP from the registries `plain_http` (host:port); raise HostError."""

    @abstractmethod
    def load_image(self, image: ImageBuild, timeout: float) -> ExecRecord:
        """Load the image into the host's engine (the portability half of a cell)."""

    def pulls(self) -> bool:
        """Whether images reach this host by reference from the harness's registry (VM hosts do)."""
        return False

    def guest_gateway(self) -> str:
        """This machine's address as the host's guests reach it (where the harness's registry is)."""
        return GUEST_GATEWAY

    def pull_image(self, image_name: str, reference: str, timeout: float, tls_verify: bool = False, access: PullAccess | None = None,
                   pinned: bool = False) -> PullResult:
        """Pull image_name by reference with the host's engine.
        access: a private registry's credentials and CA, given to the engine for this pull only.
        pinned: the reference names its content (the harness's own tags are its digest), so an image
        the host's kept store holds under it need not be asked of the registry again."""
        raise HostError(f"host {self.name} does not pull images")

    @abstractmethod
    def run_scenario(self, image_id: str, scenario: ScenarioSpec, timeout: float) -> ExecRecord:
        """Run the scenario in a new container of the image (the compatibility half of a cell)."""

    @abstractmethod
    def check_needs(self, image_id: str, scenario: ScenarioSpec, timeout: float) -> ExecRecord:
        """Run the scenario's needs check alone (needs_check) in a new container of the image."""

    @abstractmethod
    def reproduce(self, delivery: DeliveryRecord, scenario: ScenarioSpec) -> list[str]:
        """Shell lines that run the cell by hand on this host, exactly as the harness does: the
        delivery's own command (pull or load), then the scenario's."""

    @abstractmethod
    def read_facts(self) -> dict[str, str]:
        """What the running host really is, as read from it (os-release, kernel, arch, engine,
        runtime...); its kind's driver turns it into typed facts."""

    @abstractmethod
    def stop(self) -> None:
        """Tear the host down and remove everything start() created; safe to call twice."""

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> ExecRecord:
        """A command on the host itself (a VM's guest), not in a container: `harness reproduce --shell`."""
        raise HostError(f"host {self.name}: a {self.spec.kind} host has no shell the harness can open")

    def runtimes(self) -> list[str]:
        """The OCI runtimes the host's engine can run containers with (a blame experiment swaps)."""
        return [self.spec.runtime] if self.spec.runtime else []

    def allows_rootless(self) -> bool:
        """Whether an unprivileged user's engine can run containers here (a blame experiment)."""
        return False

    def rootless_store(self, delivery: DeliveryRecord, timeout: float) -> ExecRecord:
        """The delivered image put into that user's own store, as the delivery did for root."""
        raise HostError(f"host {self.name}: no rootless engine")

    def denials_since(self, seconds: float) -> list[str]:
        """The LSM's denials (AppArmor DENIED, SELinux AVC) the host logged in the last `seconds`."""
        return []

    def evidence(self) -> dict[str, str]:
        """Files worth keeping after the run, by name (a VM's serial console log)."""
        return {}
