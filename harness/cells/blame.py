"""Which layer broke: a failing cell run again with exactly one thing changed, cheapest first, as
openQA's investigation jobs and KernelCI's bisection do, then the verdict confirmed by repeating
the decisive runs.

The experiments here change the container's layers on the same host: nothing (a rerun, to tell a
flake), the seccomp profile (unconfined), the LSM's confinement (AppArmor unconfined, SELinux
label=disable), the OCI runtime (crun <-> runc, where the host has both: every podman host). Failures that look the
same (one scenario failing the same way on many images or hosts) are blamed once, and the verdict
lists every cell it covers: also across a run's xdist workers, which claim a failure pattern in the
run's directory; a worker whose pattern another claimed waits for that verdict instead of repeating
its experiments.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from harness.cache import digest_of
from harness.cells.siblings import SETTINGS
from harness.cells.verdict import judge
from harness.config.model import HostSpec, ImageSpec, Matrix, ScenarioSpec
from harness.hosts.provider import Host, HostError
from harness.results.model import CellResult, DeliveryRecord, ExecRecord, Experiment, Layer, Outcome, Verdict

# Outcomes a blame is run for: the image's failures as judged, and the engine's refusals.
BLAMED = (Outcome.FAIL, Outcome.TIMEOUT, Outcome.ENGINE_ERROR)
# How many times the decisive runs are repeated to confirm a verdict.
CONFIRM_RUNS = 1


@dataclass(frozen=True)
class Swap:
    """One layer of the container changed for an experiment."""

    layer: Layer
    what: str  # as the report says it: "seccomp=unconfined", "runtime runc"
    security_opt: tuple[str, ...] = ()
    runtime: str | None = None
    rootless: bool = False
    via: str | None = None

    def apply(self, scenario: ScenarioSpec) -> ScenarioSpec:
        """The scenario as the swap runs it (an image swap changes the delivery, not the scenario)."""
        options = replace(scenario.options, security_opt=scenario.options.security_opt + self.security_opt,
                          runtime=self.runtime or scenario.options.runtime, rootless=self.rootless or scenario.options.rootless,
                          via=self.via or scenario.options.via)
        return replace(scenario, options=options)


UNCHANGED = Swap(Layer.UNCHANGED, "")
ROOTLESS = Swap(Layer.ROOTLESS, "rootless", rootless=True)
VIA_ENGINE = {  # a pod host's, a CRI host's one swap: the cell through the engine's CLI instead
    "pod": Swap(Layer.ORCHESTRATION, "podman run instead of a pod", via="engine"),
    "cri": Swap(Layer.ORCHESTRATION, "podman run instead of the CRI", via="engine"),
}
_RELEASED = object()  # a pattern's claim given up by the worker that held it
_ELSEWHERE = object()  # another worker's verdict that does not hold on this host


def swaps_for(host: Host) -> list[Swap]:
    """The single-layer swaps this host allows, cheapest first. On a pod or CRI host the one that
    such a cell can be run without: the same cell through the engine's CLI (podman run)."""
    if host.spec.via in VIA_ENGINE:
        return [VIA_ENGINE[host.spec.via]]
    swaps = [Swap(Layer.SECCOMP, "seccomp=unconfined", ("seccomp=unconfined",))]
    lsm = host.record.settings.get("lsm", "")
    if lsm == "apparmor":
        swaps.append(Swap(Layer.LSM, "apparmor=unconfined", ("apparmor=unconfined",)))
    elif lsm == "selinux":
        swaps.append(Swap(Layer.LSM, "label=disable", ("label=disable",)))
    elif not lsm:  # an engine host: its engine says which LSM confines containers
        said = host.record.facts.lsm
        if "apparmor" in said:
            swaps.append(Swap(Layer.LSM, "apparmor=unconfined", ("apparmor=unconfined",)))
        if "selinux" in said:
            swaps.append(Swap(Layer.LSM, "label=disable", ("label=disable",)))
    others = [r for r in host.runtimes() if r != host.record.runtime and r in ("crun", "runc")]
    if others:
        swaps.append(Swap(Layer.RUNTIME, f"runtime {others[0]}", runtime=others[0]))
    if host.allows_rootless():  # the dearest: the image is pulled again, into the user's own store
        swaps.append(ROOTLESS)
    return swaps


