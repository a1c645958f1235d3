"""The image supply: a run's candidate images built (or taken from the cache), described (facts,
freshness), published to the run's registry, and delivered to each host's engine once.

Its answer for a cell is a DeliveryRecord: how the image reached the host, the portability half of
the cell. A build, publication or reference that fails raises SupplyError, naming the image.
"""

from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass, field, replace
from typing import Callable

from harness.cache import BuildCache
from harness.config.model import ARCHES, PROBE_IMAGE, DeliveryMethod, HostSpec, ImageSpec, Matrix
from harness.context import RunContext
from harness.hosts.fleet import os_problem
from harness.config.registries import AuthFileError
from harness.hosts.provider import Host, PullAccess
from harness.images.build import ImageBuild, build_image, cached_image
from harness.images.freshness import freshness_of
from harness.images.imported import ArchiveError, archive_arches, import_archive
from harness.mmdebstrap import BuildError
from harness.registry.inspect import describe
from harness.registry.publish import Publication, guest_reference, guest_registry, publish
from harness.registry.server import RegistryError
from harness.results.model import DeliveryRecord, ExecRecord, ImageBuildRecord, ImageRecord, clip


# What engines say when an image cannot run on a host whatever the network does: the registry has
# no manifest for its platform (podman, docker), or the engine refuses the image's format.
_NO_PLATFORM = ("no image found in manifest list for architecture", "no image found in image index for architecture", "no matching manifest for")
_FORMAT = ("unsupported manifest type", "unsupported media type", "unsupported image format", "unknown media type", "manifest invalid", "unsupported schema version")
# Seconds before each new try of a pull that failed for another reason (a network, a registry).
PULL_RETRY_DELAYS = (5.0, 20.0)


def not_portable(output: str, platform: str) -> str:
    """Why a failed pull is the image's (not portable to the host), from what the engine said; ""
    when the failure says nothing about the image."""
    said = output.lower()
    if any(p in said for p in _NO_PLATFORM):
        return f"the registry has no manifest for {platform}"
    if any(p in said for p in _FORMAT):
        return "the host's engine refuses the image's format"
    return ""


class SupplyError(Exception):
    """An image could not be built, published or given to a host; str() says which and why."""


def mismatch(image_platform: str, host_platform: str) -> str:
    """The flag raised before a cell runs an image built for another platform than its host's."""
    return f"image is {image_platform}, host is {host_platform}" if image_platform and image_platform != host_platform else ""


def delivery_problem(delivery: DeliveryRecord, host: str) -> str:
    """Why a delivery that did not succeed failed, in one message for the cell."""
    how = f"pulled ({delivery.reference})" if delivery.method == DeliveryMethod.PULL else "loaded"
    if delivery.not_portable:
        return f"image {delivery.image} is not portable to {host}: {delivery.not_portable}: {delivery.output.strip()[-300:]}"
    tries = f" in {delivery.tries} tries" if delivery.tries > 1 else ""
    return f"image {delivery.image} could not be {how} by {host}'s engine{tries}, for a reason that is not the image's: {delivery.output.strip()[-300:]}"


