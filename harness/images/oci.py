"""Write an OCI image archive (oci-archive) from layer tarballs: a base image's root file system,
and for an application image the base's layers plus its own.

Layers are left uncompressed: engines in emulated guests spend most of an image load decompressing
and hashing, and the archive travels on a local disk, not a network.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class Layer:
    """An uncompressed layer tar: `size` bytes at `offset` in `path` (a file of its own, or a blob
    inside another image's archive, so a base image's layers are reused without copying them out)."""

    path: Path
    digest: str
    size: int
    offset: int = 0

    @classmethod
    def of_file(cls, path: Path) -> "Layer":
        return cls(path, _sha256_file(path), path.stat().st_size)

    def open(self) -> "_RangeReader":
        return _RangeReader(self)


@dataclass(frozen=True)
class OciImage:
    """What identifies the written image: its config digest is the image ID engines report."""

    config_digest: str
    manifest_digest: str
    layer_digests: list[str]
    size: int  # of the layers


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


def archive_layers(archive: Path) -> list[Layer]:
    """The layers of one of the harness's OCI archives, where they lie inside it."""
    with tarfile.open(archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())
        manifest = json.loads(tar.extractfile(blob_name(index["manifests"][0]["digest"])).read())
        return [Layer(archive, d["digest"], d["size"], tar.getmember(blob_name(d["digest"])).offset_data) for d in manifest["layers"]]


def blob_name(digest: str) -> str:
    return "blobs/" + digest.replace(":", "/")


class _RangeReader:
    """A readable view of a layer's bytes (for tarfile.addfile and copying it out)."""

    def __init__(self, layer: Layer):
        self.fh = open(layer.path, "rb")
        self.fh.seek(layer.offset)
        self.left = layer.size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.fh.read(n)
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> "_RangeReader":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def write_oci_archive(
    layers: list[Layer],
    out: Path,
    *,
    architecture: str,
    ref_name: str,
    cmd: list[str],
    labels: dict[str, str],
    created: datetime | None = None,
    history: list[str] | None = None,
) -> OciImage:
    """history: one "created_by" line per layer."""
    created = created or datetime.now(timezone.utc).replace(microsecond=0)
    stamp = created.isoformat().replace("+00:00", "Z")
    history = history or ["container-matrix-harness (mmdebstrap)"] * len(layers)
    config = {
        "created": stamp,
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": cmd,
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        "history": [{"created": stamp, "created_by": line} for line in history],
    }
    config_digest, config_bytes = _blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer.digest, "size": layer.size} for layer in layers],
        "annotations": {"org.opencontainers.image.created": stamp},
    }
    manifest_digest, manifest_bytes = _blob(json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": architecture, "os": "linux"},
                "annotations": {"org.opencontainers.image.ref.name": ref_name},
            }
        ],
    }
    # docker-archive's manifest over the same blobs, as `docker save` writes since Docker 25: engines
    # that cannot load an OCI layout (docker.io 20.10 in bullseye and bookworm) load this instead.
    docker_manifest = [{"Config": blob_name(config_digest), "RepoTags": [f"{ref_name}:latest"], "Layers": [blob_name(layer.digest) for layer in layers]}]
    mtime = int(created.timestamp())
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', mtime)
        _add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode(), mtime)
        _add_bytes(tar, "manifest.json", json.dumps(docker_manifest).encode(), mtime)
        for digest, data in ((config_digest, config_bytes), (manifest_digest, manifest_bytes)):
            _add_bytes(tar, blob_name(digest), data, mtime)
        for layer in {layer.digest: layer for layer in layers}.values():
            info = tarfile.TarInfo(blob_name(layer.digest))
            info.size, info.mtime, info.mode = layer.size, mtime, 0o644
            with layer.open() as reader:
                tar.addfile(info, reader)
    return OciImage(config_digest, manifest_digest, [layer.digest for layer in layers], sum(layer.size for layer in layers))