def transfers(verdict: Verdict, swaps: list[Swap]) -> bool:
    """Whether a verdict found on one host holds for the same failure on a host with these swaps:
    one that names no swap (the image or the scenario, flaky) does; one that names swaps only if
    each can be made there (an AppArmor verdict says nothing of an SELinux host)."""
    fixes = {e.swap for e in verdict.experiments if e.layer != Layer.UNCHANGED and e.outcome.passed}
    return fixes <= {s.what for s in swaps}


def signature(cell: CellResult) -> tuple:
    """Failures that look the same: one scenario, one outcome and exit status, and the same last
    line of error output once numbers (PIDs, addresses, durations) are left out."""
    said = (cell.stderr.strip() or cell.stdout.strip()).splitlines()
    last = re.sub(r"\d+", "N", said[-1]) if said else ""
    return (cell.scenario, cell.outcome, cell.exit_code, last)


@dataclass(frozen=True)
class ImageVariants:
    """Other images for a failing cell's scenario on the same host: `images` names them (what the
    report calls each, and its recipe), `deliver` gets one into the host's engine (a record, or
    why it could not)."""

    images: Callable[[Host, str], list[tuple[str, ImageSpec]]]
    deliver: Callable[[Host, ImageSpec], "DeliveryRecord | str"]


def image_variants(matrix: Matrix, host: Host, image_name: str) -> list[tuple[str, ImageSpec]]:
    """For a built image: itself built from the host's release, then from its own release's
    neighbours; for any image, the host release's own base image (minbase)."""
    spec, release = matrix.image(image_name), getattr(host.spec, "release", "")
    order = matrix.policy.release_order
    found: list[tuple[str, ImageSpec]] = []
    if spec.release and not (spec.reference or spec.archive or spec.base):
        at = order.index(spec.release) if spec.release in order else -1
        neighbours = [order[i] for i in (at - 1, at + 1) if at >= 0 and 0 <= i < len(order)]
        for other in dict.fromkeys([release, *neighbours]):
            if other and other != spec.release:
                whose = "the host's release" if other == release else "a neighbouring release"
                found.append((f"{spec.name} built from {other} ({whose})", replace(spec, name=f"harness-variant-{spec.name}-{other}", release=other, arches=())))
    if release in order and not (spec.release == release and not (spec.reference or spec.archive or spec.base)):
        found.append((f"{release}'s own base image", ImageSpec(f"harness-variant-base-{release}", release, (), ("/bin/bash",))))
    return found


@dataclass(frozen=True)
class HostVariants:
    """Hosts built like a failing cell's with one setting changed (cells/siblings.variants_of names
    them): `start` boots one with the image's delivery in mind (HostError if it cannot), `deliver`
    gets the image there (a record, or why not), `stop` tears it down."""

    variants: Callable[[str], list[tuple[str, str, HostSpec]]]  # host name -> (setting, what changed, spec)
    start: Callable[[HostSpec, str], Host]
    deliver: Callable[[Host, str], "DeliveryRecord | str"]
    stop: Callable[[Host], None]


# Variant hosts booted per failing host at most (each once, for all its unexplained failures):
# each is a VM, the costliest experiment, and counts as this many against the budget (a boot under
# TCG takes about as long as five short containers).
HOST_VARIANTS_PER_HOST = 2
BOOT_COST = 5
# Other images a failure pattern is run in at most (each may be a build, then a pull).
IMAGE_VARIANTS_PER_PATTERN = 2


@dataclass(frozen=True)
class _Claim:
    path: Path
    owned: bool  # this worker runs the experiments; otherwise it waits for the verdict


