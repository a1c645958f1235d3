"""A run's live state in one process: which hosts are up, which images each host has, and the cells.

Each host starts once, on its first cell, and serves every later cell; an image is loaded into a
host's engine once, on its first cell there. A host that failed to start is not retried per cell:
its failure is the verdict of each of its cells.
"""

from __future__ import annotations

import errno
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.cache import BuildCache
from harness.cell import apply_known_issues, cell_result, clip, error_result, now, with_retries
from harness.config.model import ARCHES, PROBE_IMAGE, HypervisorSpec, ImageSpec, Matrix, ScenarioSpec
from harness.hosts.hypervisors import HypervisorLost
from harness.hosts.provider import NOT_APPLICABLE, Host, HostError, missing_from
from harness.hosts.provision import Provisioner
from harness.images.build import ImageBuild, build_image, cached_image
from harness.images.freshness import judge
from harness.cleanup import release
from harness.mmdebstrap import BuildError
from harness.progress import ProgressLog
from harness.registry.inspect import describe
from harness.registry.publish import Publication, guest_reference, guest_registry, publish, registry_url
from harness.registry.server import RegistryError
from harness.results.model import CellResult, DeliveryRecord, ExecRecord, HostRecord, ImageBuildRecord, ImageRecord
from harness.results.reuse import ResultCache, cell_key


_PROBE_DIR = Path(__file__).parent / "harness-probe"
# Run in the probe image on every host before its cells; a plain scenario, delivered like the others.
PROBE_SCENARIO = ScenarioSpec("harness-probe", _PROBE_DIR, _PROBE_DIR / "run", "a trivial container runs", None, dimension="engine")


def _os_problem(exc: OSError) -> str:
    """One line for a failure of this machine itself (a full disk, permissions), naming the path."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"the disk is full{where}: free some space, or set HARNESS_CACHE to a larger disk"
    return f"{exc.strerror or exc}{where}"


def _mismatch(image_platform: str, host_platform: str) -> str:
    """The flag raised before a cell runs an image built for another platform than its host's."""
    return f"image is {image_platform}, host is {host_platform}" if image_platform and image_platform != host_platform else ""


class CellError(Exception):
    """A cell could not be judged (host, build or delivery failure); carries the error result."""

    def __init__(self, result: CellResult):
        super().__init__(result.message)
        self.result = result


