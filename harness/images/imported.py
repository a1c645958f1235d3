"""Images given as files: `oci-archive: PATH` (an OCI layout in a tar, one manifest or an index of
several platforms) and `docker-archive: PATH` (what `docker save` writes), as CI pipelines produce.

Each platform the archive holds is taken into the build cache as one of the harness's own
single-manifest OCI archives, so it is published, pulled, loaded and described like a built image.
Nothing of the image is rebuilt: its config and layers are copied byte for byte, and an OCI
manifest too, so the image ID and manifest digest a host reports are the archive's own. A docker
archive has no manifest; one is written for its config and layers (uncompressed, as it holds them).
Its facts (Debian version, packages, freshness) are read from its layers' dpkg status, when it has one.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.cache import BuildCache, digest_of
from harness.config.model import ARCHES, ImageSpec
from harness.images.build import ARCHIVE, PACKAGES, ImageBuild, image_recipe, load_build
from harness.images.dpkg import read_installed
from harness.images.oci import MEDIA_CONFIG, MEDIA_LAYER, MEDIA_MANIFEST, blob_name

IMPORT_FORMAT = 1
_INDEXES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
_OCI_ARCH = {a.oci: a.debian for a in ARCHES.values()}


class ArchiveError(Exception):
    """The file is not an image archive of the kind the matrix says; str() says why in one line."""


@dataclass(frozen=True)
class _Platform:
    """One platform's image inside an archive: its manifest and the blobs it names."""

    arch: str  # Debian's name
    manifest: bytes
    media_type: str
    config: str  # digest
    blobs: tuple[str, ...]  # digests of config and layers, as named in the archive
    members: dict[str, str]  # digest -> member name in the archive


def archive_arches(path: Path, kind: str) -> tuple[str, ...]:
    """The architectures an archive holds images for (ArchiveError if it is not an image archive)."""
    return tuple(sorted(p.arch for p in _platforms(path, kind)))


def import_archive(spec: ImageSpec, arch: str, cache_: BuildCache) -> tuple[ImageBuild, bool]:
    """The archive's image for `arch`, taken into the cache (once per archive content)."""
    recipe = image_recipe(spec, arch, "")
    digest = digest_of(recipe)

    def take(tmp: Path, log: Path) -> None:
        log.write_text(f"# image {spec.name} ({arch}) from {spec.archive_kind} {spec.archive}\n")
        platform = next((p for p in _platforms(Path(spec.archive), spec.archive_kind) if p.arch == arch), None)
        if platform is None:
            raise ArchiveError(f"image {spec.name}: {spec.archive} holds no image for {arch}")
        _write(Path(spec.archive), platform, tmp, spec.name)

    directory, taken = cache_.get_or_build(digest, recipe, take)
    return load_build(spec, arch, digest, directory), taken


def _platforms(path: Path, kind: str) -> list[_Platform]:
    try:
        with tarfile.open(path) as tar:
            names = {m.name.removeprefix("./"): m.name for m in tar.getmembers() if m.isfile()}
            return _docker(tar, names) if kind == "docker-archive" else _oci(tar, names)
    except (OSError, tarfile.TarError, KeyError, ValueError, TypeError) as exc:
        what = "an OCI archive (a tar of an OCI layout with index.json)" if kind == "oci-archive" else "a docker archive (a tar with manifest.json, as `docker save` writes)"
        if isinstance(exc, tarfile.ReadError):
            why = "it is not a tar file"
        elif isinstance(exc, KeyError):
            why = f"it has no {exc.args[0]}"
        else:
            why = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ArchiveError(f"{path} is not {what}: {why}") from None


def _read(tar: tarfile.TarFile, names: dict[str, str], name: str) -> bytes:
    return tar.extractfile(names[name]).read()


def _oci(tar: tarfile.TarFile, names: dict[str, str]) -> list[_Platform]:
    found: list[_Platform] = []
    pending = list(json.loads(_read(tar, names, "index.json"))["manifests"])
    while pending:
        descriptor = pending.pop(0)
        body = _read(tar, names, blob_name(descriptor["digest"]))
        document = json.loads(body)
        media = descriptor.get("mediaType") or document.get("mediaType", MEDIA_MANIFEST)
        if media in _INDEXES:
            pending += document["manifests"]
            continue
        config = document["config"]["digest"]
        arch = (descriptor.get("platform") or {}).get("architecture") or json.loads(_read(tar, names, blob_name(config))).get("architecture", "")
        if arch not in _OCI_ARCH:
            continue  # attestations ("unknown"), and platforms the harness has no hosts for
        blobs = (config, *(layer["digest"] for layer in document["layers"]))
        found.append(_Platform(_OCI_ARCH[arch], body, media, config, blobs, {d: names[blob_name(d)] for d in blobs}))
    if not found:
        raise ValueError("it holds no image for linux on " + ", ".join(_OCI_ARCH))
    return found


