"""Write a single-layer OCI image archive (oci-archive) from a root file system tarball.

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
class OciImage:
    """What identifies the written image: its config digest is the image ID engines report."""

    config_digest: str
    manifest_digest: str
    layer_digest: str
    size: int


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


def write_oci_archive(
    rootfs_tar: Path,
    out: Path,
    *,
    architecture: str,
    ref_name: str,
    cmd: list[str],
    labels: dict[str, str],
    created: datetime | None = None,
) -> OciImage:
    created = created or datetime.now(timezone.utc).replace(microsecond=0)
    layer_digest = _sha256_file(rootfs_tar)
    layer_size = rootfs_tar.stat().st_size
    config = {
        "created": created.isoformat().replace("+00:00", "Z"),
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": cmd,
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": created.isoformat().replace("+00:00", "Z"), "created_by": "container-matrix-harness (mmdebstrap)"}],
    }
    config_digest, config_bytes = _blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": layer_size}],
        "annotations": {"org.opencontainers.image.created": config["created"]},
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
    docker_manifest = [{"Config": f"blobs/sha256/{config_digest.split(':')[1]}", "RepoTags": [f"{ref_name}:latest"], "Layers": [f"blobs/sha256/{layer_digest.split(':')[1]}"]}]
    mtime = int(created.timestamp())
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', mtime)
        _add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode(), mtime)
        _add_bytes(tar, "manifest.json", json.dumps(docker_manifest).encode(), mtime)
        for digest, data in ((config_digest, config_bytes), (manifest_digest, manifest_bytes)):
            _add_bytes(tar, f"blobs/sha256/{digest.split(':')[1]}", data, mtime)
        info = tarfile.TarInfo(f"blobs/sha256/{layer_digest.split(':')[1]}")
        info.size, info.mtime, info.mode = layer_size, mtime, 0o644
        with open(rootfs_tar, "rb") as fh:
            tar.addfile(info, fh)
    return OciImage(config_digest, manifest_digest, layer_digest, out.stat().st_size)
