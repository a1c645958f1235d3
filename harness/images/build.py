"""Build a candidate image for one architecture from its Debian release, as an OCI archive, cached by recipe.

Builds are reproducible: SOURCE_DATE_EPOCH is the archive's last change, so the same recipe from the
same archive state gives the same digests. An image with a `base` is layered on that image's build:
its own layer holds only what its packages add, as `docker build` from a base image would.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from harness import __version__
from harness.cache import BuildCache, digest_of, file_digest
from harness.config.model import ARCHES, ImageSpec
from harness.images.archive import Suite, archive_epoch, build_suites, require_architecture
from harness.images.dpkg import Installed, read_installed
from harness.images.layers import write_diff_layer
from harness.images.oci import Layer, archive_layers, write_oci_archive
from harness.mmdebstrap import mmdebstrap_argv, run_logged

BUILD_FORMAT = 4  # 3: reproducible, with updates, dpkg facts, layered; 4: man1 for update-alternatives
ARCHIVE = "image.oci.tar"
PACKAGES = "packages.json"  # installed package -> version, for the freshness check


@dataclass(frozen=True)
class ImageBuild:
    """A built image for one architecture; `image_id` is what the engine will call it after loading."""

    name: str
    arch: str
    digest: str
    archive: Path
    image_id: str  # config digest, sha256:...
    size: int
    manifest_digest: str = ""
    layers: int = 1
    created: str = ""
    debian_version: str = ""
    glibc: str = ""
    package_count: int = 0
    labels: dict[str, str] = field(default_factory=dict)

    def installed(self) -> dict[str, str]:
        path = self.archive.parent / PACKAGES
        return json.loads(path.read_text()) if path.exists() else {}


def image_recipe(spec: ImageSpec, arch: str, mirror: str, base: ImageBuild | None = None) -> dict:
    if spec.archive:  # taken from a file (images/imported.py): its content is the recipe
        return {"format": BUILD_FORMAT, "source": spec.archive_kind, "archive": file_digest(Path(spec.archive)), "arch": arch}
    return {
        "format": BUILD_FORMAT,
        "release": spec.release,
        "arch": arch,
        "packages": sorted(spec.packages),
        "cmd": list(spec.cmd),
        "sources": [s.deb_line() for s in build_suites(spec.release, mirror, spec.updates)],
        **({"variant": spec.variant} if spec.variant != "minbase" else {}),
        **({"base": base.digest} if base else {}),
        **({"trim": list(spec.trim)} if spec.trim else {}),
    }


# Copies what the facts are read from out of the finished tree (absent in an "extract" build).
_FACTS_HOOK = 'for f in var/lib/dpkg/status etc/debian_version; do [ ! -e "$1/$f" ] || cp "$1/$f" "{out}/"; done'
# Man pages are not installed, but update-alternatives still links into man1 (openjdk's postinst
# fails without it), as Debian's own container images know.
_MAN1_HOOK = 'mkdir -p "$1/usr/share/man/man1"'
# A build is defined by the archive state it reads (its SOURCE_DATE_EPOCH), not by today's date: a
# mirror or snapshot whose Release files have passed their Valid-Until (sid's last a week) still builds.
_APTOPTS = ('Acquire::Check-Valid-Until "false"',)


def build_image(spec: ImageSpec, arch: str, mirror: str, cache: BuildCache, base: ImageBuild | None = None) -> tuple[ImageBuild, bool]:
    """The image for `arch`, from cache or built now with mmdebstrap; returns (build, built now).
    `base`: the build of the image named by spec.base, for the same architecture."""
    recipe = image_recipe(spec, arch, mirror, base)
    digest = digest_of(recipe)

    def build(tmp: Path, log: Path) -> None:
        rootfs = tmp / "rootfs.tar"
        log.write_text(f"# image {spec.name} ({spec.release}/{arch}), harness {__version__}\n")
        suites = build_suites(spec.release, mirror, spec.updates)
        require_architecture(suites, arch, f"image {spec.name} for {arch}")
        epoch = archive_epoch(suites)
        facts = tmp / "facts"
        facts.mkdir()
        # A layered image's tree starts from exactly what its base has installed.
        packages = [*(sorted(base.installed()) if base else []), *spec.packages]
        customize = "; ".join([_FACTS_HOOK.format(out=facts), *(f'rm -rf "$1"/{path}' for path in spec.trim)])
        argv = mmdebstrap_argv(spec.release, arch, packages, rootfs, mirror, spec.variant, {"essential": _MAN1_HOOK, "customize": customize}, [s.deb_line() for s in suites], _APTOPTS)
        run_logged(argv, log, f"image {spec.name} for {arch}", env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
        installed = read_installed(facts / "status", facts / "debian_version") if (facts / "status").exists() else None
        if base is None:
            layers, history = [Layer.of_file(rootfs)], [f"mmdebstrap {spec.release} {' '.join(packages)}"]
        else:
            own = tmp / "layer.tar"
            base_tar = tmp / "base.tar"
            (lower,) = archive_layers(base.archive)  # a base is a single-layer image (the loader checks)
            _extract(lower, base_tar)
            write_diff_layer(base_tar, rootfs, own)
            base_tar.unlink()
            layers = [lower, Layer.of_file(own)]
            history = [f"mmdebstrap {spec.release} (base {base.name})", f"apt-get install {' '.join(spec.packages)}"]
        created = datetime.fromtimestamp(epoch, timezone.utc)
        labels = _labels(spec, arch, created, installed, base, suites)
        oci = write_oci_archive(layers, tmp / ARCHIVE, architecture=ARCHES[arch].oci, ref_name=f"{spec.name}-{arch}", cmd=list(spec.cmd), labels=labels, created=created, history=history)
        rootfs.unlink()
        (tmp / PACKAGES).write_text(json.dumps(installed.versions if installed else {}, indent=0, sort_keys=True))
        meta = {
            "config_digest": oci.config_digest,
            "manifest_digest": oci.manifest_digest,
            "layers": len(oci.layer_digests),
            "size": oci.size,
            "created": created.isoformat(),
            "debian_version": installed.debian_version if installed else "",
            "glibc": installed.glibc if installed else "",
            "package_count": installed.count if installed else 0,
            "labels": labels,
        }
        (tmp / "image.json").write_text(json.dumps(meta, indent=1))
        shutil.rmtree(facts)

    directory, built = cache.get_or_build(digest, recipe, build)
    return load_build(spec, arch, digest, directory), built


def cached_image(spec: ImageSpec, arch: str, mirror: str, cache: BuildCache, base: ImageBuild | None = None) -> ImageBuild | None:
    """The image's build if the cache has it; never builds (for a run that reuses cached results)."""
    digest = digest_of(image_recipe(spec, arch, mirror, base))
    return load_build(spec, arch, digest, cache.path(digest)) if cache.has(digest) else None