def _docker(tar: tarfile.TarFile, names: dict[str, str]) -> list[_Platform]:
    found = []
    for entry in json.loads(_read(tar, names, "manifest.json")):
        config_bytes = _read(tar, names, entry["Config"])
        config = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        arch = json.loads(config_bytes).get("architecture", "")
        if arch not in _OCI_ARCH:
            continue
        layers = []
        for name in entry["Layers"]:
            h, stream = hashlib.sha256(), tar.extractfile(names[name])
            while chunk := stream.read(1 << 20):
                h.update(chunk)
            layers.append(("sha256:" + h.hexdigest(), name, tar.getmember(names[name]).size))
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config, "size": len(config_bytes)},
            "layers": [{"mediaType": MEDIA_LAYER, "digest": d, "size": size} for d, _, size in layers],
        }
        members = {config: names[entry["Config"]], **{d: names[name] for d, name, _ in layers}}
        found.append(_Platform(_OCI_ARCH[arch], json.dumps(manifest, sort_keys=True).encode(), MEDIA_MANIFEST, config, (config, *(d for d, _, _ in layers)), members))
    if not found:
        raise ValueError("it holds no image for linux on " + ", ".join(_OCI_ARCH))
    return found


def _write(source: Path, platform: _Platform, out: Path, name: str) -> None:
    """The platform's image as one of the harness's archives, with its facts beside it."""
    manifest_digest = "sha256:" + hashlib.sha256(platform.manifest).hexdigest()
    document = json.loads(platform.manifest)
    with tarfile.open(source) as src, tarfile.open(out / ARCHIVE, "w") as dst:
        def add(member_name: str, data) -> None:
            info = tarfile.TarInfo(member_name)
            info.size, info.mode = (len(data), 0o644) if isinstance(data, bytes) else (src.getmember(data).size, 0o644)
            dst.addfile(info, io.BytesIO(data) if isinstance(data, bytes) else src.extractfile(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        descriptor = {"mediaType": platform.media_type, "digest": manifest_digest, "size": len(platform.manifest),
                      "platform": {"os": "linux", "architecture": ARCHES[platform.arch].oci}}
        add("index.json", json.dumps({"schemaVersion": 2, "manifests": [descriptor]}).encode())
        add(blob_name(manifest_digest), platform.manifest)
        for digest in platform.blobs:
            add(blob_name(digest), platform.members[digest])
        config = json.loads(src.extractfile(platform.members[platform.config]).read())
        installed = _installed(src, [platform.members[d] for d in platform.blobs[1:]])
    (out / PACKAGES).write_text(json.dumps(installed.versions if installed else {}, indent=0, sort_keys=True))
    meta = {
        "config_digest": platform.config,
        "manifest_digest": manifest_digest,
        "layers": len(document["layers"]),
        "size": sum(layer["size"] for layer in document["layers"]),
        "created": config.get("created", ""),
        "debian_version": installed.debian_version if installed else "",
        "glibc": installed.glibc if installed else "",
        "package_count": installed.count if installed else 0,
        "labels": (config.get("config") or {}).get("Labels") or {},
    }
    (out / "image.json").write_text(json.dumps(meta, indent=1))


def _installed(src: tarfile.TarFile, layers: list[str]):
    """dpkg's status and /etc/debian_version as the last layer that has them leaves them (None if
    the image has no dpkg, or a layer cannot be read: zstd, say)."""
    wanted = {"var/lib/dpkg/status": b"", "etc/debian_version": b""}
    try:
        for member in layers:
            with tarfile.open(fileobj=src.extractfile(member), mode="r:*") as layer:
                for entry in layer:
                    path = entry.name.removeprefix("./")
                    if path in wanted and entry.isfile():
                        wanted[path] = layer.extractfile(entry).read()
    except (tarfile.TarError, OSError):
        return None
    if not wanted["var/lib/dpkg/status"]:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        status, version = Path(tmp, "status"), Path(tmp, "debian_version")
        status.write_bytes(wanted["var/lib/dpkg/status"])
        if wanted["etc/debian_version"]:
            version.write_bytes(wanted["etc/debian_version"])
        return read_installed(status, version)