@dataclass
class Blamer:
    """Runs the experiments of a run's failing cells within a budget of experiments."""

    budget: int = 40  # experiments per process (each is one container)
    spent: int = 0
    verdicts: dict[tuple, list[Verdict]] = field(default_factory=dict)  # by signature: one per set of hosts it holds on
    shared: Path | None = None  # where the run's workers claim failure patterns (None: this process alone)
    variants: "ImageVariants | None" = None  # other images to run a failure in (None: no image swaps)
    host_variants: "HostVariants | None" = None  # hosts one setting apart (None: no host swaps)
    progress: Callable[[str, str], None] = lambda _host, _what: None  # a progress line per experiment

    def covered(self, cell: CellResult, swaps: list[Swap]) -> Verdict | None:
        """The verdict of an earlier failure that looked the same, now covering this cell too, if
        it holds on this cell's host (see transfers)."""
        known = self.verdicts.get(signature(cell), [])
        index = next((i for i, v in enumerate(known) if transfers(v, swaps)), None)
        if index is None:
            return None
        if cell.key not in known[index].cells:
            known[index] = replace(known[index], cells=[*known[index].cells, cell.key])
        return known[index]

    def blame(self, host: Host, delivery: DeliveryRecord, scenario: ScenarioSpec, failed: CellResult) -> Verdict | None:
        """The verdict for a failing cell (None: not a failure to blame, or no budget left)."""
        if failed.outcome not in BLAMED or scenario.mode == "host":
            return None  # a host-side test starts its own containers: no swap reaches them
        swaps = swaps_for(host)
        if (known := self.covered(failed, swaps)) is not None:
            return known
        timeout = host.timeout_for(scenario)
        claim = self._claim(failed)
        while claim is not None and not claim.owned:
            theirs = self._theirs(failed, swaps, claim.path, timeout * (len(swaps) + 1 + 2 * CONFIRM_RUNS) + 60)
            if theirs is _ELSEWHERE:
                claim = None  # their verdict's swap does not apply here: blame it here, for this host alone
            elif theirs is _RELEASED:
                claim = self._claim(failed)
            else:
                return theirs
        if self.spent + 1 + len(swaps) > self.budget:
            if claim is not None:
                claim.path.unlink()  # another worker may have budget left
            return None
        try:
            verdict = self._experiments(host, delivery, scenario, failed, swaps, timeout)
        except BaseException:
            if claim is not None:
                claim.path.unlink()  # the host broke meanwhile: another worker may blame it
            raise
        self.verdicts.setdefault(signature(failed), []).append(verdict)
        self._publish(claim, verdict)
        return verdict

    def _experiments(self, host: Host, delivery: DeliveryRecord, scenario: ScenarioSpec, failed: CellResult, swaps: list[Swap], timeout: float) -> Verdict:
        rerun = self._experiment(host, delivery, scenario, UNCHANGED, timeout)
        if rerun.outcome.passed:
            return Verdict(Layer.FLAKY, "flaky: failed, then passed when run again unchanged", [failed.key], [rerun])
        ran = [s for s in swaps if not s.rootless]
        tried = [self._experiment(host, delivery, scenario, swap, timeout) for swap in ran]
        if not any(e.outcome.passed for e in tried) and scenario.mode != "service":  # a service's exec and removal stay root's
            # Rootless costs a second pull of the image (its own store): tried only when no cheaper
            # swap explained the failure. Beside another it would not be a single layer anyway:
            # rootless podman applies no AppArmor profile (seen on bookworm: a tmpfs mount AppArmor
            # denies passed rootless too).
            dear = [s for s in swaps if s.rootless]
            tried += [self._experiment(host, delivery, scenario, swap, timeout) for swap in dear]
            ran += dear
        fixes = [(s, e) for s, e in zip(ran, tried) if e.outcome.passed]
        verdict = self._verdict(failed, [rerun, *tried], fixes)
        if len(fixes) == 1:
            verdict = self._confirm(host, delivery, scenario, fixes[0][0], timeout, verdict)
        elif not fixes and self.variants is not None:
            verdict = self._image_swaps(host, delivery, scenario, failed, timeout, verdict)
        return verdict

    def _image_swaps(self, host: Host, delivery: DeliveryRecord, scenario: ScenarioSpec, failed: CellResult, timeout: float, verdict: Verdict) -> Verdict:
        """No container swap helped: the same scenario in other images on the same host (the
        failing image built from the host's release and its neighbours, the host release's own
        base image), most telling first, until one passes; that one is then confirmed."""
        tried = []
        for what, spec in self.variants.images(host, failed.image)[:IMAGE_VARIANTS_PER_PATTERN]:
            if self.spent + 1 > self.budget:
                break
            other = self.variants.deliver(host, spec)
            if isinstance(other, str):  # it could not be built or delivered: say so, go on
                tried.append(Experiment(Layer.IMAGE_CONTENT, f"image {what}", [], Outcome.ERROR, None, 0.0, other[-1500:]))
                continue
            swap = Swap(Layer.IMAGE_CONTENT, f"image {what}")
            tried.append(self._experiment(host, other, scenario, swap, timeout))
            if tried[-1].outcome.passed:
                found = replace(verdict, layer=Layer.IMAGE_CONTENT, summary=f"image: passes in {what}", experiments=[*verdict.experiments, *tried])
                return self._confirm(host, delivery, scenario, swap, timeout, found, other)
        if not tried:
            return verdict
        return replace(verdict, summary=f"{verdict.summary}, and fails in {', '.join(e.swap.removeprefix('image ') for e in tried)} too", experiments=[*verdict.experiments, *tried])

    def blame_hosts(self, host: str, pending: list[tuple[Verdict, str, ScenarioSpec]]) -> list[Verdict]:
        """After a host is stopped (its slot free again), its failures that nothing on it explained
        (verdict, image, scenario) run on hosts built like it with one setting changed, for a host
        the matrix has no sibling of, cheapest first: each variant is booted once for all of them,
        and the next only for those still unexplained. A failure that passes on a variant is run
        there again to confirm (unchanged it already failed twice: the cell and its rerun)."""
        done = [v for v, _, _ in pending]
        todo = [i for i, (v, _, _) in enumerate(pending) if self.host_variants is not None and v.layer == Layer.IMAGE and v.cells[0].startswith(f"{host}/")]
        for setting, what, spec in (self.host_variants.variants(host) if todo and self.host_variants else [])[:HOST_VARIANTS_PER_HOST]:
            if self.spent + BOOT_COST + len(todo) > self.budget:
                break
            swap = Swap(SETTINGS[setting], f"{what} (a variant host)")
            self.spent += BOOT_COST
            try:
                variant = self.host_variants.start(spec, pending[todo[0]][1])
            except HostError as exc:
                for i in todo:
                    done[i] = self._tried(done[i], [Experiment(swap.layer, swap.what, [], Outcome.ERROR, None, 0.0, str(exc)[-1500:])])
                continue
            try:
                for i in list(todo):
                    done[i] = self._on_variant(variant, swap, what, done[i], pending[i][1], pending[i][2])
                    if done[i].layer != Layer.IMAGE:
                        todo.remove(i)
            finally:
                self.host_variants.stop(variant)
            if not todo:
                break
        return done

    def _on_variant(self, variant: Host, swap: Swap, what: str, verdict: Verdict, image: str, scenario: ScenarioSpec) -> Verdict:
        """One unexplained failure on a started variant host: the verdict, explained or with the try added."""
        try:
            delivery = self.host_variants.deliver(variant, image)
            if isinstance(delivery, str):
                return self._tried(verdict, [Experiment(swap.layer, swap.what, [], Outcome.ERROR, None, 0.0, delivery[-1500:])])
            first = self._experiment(variant, delivery, scenario, swap, variant.timeout_for(scenario))
            if not first.outcome.passed:
                return self._tried(verdict, [first])
            again = self._experiment(variant, delivery, scenario, swap, variant.timeout_for(scenario))
            held = again.outcome.passed
            how = f"on the variant host again: {again.outcome}; unchanged it failed twice (the cell and its rerun)"
            return replace(verdict, layer=swap.layer, summary=f"{swap.layer}: passes on a variant host with {what}", experiments=[*verdict.experiments, first, again],
                           confirmed=held, confirmation=("confirmed: " if held else "NOT confirmed: ") + how)
        except HostError as exc:
            return self._tried(verdict, [Experiment(swap.layer, swap.what, [], Outcome.ERROR, None, 0.0, str(exc)[-1500:])])

    @staticmethod
    def _tried(verdict: Verdict, tried: list[Experiment]) -> Verdict:
        """A verdict still unexplained, with what was tried on variant hosts."""
        on = "; on variant hosts too" if "on variant hosts too" not in verdict.summary else ""
        return replace(verdict, summary=verdict.summary + on, experiments=[*verdict.experiments, *tried])

    def _claim(self, failed: CellResult) -> "_Claim | None":
        """Claim the failure's pattern for this worker, unless another worker of the run has."""
        if self.shared is None:
            return None
        self.shared.mkdir(parents=True, exist_ok=True)
        pattern = digest_of({"signature": [str(part) for part in signature(failed)]})
        path = self.shared / f"{pattern}.json"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return _Claim(path, owned=False)
        return _Claim(path, owned=True)

    @staticmethod
    def _publish(claim: "_Claim | None", verdict: Verdict) -> None:
        if claim is not None:
            tmp = claim.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(verdict)))
            tmp.replace(claim.path)

    def _theirs(self, failed: CellResult, swaps: list[Swap], path: Path, patience: float) -> "Verdict | None | object":
        """Another worker's verdict on this pattern, now covering this cell too; _RELEASED if that
        worker gave the pattern up (no budget left), _ELSEWHERE if the verdict does not hold on this
        host; None if its verdict never comes (it died): the cell then keeps its outcome without a
        verdict."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            try:
                verdict = Verdict.from_json(json.loads(path.read_text()))
            except FileNotFoundError:
                return _RELEASED
            except ValueError:  # claimed, verdict not written yet
                time.sleep(0.5)
                continue
            if not transfers(verdict, swaps):
                return _ELSEWHERE
            if verdict.cells[0] not in [v.cells[0] for v in self.verdicts.get(signature(failed), [])]:
                self.verdicts.setdefault(signature(failed), []).append(verdict)
            return self.covered(failed, swaps)
        return None

    @staticmethod
    def _verdict(failed: CellResult, experiments: list[Experiment], fixes: list[tuple[Swap, Experiment]]) -> Verdict:
        if not fixes:
            return Verdict(Layer.IMAGE, "the image or the scenario: it fails with every single layer swapped", [failed.key], experiments)
        if len(fixes) > 1:
            what = ", ".join(s.what for s, _ in fixes)
            return Verdict(Layer.INTERACTION, f"interaction: passes with any of {what}", [failed.key], experiments)
        swap = fixes[0][0]
        return Verdict(swap.layer, f"{swap.layer}: passes with {swap.what}", [failed.key], experiments)

    def _confirm(self, host: Host, delivery: DeliveryRecord, scenario: ScenarioSpec, swap: Swap, timeout: float, verdict: Verdict, swapped_image: DeliveryRecord | None = None) -> Verdict:
        """Repeat the decisive runs: unchanged it must fail again, with the swap (or in the other
        image) pass again."""
        again = [self._experiment(host, delivery, scenario, UNCHANGED, timeout) for _ in range(CONFIRM_RUNS)]
        swapped = [self._experiment(host, swapped_image or delivery, scenario, swap, timeout) for _ in range(CONFIRM_RUNS)]
        held = all(not e.outcome.passed for e in again) and all(e.outcome.passed for e in swapped)
        how = f"run again unchanged: {', '.join(e.outcome for e in again)}; with {swap.what}: {', '.join(e.outcome for e in swapped)}"
        return replace(verdict, experiments=[*verdict.experiments, *again, *swapped], confirmed=held, confirmation=("confirmed: " if held else "NOT confirmed: ") + how)

    def _experiment(self, host: Host, delivery: DeliveryRecord, scenario: ScenarioSpec, swap: Swap, timeout: float) -> Experiment:
        self.spent += 1
        self.progress(host.name, f"{scenario.name}: {swap.what or 'run again unchanged'} (experiment {self.spent} of at most {self.budget})")
        started = time.monotonic()
        # The user's store is filled as the delivery filled root's: with a delivery's time.
        if swap.rootless and (stored := host.rootless_store(delivery, host.delivery_timeout)).exit_code != 0:
            said = (stored.stdout + stored.stderr).strip()[-1500:]
            return Experiment(swap.layer, swap.what, stored.argv, Outcome.ERROR, stored.exit_code, round(stored.duration, 3),
                              f"the image could not be put into the unprivileged user's store, so nothing was learnt:\n{said}")
        run: ExecRecord = host.run_scenario(delivery.image_id, swap.apply(scenario), timeout)
        outcome, message = judge(run)
        denials = host.denials_since(time.monotonic() - started)
        said = (run.stdout + run.stderr).strip()[-1500:]
        evidence = "\n".join([message, said, *(["LSM denials meanwhile:", *denials[-20:]] if denials else [])]).strip()
        return Experiment(swap.layer, swap.what, run.argv, outcome, run.exit_code, round(run.duration, 3), evidence)
