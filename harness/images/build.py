"""Build a candidate image for one architecture from its Debian release, as an OCI archive, cached by recipe."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness import __version__
from harness.cache import BuildCache, digest_of
from harness.config.model import ARCHES, ImageSpec
from harness.images.oci import write_oci_archive
from harness.mmdebstrap import mmdebstrap_argv, run_logged

BUILD_FORMAT = 2  # 2: the archive also carries docker-archive's manifest.json
ARCHIVE = "image.oci.tar"


@dataclass(frozen=True)
class ImageBuild:
    """A built image for one architecture; `image_id` is what the engine will call it after loading."""

    name: str
    arch: str
    digest: str
    archive: Path
    image_id: str  # config digest, sha256:...
    size: int


def image_recipe(spec: ImageSpec, arch: str) -> dict:
    return {
        "format": BUILD_FORMAT,
        "release": spec.release,
        "arch": arch,
        "packages": sorted(spec.packages),
        "cmd": list(spec.cmd),
        **({"variant": spec.variant} if spec.variant != "minbase" else {}),
    }


def build_image(spec: ImageSpec, arch: str, mirror: str, cache: BuildCache) -> tuple[ImageBuild, bool]:
    """The image for `arch`, from cache or built now with mmdebstrap; returns (build, built now)."""
    recipe = image_recipe(spec, arch)
    digest = digest_of(recipe)

    def build(tmp: Path, log: Path) -> None:
        rootfs = tmp / "rootfs.tar"
        log.write_text(f"# image {spec.name} ({spec.release}/{arch}), harness {__version__}\n")
        run_logged(mmdebstrap_argv(spec.release, arch, list(spec.packages), rootfs, mirror, spec.variant), log, f"image {spec.name} for {arch}")
        oci = write_oci_archive(
            rootfs,
            tmp / ARCHIVE,
            architecture=ARCHES[arch][1],
            ref_name=f"{spec.name}-{arch}",
            cmd=list(spec.cmd),
            labels={
                "org.opencontainers.image.title": spec.name,
                "org.opencontainers.image.version": spec.release,
                "org.opencontainers.image.created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
                "org.debian.release": spec.release,
                "org.debian.architecture": arch,
                "io.github.container-matrix-harness.version": __version__,
            },
        )
        rootfs.unlink()
        (tmp / "image.json").write_text(json.dumps(oci.__dict__, indent=1))

    directory, built = cache.get_or_build(digest, recipe, build)
    meta = json.loads((directory / "image.json").read_text())
    return ImageBuild(spec.name, arch, digest, directory / ARCHIVE, meta["config_digest"], meta["size"]), built
