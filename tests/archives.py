"""Image archives as CI pipelines hand them over, written here from layers: an OCI archive (with a
nested index, as `docker buildx` and `skopeo copy --all` write multi-platform ones) and a docker
archive (as `docker save` writes it)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer tar holding these files (and their directories)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def config(arch: str, labels: dict[str, str], layers: list[bytes]) -> bytes:
    return json.dumps({
        "architecture": arch, "os": "linux", "created": "2026-11-30T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [digest(l) for l in layers]},
    }).encode()


def harness_image(archive: Path) -> tuple[dict, list[bytes]]:
    """The config and layers of one of the harness's own built archives."""
    with tarfile.open(archive) as tar:
        read = lambda name: tar.extractfile(name).read()  # noqa: E731
        manifest = json.loads(read("blobs/" + json.loads(read("index.json"))["manifests"][0]["digest"].replace(":", "/")))
        return json.loads(read("blobs/" + manifest["config"]["digest"].replace(":", "/"))), [read("blobs/" + l["digest"].replace(":", "/")) for l in manifest["layers"]]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_oci(out: Path, images: dict[str, tuple[bytes, list[bytes]]]) -> dict[str, str]:
    """An OCI archive of one index naming a manifest per architecture (arch -> (config, layers)),
    behind index.json as a nested index; returns each architecture's manifest digest."""
    digests, entries = {}, []
    with tarfile.open(out, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for arch, (config_bytes, layers) in images.items():
            for blob in (config_bytes, *layers):
                _add(tar, "blobs/" + digest(blob).replace(":", "/"), blob)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config_bytes), "size": len(config_bytes)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(l), "size": len(l)} for l in layers],
            }).encode()
            _add(tar, "blobs/" + digest(manifest).replace(":", "/"), manifest)
            digests[arch] = digest(manifest)
            entries.append({"mediaType": MANIFEST, "digest": digest(manifest), "size": len(manifest), "platform": {"os": "linux", "architecture": arch}})
        index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}).encode()
        _add(tar, "blobs/" + digest(index).replace(":", "/"), index)
        _add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": INDEX, "digest": digest(index), "size": len(index)}]}).encode())
    return digests


def write_docker(out: Path, config_bytes: bytes, layers: list[bytes], tag: str = "example/app:1") -> str:
    """A docker archive of one image; returns its image ID (the config's digest)."""
    with tarfile.open(out, "w") as tar:
        config_name = digest(config_bytes).split(":")[1] + ".json"
        _add(tar, config_name, config_bytes)
        names = []
        for blob in layers:
            names.append(digest(blob).split(":")[1] + "/layer.tar")
            _add(tar, names[-1], blob)
        _add(tar, "manifest.json", json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": names}]).encode())
    return digest(config_bytes)