@dataclass
class MatrixSession:
    matrix: Matrix
    run_id: str
    reports: Path
    cache_root: Path
    hypervisors: tuple[HypervisorSpec, ...] = ()  # empty: the matrix's own pool
    # The images the selected cells need on each host, so a host receives just those, and how many
    # of its cells are still to run, so a host is stopped (freeing its cores) after its last cell.
    needed: dict[str, set[str]] = field(default_factory=dict)
    remaining: dict[str, int] = field(default_factory=dict)
    _provisioner: Provisioner | None = None
    _hosts: dict[str, Host] = field(default_factory=dict)
    _broken: dict[str, str] = field(default_factory=dict)
    _images: dict[tuple[str, str], ImageBuild] = field(default_factory=dict)
    _failed_images: dict[tuple[str, str], str] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], DeliveryRecord] = field(default_factory=dict)
    # --reuse: take unchanged cells from the result cache; every judged cell is stored there anyway.
    reuse: bool = False
    _reused_hosts: dict[str, HostRecord] = field(default_factory=dict)
    # Live progress, for the controller to print; cells started per host, for "scenario k of n".
    progress: ProgressLog | None = None
    # Hosts whose hypervisor was lost under them, with why (they started again elsewhere).
    _moves: dict[str, list[str]] = field(default_factory=dict)
    # Per host and image: the one container that listed what the image lacks of every scenario's
    # needs, and what it lacks.
    _lacks: dict[tuple[str, str], tuple[ExecRecord | None, set[str]]] = field(default_factory=dict)
    _started: dict[str, int] = field(default_factory=dict)
    _publications: dict[str, Publication] = field(default_factory=dict)
    # Facts of the candidate images this process built or took from the cache, for the report.
    image_records: dict[str, ImageRecord] = field(default_factory=dict)
    _total: dict[str, int] = field(default_factory=dict)

    def _phase(self, host: str, phase: str, detail: str = "", step: int = 0, steps: int = 0) -> None:
        if self.progress is not None:
            self.progress.emit(host, phase, detail, step, steps)

    @property
    def results_cache(self) -> ResultCache:
        return ResultCache(self.cache_root)

    @property
    def workdir(self) -> Path:
        return self.cache_root / "runs" / self.run_id

    @property
    def provisioner(self) -> Provisioner:
        if self._provisioner is None:
            self._provisioner = Provisioner(self.matrix, self.run_id, self.cache_root, self.workdir, self.hypervisors)
        return self._provisioner

    def host_record(self, name: str) -> HostRecord:
        if name in self._hosts:
            return self._hosts[name].record
        if name in self._reused_hosts:
            return self._reused_hosts[name]
        spec = self.matrix.host(name)
        return HostRecord(name, spec.release, spec.arch, spec.engine, spec.runtime, kind=spec.kind, settings=spec.settings(), error=self._broken.get(name, ""))

    # -- hosts ------------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        """The running host, provisioning and starting it (with the images it needs) on first use;
        on another hypervisor when the one it was placed on stops answering."""
        if name in self._broken:
            raise HostError(self._broken[name])
        while name not in self._hosts:
            try:
                self._start_host(name)
            except HypervisorLost as exc:
                self._lose(name, exc)
        return self._hosts[name]

    def _start_host(self, name: str) -> None:
        try:
            self._phase(name, "building", "host (or taking it from the cache)")
            host = self.provisioner.provision(self.matrix.host(name), lambda why: self._phase(name, "waiting", why))
            self._hosts[name] = host
            host.record.moved = "; ".join(self._moves.get(name, []))
            self._phase(name, "building", "images (or taking them from the cache)")
            probe = self._build(PROBE_IMAGE, host.arch)
            # Candidate images come by reference from the registry to hosts that pull; others get archives.
            wanted = [] if self._pulls(host) else sorted(i for i in self.needed.get(name, ()) if not self.matrix.image(i).reference)
            images = [built for i in wanted if (built := self._image_or_none(i, self._arch_for(i, host.arch)))]
            self._phase(name, "booting")
            host.start([probe, *images], [PROBE_SCENARIO, *self.matrix.scenarios])
            self._phase(name, "checking", f"facts and a trivial container (ready after {host.record.boot_seconds} s)")
            host.facts()
            self._health_check(host, probe)
        except HypervisorLost:
            raise
        except OSError as exc:
            reason = f"host {name}: {_os_problem(exc)}"
            if name in self._hosts:
                self._mark_broken(self._hosts[name], reason)
            self._broken[name] = reason
            raise HostError(reason) from None
        except (HostError, BuildError) as exc:
            if name in self._hosts:
                self._mark_broken(self._hosts[name], str(exc))
            self._broken[name] = str(exc)
            raise HostError(str(exc)) from None
        self._keep_evidence(host)

    def _lose(self, name: str, exc: HypervisorLost) -> None:
        """The host's hypervisor stopped answering: it leaves the pool (for the whole run), and the
        host with it, so that the host starts again elsewhere (with its images delivered again)."""
        self.provisioner.pool.forget(exc.hypervisor, str(exc))
        self._moves.setdefault(name, []).append(f"started again: {exc}")
        self._phase(name, "moving", f"off hypervisor {exc.hypervisor}: it stopped answering")
        if host := self._hosts.pop(name, None):
            self._stop(host)
        for key in [k for k in self.deliveries if k[0] == name]:
            del self.deliveries[key]

    def image(self, name: str, arch: str) -> ImageBuild:
        """The built image; a failed build is remembered and raised again for each of its cells."""
        if (name, arch) in self._failed_images:
            raise BuildError(self._failed_images[(name, arch)])
        try:
            build = self._build(self.matrix.image(name), arch)
            self._record_build(build)
            return build
        except OSError as exc:
            self._failed_images[(name, arch)] = f"image {name} for {arch}: {_os_problem(exc)}"
        except BuildError as exc:
            self._failed_images[(name, arch)] = str(exc)
        raise BuildError(self._failed_images[(name, arch)])

    def _image_or_none(self, name: str, arch: str) -> ImageBuild | None:
        """For a host's start: an image that fails to build is its cells' error, not the host's."""
        try:
            return self.image(name, arch)
        except BuildError:
            return None

    def _build(self, spec: ImageSpec, arch: str) -> ImageBuild:
        key = (spec.name, arch)
        if key not in self._images:
            base = self._build(self.matrix.image(spec.base), arch) if spec.base else None
            self._images[key], _ = build_image(spec, arch, self.matrix.mirror, BuildCache(self.cache_root, "images"), base)
        return self._images[key]

    def _record_cached(self, name: str, arch: str) -> None:
        """A reused cell's image: its facts (and today's freshness) if the cache still has its build."""
        if not arch or arch not in ARCHES or name in self.image_records and arch in self.image_records[name].builds:
            return
        cache, spec = BuildCache(self.cache_root, "images"), self.matrix.image(name)
        if spec.reference:
            self._record_reference(spec)
            return
        base = cached_image(self.matrix.image(spec.base), arch, self.matrix.mirror, cache) if spec.base else None
        build = cached_image(spec, arch, self.matrix.mirror, cache, base) if base or not spec.base else None
        if build is not None:
            self._record_build(build)

    def _record_reference(self, spec: ImageSpec) -> None:
        """A reference image's facts, as its registry describes it (its layers are not read)."""
        if spec.name not in self.image_records:
            record = ImageRecord(spec.name, spec.release, reference=spec.reference, source="reference")
            record.builds, record.index_digest = describe(spec.reference, spec.tls_verify)
            self.image_records[spec.name] = record

    def _record_build(self, build: ImageBuild) -> None:
        """The image's facts for the report, and its freshness against the archive as it is now."""
        spec = self.matrix.image(build.name)
        record = self.image_records.setdefault(build.name, ImageRecord(spec.name, spec.release, list(spec.packages), base=spec.base))
        if build.arch in record.builds:
            return
        record.builds[build.arch] = ImageBuildRecord(
            arch=build.arch,
            platform=f"linux/{ARCHES[build.arch][1]}",
            image_id=build.image_id,
            manifest_digest=build.manifest_digest,
            size=build.size,
            layers=build.layers,
            created=build.created,
            debian_version=build.debian_version,
            glibc=build.glibc,
            package_count=build.package_count,
            recipe_digest=build.digest,
            labels=build.labels,
            freshness=judge(build.installed(), spec.release, build.arch, self.matrix.mirror, self.cache_root / "archive-indexes"),
        )

    def _health_check(self, host: Host, probe: ImageBuild) -> None:
        """A trivial container on the host's engine: if even that fails, the host is broken, not the images."""
        timeout = self.matrix.host(host.name).machine.cell_timeout * host.time_scale
        load = host.load_image(probe, timeout)
        run = host.run_scenario(probe.image_id, PROBE_SCENARIO, timeout) if load.exit_code == 0 else load
        if run.exit_code != 0:
            host.record.health = f"a trivial container failed (exit {run.exit_code}): {(run.stderr or run.stdout).strip()[-500:]}"
            raise HostError(f"host {host.name} failed its health check: {host.record.health}")
        host.record.health = "ok"

    def _keep_evidence(self, host: Host) -> None:
        """Copy the host's evidence files into the reports directory, where the report links them."""
        for name, source in host.evidence().items():
            dest = self.reports / "hosts" / host.name / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
            if name == "console.log":
                host.record.console_log = str(dest.relative_to(self.reports))

    def _mark_broken(self, host: Host, reason: str) -> None:
        self._broken[host.name] = reason
        host.record.error = reason
        self._stop(host)

    def _stop(self, host: Host) -> None:
        self._keep_evidence(host)
        host.stop()

    # -- images on hosts --------------------------------------------------------------------------
    def _pulls(self, host: Host) -> bool:
        return self.matrix.delivery == "registry" and host.pulls()

    def publication(self, image_name: str, arch: str) -> Publication:
        """The image built for the architectures of the run's VM hosts and pushed behind one index
        (once per run), for a host of `arch`. An architecture whose build fails is left out of the
        index and its hosts' cells carry that failure; the other architectures' hosts are not held
        back by it."""
        if image_name not in self._publications:
            url = registry_url()
            if url is None:
                raise BuildError(f"image {image_name}: no registry to publish it to (the run could not start one)")
            arches = self.matrix.image(image_name).arches or self.matrix.vm_arches()
            # Built for the architectures of the run's selected hosts only (a slice of amd64 hosts
            # builds no arm64 image); all of them when none of those is among the image's own.
            selected = [a for a in arches if a in self._selected_arches()] or arches
            builds = {a: build for a in selected if (build := self._image_or_none(image_name, a))}
            if not builds:
                raise BuildError(self._failed_images[(image_name, arch if arch in arches else arches[0])])
            try:
                self._publications[image_name] = publication = publish(url, image_name, builds, index=len(arches) > 1)
            except RegistryError as exc:
                raise BuildError(f"image {image_name}: {exc}") from None
            record = self.image_records[image_name]
            record.reference = publication.reference(url.split("://", 1)[-1])
            record.index_digest = publication.index_digest
        if (image_name, arch) in self._failed_images:
            raise BuildError(self._failed_images[(image_name, arch)])
        return self._publications[image_name]

    def _selected_arches(self) -> set[str]:
        """Architectures of the VM hosts of the run's selected cells (every xdist worker selects the same)."""
        hosts = [self.matrix.host(name) for name in self.needed]
        return {h.arch for h in hosts if h.kind == "vm"}

    def _pull(self, host: Host, image_name: str) -> DeliveryRecord:
        publication = self.publication(image_name, host.arch)
        reference = publication.reference(guest_registry(registry_url() or "", host.guest_gateway()))
        self._phase(host.name, "pulling", f"image {image_name}")
        pull, image_id, platform = host.pull_image(image_name, reference, timeout=self.matrix.host(host.name).machine.cell_timeout * 4 * host.time_scale)
        return self._pull_record(host, image_name, reference, pull, image_id, platform)

    def _pull_reference(self, host: Host, image_name: str) -> DeliveryRecord:
        """An image published elsewhere: pulled as it is, by its own reference, never built."""
        spec = self.matrix.image(image_name)
        if not host.pulls():
            raise BuildError(f"image {image_name} is given by reference ({spec.reference}); host {host.name} takes images from archives, not from registries")
        self._record_reference(spec)
        reference = guest_reference(spec.reference, host.guest_gateway())
        self._phase(host.name, "pulling", f"image {image_name}")
        timeout = self.matrix.host(host.name).machine.cell_timeout * 4 * host.time_scale
        pull, image_id, platform = host.pull_image(image_name, reference, timeout, tls_verify=spec.tls_verify)
        return self._pull_record(host, image_name, reference, pull, image_id, platform)

    def _pull_record(self, host: Host, image_name: str, reference: str, pull: ExecRecord, image_id: str, platform: str) -> DeliveryRecord:
        wanted = f"linux/{self.matrix.host(host.name).oci_arch}"
        return DeliveryRecord(
            host=host.name,
            image=image_name,
            image_id=image_id,
            ok=pull.exit_code == 0,
            duration=round(pull.duration, 3),
            command=pull.argv,
            output=clip(pull.stdout + pull.stderr, 8192),
            method="pull",
            reference=reference,
            platform=platform,
            mismatch=_mismatch(platform, wanted),
        )

    def deliver(self, host: Host, image_name: str) -> DeliveryRecord:
        """Get the image into the host's engine once; the record is the portability evidence."""
        key = (host.name, image_name)
        if key not in self.deliveries and self.matrix.image(image_name).reference:
            self.deliveries[key] = self._pull_reference(host, image_name)
        if key not in self.deliveries and self._pulls(host):
            self.deliveries[key] = self._pull(host, image_name)
        if key not in self.deliveries:
            arch = self._arch_for(image_name, host.arch)
            image = self.image(image_name, arch)
            self._phase(host.name, "loading", f"image {image_name}")
            load = host.load_image(image, timeout=self.matrix.host(host.name).machine.cell_timeout * 4 * host.time_scale)
            self.deliveries[key] = DeliveryRecord(
                host=host.name,
                image=image_name,
                image_id=image.image_id,
                ok=load.exit_code == 0,
                duration=round(load.duration, 3),
                command=load.argv,
                output=clip(load.stdout + load.stderr, 8192),
                platform=f"linux/{ARCHES[arch][1]}",
                mismatch=_mismatch(f"linux/{ARCHES[arch][1]}", f"linux/{ARCHES[host.arch][1]}") if host.arch else "",
            )
        return self.deliveries[key]

    def _arch_for(self, image_name: str, host_arch: str) -> str:
        """The build a host gets from an archive: its own architecture's, or the image's only one."""
        arches = self.matrix.image(image_name).arches
        return host_arch if not arches or host_arch in arches else arches[0]

    # -- cells ------------------------------------------------------------------------------------
    def select(self, cells: list[tuple[str, str, str]]) -> None:
        """Tell the session which cells this process will run."""
        for host, image, _ in cells:
            self.needed.setdefault(host, set()).add(image)
            self.remaining[host] = self.remaining.get(host, 0) + 1
            self._total[host] = self._total.get(host, 0) + 1

    def prepare(self, host_name: str, image_name: str, scenario_name: str) -> tuple[Host, DeliveryRecord]:
        """The host up and the image loaded in its engine; raise CellError when either failed."""
        started_at, start = now(), time.monotonic()

        def error(message: str) -> CellError:
            return CellError(error_result(host_name, image_name, scenario_name, message, started_at, time.monotonic() - start))

        try:
            host = self.host(host_name)
        except (HostError, BuildError) as exc:
            raise error(str(exc)) from None
        try:
            delivery = self.deliver(host, image_name)
        except BuildError as exc:
            raise error(str(exc)) from None
        except HypervisorLost as exc:
            self._lose(host_name, exc)
            return self.prepare(host_name, image_name, scenario_name)
        except HostError as exc:
            self._mark_broken(host, str(exc))
            raise error(str(exc)) from None
        if not delivery.ok:
            how = f"pulled ({delivery.reference})" if delivery.method == "pull" else "loaded"
            raise error(f"image {image_name} could not be {how} by {host_name}'s engine: {delivery.output.strip()[-300:]}")
        return host, delivery

    def _key(self, host_name: str, image_name: str, scenario_name: str) -> str:
        m = self.matrix
        image = m.image(image_name)
        return cell_key(m.host(host_name), image, m.scenario(scenario_name), m.vms_dir, m.mirror, m.image(image.base) if image.base else None)

    def reused(self, host_name: str, image_name: str, scenario_name: str) -> CellResult | None:
        """With --reuse, the cell's cached verdict (and its host's and delivery's records), if unchanged."""
        if not self.reuse:
            return None
        hit = self.results_cache.get(self._key(host_name, image_name, scenario_name))
        if hit is None:
            return None
        cell, host, delivery = hit
        self._record_cached(image_name, self._arch_for(image_name, host.arch or self.matrix.host(host_name).arch))
        self._reused_hosts.setdefault(host_name, host)
        if delivery is not None:
            self.deliveries.setdefault((host_name, image_name), delivery)
        cell.message = f"reused from the result cache (run of {cell.started_at}){'; ' + cell.message if cell.message else ''}"
        return apply_known_issues(cell, self.matrix.known_issues)

    def run_cell(self, host_name: str, image_name: str, scenario_name: str) -> CellResult:
        """Run one cell (retrying a failure); raise CellError when the host or the delivery failed."""
        reused = self.reused(host_name, image_name, scenario_name)
        if reused is not None:
            return reused
        host, delivery = self.prepare(host_name, image_name, scenario_name)
        self._started[host_name] = self._started.get(host_name, 0) + 1
        self._phase(host_name, "scenario", f"{image_name}/{scenario_name}", self._started[host_name], self._total.get(host_name, 0))
        started_at, start = now(), time.monotonic()
        scenario = self.matrix.scenario(scenario_name)
        timeout = (scenario.timeout or self.matrix.host(host_name).machine.cell_timeout) * host.time_scale

        def attempt() -> CellResult:
            execution = host.run_scenario(delivery.image_id, scenario, timeout)
            return cell_result(host_name, image_name, scenario_name, execution, now())

        try:
            lacking = self._lacking(host, delivery, scenario)
            result = lacking or with_retries(attempt(), attempt, self.matrix.retries)
        except HypervisorLost as exc:  # the cell runs again, on the host started elsewhere
            self._lose(host_name, exc)
            self._started[host_name] -= 1
            return self.run_cell(host_name, image_name, scenario_name)
        except HostError as exc:
            # The host died under the cell (a guest panic, qemu killed, libvirtd gone): it is torn
            # down now and its later cells are errors at once, instead of each waiting for it.
            self._mark_broken(host, str(exc))
            raise CellError(error_result(host_name, image_name, scenario_name, str(exc), started_at, time.monotonic() - start)) from None
        result.started_at = started_at
        if delivery.mismatch:  # flagged, and run anyway: what really happened is the finding
            result.message = f"{delivery.mismatch}; {result.message}" if result.message else delivery.mismatch
        result.reproduce = host.reproduce(delivery, scenario)
        self.results_cache.put(self._key(host_name, image_name, scenario_name), result, host.record, delivery)
        return apply_known_issues(result, self.matrix.known_issues)

    def _lacking(self, host: Host, delivery: DeliveryRecord, scenario: ScenarioSpec) -> CellResult | None:
        """The not-applicable verdict of a cell whose scenario needs a command the image lacks, from
        one container per host and image that checked every scenario's needs (instead of a container
        per cell that only finds its needs missing: a fifth of the default matrix); None: run it."""
        key = (host.name, delivery.image)
        if key not in self._lacks:
            needs = tuple(sorted({c for s in self.matrix.scenarios for c in s.needs}))
            timeout = self.matrix.host(host.name).machine.cell_timeout * host.time_scale
            check = host.check_needs(delivery.image_id, replace(PROBE_SCENARIO, needs=needs), timeout) if needs else None
            self._lacks[key] = (check, (missing_from(check) or set()) if check else set())
        check, lacks = self._lacks[key]
        lacking = [c for c in scenario.needs if c in lacks]
        if check is None or not lacking:
            return None
        evidence = ExecRecord(
            check.argv,
            NOT_APPLICABLE,
            f"missing: {' '.join(sorted(lacks))} (one container checked the needs of every scenario in this image on this host)\n"
            f"not applicable: the image has no {', '.join(lacking)}\n",
            check.stderr,
            0.0,
        )
        return cell_result(host.name, delivery.image, scenario.name, evidence, now())

    def cell_done(self, host_name: str) -> None:
        """Count a finished cell; after a host's last one, stop it to free its cores and memory."""
        self.remaining[host_name] = self.remaining.get(host_name, 1) - 1
        if self.remaining[host_name] <= 0 and host_name in self._hosts:
            self._phase(host_name, "done", "host stopped")
            self._stop(self._hosts[host_name])

    def close(self) -> None:
        """Stop every host, keep their evidence, and remove the run's working files."""
        for host in self._hosts.values():
            self._stop(host)
        if self._provisioner is not None:
            self._provisioner.close()
        # Only this process's part: under xdist other workers' hosts still live in the run's directory,
        # which the controller removes at the very end.
        for name in self._hosts:
            shutil.rmtree(self.workdir / name, ignore_errors=True)
        release(self.workdir)
