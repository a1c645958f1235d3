"""What a registry says of an image given by reference: its index and, per platform, manifest
digest, config (image ID, build date, labels), layer count and size. Its layers are not downloaded,
so its packages (and freshness) stay unknown; an unreachable registry gives no facts, not an error
(the hosts' pulls are the portability verdict)."""

from __future__ import annotations

import json

from harness.config.model import debian_arch
from harness.config.registries import RegistryAccess
from harness.registry.push import MEDIA_INDEX, MEDIA_MANIFEST, RegistryClient
from harness.registry.server import RegistryError
from harness.results.model import ImageBuildRecord

_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_ACCEPT = ", ".join((MEDIA_INDEX, _DOCKER_LIST, MEDIA_MANIFEST, _DOCKER_MANIFEST))


def split_reference(reference: str) -> tuple[str, str, str]:
    """registry/repo:tag or registry/repo@digest -> (registry, repo, tag or digest)."""
    registry, _, rest = reference.partition("/")
    if "@" in rest:
        repo, _, ref = rest.partition("@")
    else:
        repo, _, ref = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    return registry, repo, ref


def describe(reference: str, tls_verify: bool, access: RegistryAccess | None = None) -> tuple[dict[str, ImageBuildRecord], str, str]:
    """(builds by Debian architecture, digest of what the reference names, why they could not be
    read: "" when they were; refused credentials say so here). `access`: the matrix's credentials
    and CA for that registry."""
    registry, repo, ref = split_reference(reference)
    client = RegistryClient(f"{'https' if tls_verify else 'http'}://{registry}", access=access)
    try:
        body, digest = client.manifest(repo, ref, _ACCEPT)
        top = json.loads(body)
        if top.get("mediaType") in (MEDIA_INDEX, _DOCKER_LIST) or "manifests" in top:
            entries = [(m["digest"], json.loads(client.manifest(repo, m["digest"], _ACCEPT)[0])) for m in top["manifests"]]
        else:
            entries = [(digest, top)]
        builds = {}
        for manifest_digest, manifest in entries:
            config = json.loads(client.blob(repo, manifest["config"]["digest"]))
            arch = debian_arch(config.get("architecture", ""))
            builds[arch] = ImageBuildRecord(
                arch=arch,
                platform=f"{config.get('os', '')}/{config.get('architecture', '')}",
                image_id=manifest["config"]["digest"],
                manifest_digest=manifest_digest,
                size=sum(layer["size"] for layer in manifest["layers"]),
                layers=len(manifest["layers"]),
                created=config.get("created", ""),
                debian_version="",
                glibc="",
                package_count=0,
                recipe_digest="",
                labels=dict((config.get("config") or {}).get("Labels") or {}),
            )
        return builds, digest, ""
    except RegistryError as exc:
        said = str(exc)
        if " gave 401" in said and access is None:
            said += " (the registry wants credentials: give them in the matrix's registries:)"
        return {}, "", said
    except (ValueError, KeyError) as exc:
        return {}, "", f"{reference}: the registry's answer is not an image manifest or index ({type(exc).__name__}: {exc})"
