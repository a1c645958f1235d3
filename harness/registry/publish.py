"""Publishing a candidate image: its builds for every VM host architecture pushed to the harness's
registry behind one OCI index, tagged by content so that concurrent runs and xdist workers that
publish the same builds agree, and a changed build never hides behind an old tag."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from harness.images.build import ImageBuild
from harness.registry.push import RegistryClient

# QEMU user networking: the harness machine's loopback, as a guest sees it.
GUEST_GATEWAY = "10.0.2.2"


@dataclass(frozen=True)
class Publication:
    repo: str
    tag: str
    index_digest: str
    arches: tuple[str, ...]

    def reference(self, registry: str) -> str:
        return f"{registry}/{self.repo}:{self.tag}"


def guest_registry(url: str, gateway: str = GUEST_GATEWAY) -> str:
    """The registry's address as a guest reaches it (host:port, no scheme); `gateway` is this
    machine's address as the guest sees it."""
    return f"{gateway}:{url.rsplit(':', 1)[1]}"


def guest_reference(reference: str, gateway: str = GUEST_GATEWAY) -> str:
    """A reference as a guest reaches it: a registry on this machine's loopback is at `gateway`."""
    host, sep, rest = reference.partition("/")
    name, colon, port = host.partition(":")
    return f"{gateway}{colon}{port}{sep}{rest}" if name in ("127.0.0.1", "localhost") else reference


def publish(url: str, name: str, builds: dict[str, ImageBuild], index: bool | None = None) -> Publication:
    """Push the builds behind one tag: an OCI index, or (one build, unless `index` says otherwise) a
    plain manifest, which any platform pulls. index=True when more platforms were meant than built:
    a host of a missing one must find no image for its platform, not run another's."""
    client = RegistryClient(url)
    repo = f"harness/{name}"
    pushed = [client.push_archive(repo, build.archive, arch) for arch, build in sorted(builds.items())]
    tag = "c-" + hashlib.sha256(" ".join(sorted(b.image_id for b in builds.values())).encode()).hexdigest()[:16]
    if len(pushed) == 1 and not index:
        client.tag_manifest(repo, tag, pushed[0])
        return Publication(repo, tag, pushed[0].manifest_digest, tuple(builds))
    return Publication(repo, tag, client.push_index(repo, tag, pushed), tuple(sorted(builds)))