@dataclass
class ImageSupply:
    matrix: Matrix
    run: RunContext
    build: Callable[..., tuple[ImageBuild, bool]] = build_image  # harness.images.build.build_image's signature
    pull_retry_delays: tuple[float, ...] = PULL_RETRY_DELAYS
    # The VM architectures of the run's selected cells: images are built for these only.
    arches: set[str] = field(default_factory=set)
    # Facts of the candidate images this process built or took from the cache, for the results.
    records: dict[str, ImageRecord] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], DeliveryRecord] = field(default_factory=dict)
    # The images each host's selected cells need (an archive-fed host carries just those).
    needed: dict[str, set[str]] = field(default_factory=dict)
    _builds: dict[tuple[str, str], ImageBuild] = field(default_factory=dict)
    _failed: dict[tuple[str, str], str] = field(default_factory=dict)
    _publications: dict[str, Publication] = field(default_factory=dict)
    _archive_arches: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def select(self, host: str, image: str) -> None:
        """A cell of the run will need `image` on `host`."""
        self.needed.setdefault(host, set()).add(image)
        spec = self.matrix.host(host)
        if spec.kind.is_vm:
            self.arches.add(spec.arch)

    # -- builds ---------------------------------------------------------------------------------
    def image(self, name: str, arch: str) -> ImageBuild:
        """The built image; a failed build is remembered and raised again for each of its cells."""
        if (name, arch) in self._failed:
            raise SupplyError(self._failed[(name, arch)])
        try:
            build = self._build(self.matrix.image(name), arch)
            self._record_build(build)
            return build
        except OSError as exc:
            self._failed[(name, arch)] = f"image {name} for {arch}: {os_problem(exc)}"
        except (BuildError, ArchiveError) as exc:
            self._failed[(name, arch)] = str(exc)
        raise SupplyError(self._failed[(name, arch)])

    def _image_or_none(self, name: str, arch: str) -> ImageBuild | None:
        """An image that fails to build is its cells' error, not its host's nor its other builds'."""
        try:
            return self.image(name, arch)
        except SupplyError:
            return None

    def _build(self, spec: ImageSpec, arch: str) -> ImageBuild:
        key = (spec.name, arch)
        if key not in self._builds:
            base = self._build(self.matrix.image(spec.base), arch) if spec.base else None
            cache = BuildCache(self.run.cache_root, "images")
            if spec.archive:
                self._builds[key], _ = import_archive(spec, arch, cache)
            else:
                self._builds[key], _ = self.build(spec, arch, self.matrix.mirror, cache, base)
        return self._builds[key]

    def arches_of(self, image_name: str) -> tuple[str, ...]:
        """The architectures an image is for: the matrix's list, an archive's own platforms, or
        (empty) every VM host's."""
        spec = self.matrix.image(image_name)
        if spec.archive and spec.name not in self._archive_arches:
            try:
                self._archive_arches[spec.name] = archive_arches(Path(spec.archive), spec.archive_kind)
            except ArchiveError as exc:
                raise SupplyError(f"image {spec.name}: {exc}") from None
        return self._archive_arches.get(spec.name, spec.arches)

    def arch_for(self, image_name: str, host_arch: str) -> str:
        """The build a host gets from an archive: its own architecture's, or the image's only one."""
        arches = self.arches_of(image_name)
        return host_arch if not arches or host_arch in arches else arches[0]

    def buildable(self, host: HostSpec, image_name: str) -> None:
        """Before a VM host is started for a cell: the image it will get is built (or taken from
        the cache); SupplyError when it cannot be, so that no host boots for cells that cannot run
        (a --reuse rerun retries such errors: it boots nothing for them). An image given by
        reference is the host's pull to judge."""
        if host.kind.is_vm and not self.matrix.image(image_name).reference:
            self.image(image_name, self.arch_for(image_name, host.arch))

    def carry(self, host: Host) -> list[ImageBuild]:
        """The archives a starting host takes with it: none for a host that pulls (references
        never: they are pulled by every host that can)."""
        if self._pulls(host):
            return []
        wanted = sorted(i for i in self.needed.get(host.name, ()) if not self.matrix.image(i).reference)
        return [built for i in wanted if (built := self._image_or_none(i, self.arch_for(i, host.arch)))]

    # -- facts ----------------------------------------------------------------------------------
    def _record_build(self, build: ImageBuild) -> None:
        """The image's facts for the report, and its freshness against the archive as it is now."""
        spec = self.matrix.image(build.name)
        record = self.records.setdefault(build.name, ImageRecord(spec.name, spec.release, list(spec.packages), base=spec.base, source=spec.source))
        if build.arch in record.builds:
            return
        record.builds[build.arch] = ImageBuildRecord(
            arch=build.arch,
            platform=ARCHES[build.arch].platform,
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
            # An image taken from a file says its release only if the matrix does.
            freshness=freshness_of(build.installed(), spec.release, build.arch, self.matrix.mirror, self.run.cache_root / "archive-indexes") if spec.release else None,
        )

    def _record_reference(self, spec: ImageSpec) -> None:
        """A reference image's facts, as its registry describes it (its layers are not read)."""
        if spec.name not in self.records:
            record = ImageRecord(spec.name, spec.release, reference=spec.reference, source=spec.source)
            record.builds, record.index_digest, record.facts_error = describe(spec.reference, spec.tls_verify, self.matrix.access_for(spec.reference))
            self.records[spec.name] = record

    def reference_digest(self, name: str, host_arch: str) -> str:
        """What an image given by reference names now, for a host of `host_arch`: the index (or
        manifest) digest and the platform's manifest digest; empty when the registry cannot say."""
        self._record_reference(self.matrix.image(name))
        record = self.records[name]
        if not record.index_digest:
            return ""
        build = record.builds.get(host_arch)
        return f"{record.index_digest} {build.manifest_digest if build else 'no manifest for ' + host_arch}"

    def cached_manifest(self, name: str, host_arch: str) -> str:
        """The manifest digest of the image's build for a host of `host_arch` as the cache holds it
        now ("" when it is not built yet): what the host will pull, for the result cache's key."""
        build = self._cached_build(name, self.arch_for(name, host_arch))
        return build.manifest_digest if build else ""

    def _cached_build(self, name: str, arch: str) -> ImageBuild | None:
        """The image's build for `arch` if this run or the cache has it; never builds."""
        if (name, arch) in self._builds:
            return self._builds[(name, arch)]
        cache, spec = BuildCache(self.run.cache_root, "images"), self.matrix.image(name)
        base = cached_image(self.matrix.image(spec.base), arch, self.matrix.mirror, cache) if spec.base else None
        return cached_image(spec, arch, self.matrix.mirror, cache, base) if base or not spec.base else None

    def record_cached(self, name: str, host_arch: str) -> None:
        """A reused cell's image: its facts (and today's freshness) if the cache still has its build."""
        arch = self.arch_for(name, host_arch) if host_arch else ""
        if arch not in ARCHES or name in self.records and arch in self.records[name].builds:
            return
        spec = self.matrix.image(name)
        if spec.reference:
            self._record_reference(spec)
            return
        if (build := self._cached_build(name, arch)) is not None:
            self._record_build(build)

    # -- publication ----------------------------------------------------------------------------
    def publication(self, image_name: str, arch: str) -> Publication:
        """The image built for the architectures of the run's VM hosts and pushed behind one index
        (once per run), for a host of `arch`. An architecture whose build fails is left out of the
        index and its hosts' cells carry that failure; the other architectures' hosts are not held
        back by it."""
        if image_name not in self._publications:
            if self.run.registry is None:
                raise SupplyError(f"image {image_name}: no registry to publish it to (the run could not start one)")
            arches = self.arches_of(image_name) or tuple(self.matrix.vm_arches())
            # Built for the architectures of the run's selected hosts only (a slice of amd64 hosts
            # builds no arm64 image); all of them when none of those is among the image's own.
            selected = [a for a in arches if a in self.arches] or list(arches)
            builds = {a: build for a in selected if (build := self._image_or_none(image_name, a))}
            if not builds and arch not in arches:
                # This host's pull is what says the image has no build for it (not portable): it
                # needs an index to pull from, whichever of the image's other builds can be had.
                builds = next(({a: build} for a in arches if a not in selected and (build := self._image_or_none(image_name, a))), {})
            if not builds:
                raise SupplyError(self._failed[(image_name, arch if arch in arches else selected[0])])
            try:
                self._publications[image_name] = published = publish(self.run.registry, image_name, builds, index=len(arches) > 1)
            except RegistryError as exc:
                raise SupplyError(f"image {image_name}: {exc}") from None
            record = self.records[image_name]
            record.reference = published.reference(self.run.registry.split("://", 1)[-1])
            record.index_digest = published.index_digest
        if (image_name, arch) in self._failed:
            raise SupplyError(self._failed[(image_name, arch)])
        return self._publications[image_name]

    def reach(self, host: Host) -> DeliveryRecord | None:
        """Part of a pulling host's health check: its engine pulls the harness's probe image from the
        run's registry over the guest's network, so that a broken path to the registry is the
        host's error before any cell, never an image's. None for a host that does not pull, or when
        the probe cannot be published (the registry's trouble, which each cell then names)."""
        if not self._pulls(host) or self.run.registry is None:
            return None
        key = f"{PROBE_IMAGE.name}/{host.arch}"
        if key not in self._publications:
            probe = self._build(PROBE_IMAGE, host.arch)
            try:
                self._publications[key] = publish(self.run.registry, PROBE_IMAGE.name, {host.arch: probe}, index=False)
            except RegistryError:
                return None  # the registry's own trouble: each cell's publication says so
        reference = self._publications[key].reference(guest_registry(self.run.registry, host.guest_gateway()))
        return self._pulled(host, PROBE_IMAGE.name, reference, tls_verify=False)

    # -- delivery -------------------------------------------------------------------------------
    def _pulls(self, host: Host) -> bool:
        return self.matrix.delivery == "registry" and host.pulls()

    def deliver(self, host: Host, image_name: str) -> DeliveryRecord:
        """Get the image into the host's engine once; the record is the portability evidence."""
        key = (host.name, image_name)
        if key not in self.deliveries:
            spec = self.matrix.image(image_name)
            if spec.reference:
                self.deliveries[key] = self._pull_reference(host, spec)
            elif self._pulls(host):
                self.deliveries[key] = self._pull(host, image_name)
            else:
                self.deliveries[key] = self._load(host, image_name)
        return self.deliveries[key]

    def deliver_variant(self, host: Host, spec: ImageSpec) -> DeliveryRecord:
        """An image that is not the matrix's (a blame experiment's: the host release's own base
        image, the failing image built from a neighbouring release), built for the host and
        delivered the way its own are; its facts stay out of the run's images."""
        key = (host.name, spec.name)
        if key not in self.deliveries:
            try:
                build = self._build(spec, host.arch)
            except (BuildError, OSError) as exc:
                raise SupplyError(f"image {spec.name} for {host.arch}: {exc}") from None
            if self._pulls(host) and self.run.registry is not None:
                try:
                    published = publish(self.run.registry, spec.name, {host.arch: build}, index=False)
                except RegistryError as exc:
                    raise SupplyError(f"image {spec.name}: {exc}") from None
                self.deliveries[key] = self._pulled(host, spec.name, published.reference(guest_registry(self.run.registry, host.guest_gateway())), tls_verify=False)
            else:
                load = host.load_image(build, host.delivery_timeout)
                self.deliveries[key] = self._record(host, spec.name, load, build.image_id, ARCHES[build.arch].platform, DeliveryMethod.LOAD)
        return self.deliveries[key]

    def forget(self, host_name: str) -> None:
        """The host starts again (elsewhere): what was delivered to it is gone."""
        for key in [k for k in self.deliveries if k[0] == host_name]:
            del self.deliveries[key]

    def _pull(self, host: Host, image_name: str) -> DeliveryRecord:
        publication = self.publication(image_name, host.arch)
        reference = publication.reference(guest_registry(self.run.registry or "", host.guest_gateway()))
        return self._pulled(host, image_name, reference, tls_verify=False, pinned=True)  # its tag is its content's digest

    def _pull_reference(self, host: Host, spec: ImageSpec) -> DeliveryRecord:
        """An image published elsewhere: pulled as it is, by its own reference, never built."""
        if not host.pulls():
            raise SupplyError(f"image {spec.name} is given by reference ({spec.reference}); host {host.name} takes images from archives, not from registries")
        self._record_reference(spec)
        reference = guest_reference(spec.reference, host.guest_gateway())
        return self._pulled(host, spec.name, reference, spec.tls_verify, self._access(spec.reference, reference))

    def _access(self, reference: str, as_guest: str) -> PullAccess | None:
        """A private registry's credentials (under the name the guest reaches it by) and CA."""
        access = self.matrix.access_for(reference)
        if access is None:
            return None
        try:
            auth = access.auth_json(as_guest.partition("/")[0]) if access.auth_file else None
            ca = access.ca_file.read_bytes() if access.ca_file else None
        except (AuthFileError, OSError) as exc:
            raise SupplyError(f"registry {access.host}: {exc}") from None
        return PullAccess(auth, ca, str(access.auth_file or ""))

    def _pulled(self, host: Host, image_name: str, reference: str, tls_verify: bool, access: PullAccess | None = None, pinned: bool = False) -> DeliveryRecord:
        """The host's engine pulls the image; a failure that is not the image's is tried again."""
        self.run.phase(host.name, "pulling", f"image {image_name}")
        wanted = ARCHES[host.arch].platform if host.arch in ARCHES else host.arch
        delays, earlier = list(self.pull_retry_delays), []
        while True:
            got = host.pull_image(image_name, reference, host.delivery_timeout, tls_verify=tls_verify, access=access, pinned=pinned)
            pull = got.run
            refused = not_portable(pull.stdout + pull.stderr, wanted) if pull.exit_code != 0 else ""
            if pull.exit_code == 0 or refused or not delays:
                break
            earlier.append(f"try {len(earlier) + 1} (exit {pull.exit_code}): {(pull.stdout + pull.stderr).strip()[-500:]}\n")
            self.run.phase(host.name, "pulling", f"image {image_name} again: {(pull.stderr or pull.stdout).strip()[-120:]}")
            time.sleep(delays.pop(0))
        if earlier:
            pull = replace(pull, stdout="".join(earlier) + pull.stdout)
        record = self._record(host, image_name, pull, got.image_id, got.platform, DeliveryMethod.PULL, reference)
        return replace(record, not_portable=refused, tries=len(earlier) + 1, store=got.store, received_bytes=got.received_bytes,
                       tls_verify=tls_verify, credentials=access.auth_file if access and access.auth_json else "")

    def _load(self, host: Host, image_name: str) -> DeliveryRecord:
        image = self.image(image_name, self.arch_for(image_name, host.arch))
        self.run.phase(host.name, "loading", f"image {image_name}")
        load = host.load_image(image, host.delivery_timeout)
        record = self._record(host, image_name, load, image.image_id, ARCHES[image.arch].platform, DeliveryMethod.LOAD)
        return replace(record, not_portable=not_portable(record.output, record.platform) if not record.ok else "")

    @staticmethod
    def _record(host: Host, image_name: str, run: ExecRecord, image_id: str, platform: str, method: DeliveryMethod, reference: str = "") -> DeliveryRecord:
        wanted = ARCHES[host.arch].platform if host.arch in ARCHES else ""
        return DeliveryRecord(
            host=host.name,
            image=image_name,
            image_id=image_id,
            ok=run.exit_code == 0,
            duration=round(run.duration, 3),
            command=run.argv,
            output=clip(run.stdout + run.stderr, 8192),
            method=method,
            reference=reference,
            platform=platform,
            mismatch=mismatch(platform, wanted) if wanted else "",
        )
