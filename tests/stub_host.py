"""A stub host kind for tests and bench/scale.py: hosts that answer at once, with what a test
scripts for each scenario, and image builds that build nothing. Given to a run through
harness.session.Parts (in a pytest plugin: harness.plugin.options.PARTS_KEY), never by monkeypatching."""

from __future__ import annotations

import inspect

from pathlib import Path
from typing import Callable

from harness.config.model import HostKind, HypervisorSpec, ImageSpec, Matrix, ScenarioSpec
from harness.hosts.kinds.base import HostKindDriver
from harness.hosts.provider import Host, HostError, PullResult
from harness.images.build import ImageBuild
from harness.results.model import DeliveryRecord, ExecRecord, HostRecord, StoreUse

# What a stub host's scenario run gives: an exit code, an ExecRecord, or an exception to raise.
Answer = int | ExecRecord | Exception


class StubHost(Host):
    """Every command succeeds at once; `script` gives scenario runs their answers in turn (the last
    answer repeats), or a function of the scenario as run (its options show a blame experiment's
    swap); scenarios whose names end in -fails fail. With script["pull"] (pairs of exit
    code and output) the host pulls its images, as VM hosts do."""

    def __init__(self, spec, script: dict[str, list[Answer]] | None = None, log: list[str] | None = None):
        super().__init__(spec, HostRecord(spec.name, spec.release, spec.arch, spec.engine, spec.runtime, kind=spec.kind, settings=spec.settings()))
        self.script = script if script is not None else {}
        self.log = log if log is not None else []
        self.stopped = False

    def _ok(self, argv: list[str], code: int = 0, stdout: str = "stub output\n") -> ExecRecord:
        self.log.append(" ".join(argv))
        return ExecRecord(argv, code, stdout, "", 0.0)

    def start(self, images: list[ImageBuild], scenarios: list[ScenarioSpec], plain_http: list[str]) -> None:
        self.record.boot_seconds = 0.0

    def load_image(self, image: ImageBuild, timeout: float) -> ExecRecord:
        return self._ok(["stub", "load", image.name])

    def runtimes(self) -> list[str]:
        return ["crun", "runc"]

    def allows_rootless(self) -> bool:
        """With script["rootless"] (exit codes of putting an image into the user's store, in turn)."""
        return "rootless" in self.script

    def rootless_store(self, delivery: DeliveryRecord, timeout: float) -> ExecRecord:
        answers = self.script["rootless"]
        code = answers.pop(0) if len(answers) > 1 else answers[0]
        return self._ok(["stub", "rootless", "pull", delivery.image, f"--timeout={timeout:g}"], code, "" if code == 0 else "Error: newuidmap: write to uid_map failed\n")

    def run_scenario(self, image_id: str, scenario: ScenarioSpec, timeout: float) -> ExecRecord:
        answers = self.script.get(scenario.name)
        if callable(answers):  # answers by what the container runs with (a blame experiment's swap), or in which image
            answers = [answers(scenario, image_id) if len(inspect.signature(answers).parameters) == 2 else answers(scenario)]
        if not answers:
            return self._ok(["stub", "run", image_id, scenario.name], 1 if scenario.name.endswith("-fails") else 0)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        self.log.append(f"stub run {image_id} {scenario.name}")
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, ExecRecord):
            return answer
        return ExecRecord(["stub", "run", image_id, scenario.name], answer, f"exit {answer}\n", "", 0.0)

    def pulls(self) -> bool:
        return "pull" in self.script

    def pull_image(self, image_name: str, reference: str, timeout: float, tls_verify: bool = False, access=None, pinned: bool = False) -> PullResult:
        """Answers from script["pull"] in turn: an exit code, with "output" lines after it."""
        answers = self.script["pull"]
        code, output = answers.pop(0) if len(answers) > 1 else answers[0]
        self.log.append(f"stub pull {reference}")
        pulled = ExecRecord(["stub", "pull", reference], code, "", output, 0.1)
        if code != 0:
            return PullResult(pulled)
        return PullResult(pulled, f"sha256:{image_name}", "linux/amd64", StoreUse.PULLED, 1000)

    def check_needs(self, image_id: str, scenario: ScenarioSpec, timeout: float) -> ExecRecord:
        lacking = [c for c in scenario.needs if c.startswith("missing-")]
        if lacking:
            return self._ok(["stub", "needs", image_id], 77, f"not applicable: the image has no {' '.join(lacking)}\n")
        return self._ok(["stub", "needs", image_id])

    def reproduce(self, delivery: DeliveryRecord, scenario: ScenarioSpec) -> list[str]:
        return [f"stub run {delivery.image} {scenario.name}"]

    def read_facts(self) -> dict[str, str]:
        return {"kernel": "stub", "machine": self.record.arch}

    def stop(self) -> None:
        self.stopped = True


class StubKind(HostKindDriver):
    """Provisions StubHosts; `StubKind.hosts` keeps every one made, for tests to look at."""

    kind = HostKind.VM
    hosts: list[StubHost] = []
    script: dict[str, list[Answer]] = {}
    # Called with the host's name before it is provisioned: a test makes it raise.
    before: Callable[[str], None] = staticmethod(lambda _name: None)

    def provision(self, spec, waiting: Callable[[str], None]) -> Host:
        type(self).before(spec.name)
        host = StubHost(spec, type(self).script)
        type(self).hosts.append(host)
        return host

    @classmethod
    def cache_key(cls, spec, matrix: Matrix) -> dict:
        return {"stub": spec.name}

    @classmethod
    def doctor(cls, specs, pool: tuple[HypervisorSpec, ...]) -> list[str]:
        return []


def stub_build(spec: ImageSpec, arch: str, mirror: str, cache, base: ImageBuild | None = None) -> tuple[ImageBuild, bool]:
    """An image build that builds nothing, with build_image's signature."""
    return ImageBuild(spec.name, arch, "0" * 64, Path("/dev/null"), f"sha256:{spec.name}-{arch}", 0), False