def load_build(spec: ImageSpec, arch: str, digest: str, directory: Path) -> ImageBuild:
    """A build as the cache keeps it (image.json beside the archive)."""
    meta = json.loads((directory / "image.json").read_text())
    return ImageBuild(
        spec.name,
        arch,
        digest,
        directory / ARCHIVE,
        meta["config_digest"],
        meta["size"],
        meta["manifest_digest"],
        meta["layers"],
        meta["created"],
        meta["debian_version"],
        meta["glibc"],
        meta["package_count"],
        meta["labels"],
    )


def _labels(spec: ImageSpec, arch: str, created: datetime, installed: Installed | None, base: ImageBuild | None, suites: list[Suite]) -> dict[str, str]:
    """The usual OCI labels: what it is, its version, when and from what it was built."""
    versions = installed.versions if installed else {}
    main = next((p for p in spec.packages if p in versions), "")
    version = f"{main} {versions[main]}" if main and base else (installed.debian_version if installed else spec.release)
    labels = {
        "org.opencontainers.image.title": spec.name,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": created.isoformat().replace("+00:00", "Z"),
        "org.opencontainers.image.vendor": "Debian packages, built by container-matrix-harness",
        "org.debian.release": spec.release,
        "org.debian.architecture": arch,
        "org.debian.sources": "; ".join(s.deb_line() for s in suites),
        "io.github.container-matrix-harness.version": __version__,
    }
    if base:
        labels["org.opencontainers.image.base.name"] = base.name
        labels["org.opencontainers.image.base.digest"] = base.manifest_digest
    return labels


def _extract(layer: Layer, out: Path) -> None:
    with layer.open() as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
