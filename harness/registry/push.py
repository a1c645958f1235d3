"""Pushing the harness's OCI archives to a registry over the distribution API, and tying the
per-architecture images of one name together in an OCI image index (a multi-arch image).

Only the standard library: blobs are uploaded monolithically (POST, then PUT with the digest),
skipped when the registry has them already, and streamed from the archive without unpacking it.
A private registry (harness/config/registries.py) is reached with its CA and answered in the two
ways registries challenge: Basic (credentials sent as they are) and Bearer (a token fetched from
the realm the challenge names, for the scope it names, with the credentials if there are any).
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness.config.model import ARCHES
from harness.config.registries import AuthFileError, RegistryAccess
from harness.images.oci import blob_name
from harness.registry.server import RegistryError

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class PushedImage:
    """One architecture's image in the registry, as the index lists it."""

    arch: str
    manifest_digest: str
    manifest_size: int
    config_digest: str
    media_type: str = MEDIA_MANIFEST  # an image taken from a file may have a Docker manifest


# Seconds to wait before each new try of a request the registry answered with a 5xx, or did not
# answer (seen for real: a 500 for a manifest while another worker was publishing the same image).
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)


class RegistryClient:
    def __init__(self, url: str, retry_delays: tuple[float, ...] = RETRY_DELAYS, access: RegistryAccess | None = None):
        self.url = url.rstrip("/")
        self.retry_delays = retry_delays
        self.access = access
        self._context = ssl.create_default_context(cafile=str(access.ca_file)) if access and access.ca_file else None
        self._authorization = ""  # the last challenge's answer, sent until a challenge asks again

    def _open(self, request: urllib.request.Request):
        return urllib.request.urlopen(request, timeout=600, context=self._context)

    def _answer(self, challenge: str) -> str:
        """The Authorization header that answers a 401's WWW-Authenticate: "" when there is nothing
        to answer with (no credentials for Basic, or a scheme the harness does not speak)."""
        scheme, _, params = challenge.partition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        try:
            creds = self.access.credentials() if self.access else None
        except AuthFileError as exc:
            raise RegistryError(f"registry {self.url}: {exc}") from None
        basic = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode() if creds else ""
        if scheme.lower() == "basic":
            return basic
        if scheme.lower() == "bearer" and "realm" in fields:
            query = urllib.parse.urlencode({k: v for k, v in fields.items() if k in ("service", "scope")})
            request = urllib.request.Request(f"{fields['realm']}?{query}", headers={"Authorization": basic} if basic else {})
            try:
                with self._open(request) as reply:
                    token = json.loads(reply.read())
            except urllib.error.HTTPError as exc:
                raise RegistryError(f"registry {self.url}: its token service {fields['realm']} gave {exc.code}: {exc.read()[:300].decode(errors='replace')}") from None
            except (OSError, ValueError) as exc:
                raise RegistryError(f"registry {self.url}: its token service {fields['realm']} cannot be used: {exc}") from None
            return "Bearer " + (token.get("token") or token.get("access_token", ""))
        return ""

    def _request(self, method: str, path: str, data=None, headers: dict | None = None) -> urllib.request.addinfourl:
        """One request; a 5xx or an unanswered one is tried again with backoff when its body can be
        sent again (not a stream already read); a 401 is answered once (see _answer); another 4xx
        is final."""
        url = path if path.startswith("http") else f"{self.url}{path}"
        repeatable = data is None or isinstance(data, bytes)
        delays = list(self.retry_delays) if repeatable else []
        challenged = False
        while True:
            sent = {**(headers or {}), **({"Authorization": self._authorization} if self._authorization else {})}
            request = urllib.request.Request(url, data=data, method=method, headers=sent)
            try:
                return self._open(request)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:500].decode(errors="replace")
                if exc.code == 401 and not challenged and repeatable:
                    challenged = True
                    if answer := self._answer(exc.headers.get("WWW-Authenticate", "")):
                        self._authorization = answer
                        continue
                if exc.code < 500 or not delays:
                    refused = f" (the credentials from {self.access.auth_file} were refused)" if exc.code == 401 and self._authorization and self.access and self.access.auth_file else ""
                    raise RegistryError(f"registry {self.url}: {method} {path.split('?')[0]} gave {exc.code}{refused}: {detail}") from None
            except OSError as exc:
                if not delays:
                    raise RegistryError(f"registry {self.url} cannot be reached: {exc}") from None
            time.sleep(delays.pop(0))

    def has_blob(self, repo: str, digest: str) -> bool:
        try:
            self._request("HEAD", f"/v2/{repo}/blobs/{digest}").close()
            return True
        except RegistryError:
            return False

    def push_blob(self, repo: str, digest: str, stream, size: int) -> None:
        if self.has_blob(repo, digest):
            return
        with self._request("POST", f"/v2/{repo}/blobs/uploads/") as reply:
            location = reply.headers["Location"]
        if not location.startswith("http"):
            location = f"{self.url}{location}"
        sep = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        self._request("PUT", f"{location}{sep}digest={digest}", data=stream, headers=headers).close()

    def push_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> None:
        self._request("PUT", f"/v2/{repo}/manifests/{reference}", data=body, headers={"Content-Type": media_type}).close()

    def manifest(self, repo: str, reference: str, accept: str) -> tuple[bytes, str]:
        with self._request("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept}) as reply:
            return reply.read(), reply.headers.get("Docker-Content-Digest", "")

    def blob(self, repo: str, digest: str) -> bytes:
        with self._request("GET", f"/v2/{repo}/blobs/{digest}") as reply:
            return reply.read()

    def push_archive(self, repo: str, archive: Path, arch: str) -> PushedImage:
        """Every blob of one of the harness's OCI archives, then its manifest by digest."""
        with tarfile.open(archive) as tar:
            index = json.loads(tar.extractfile("index.json").read())
            descriptor = index["manifests"][0]
            manifest_bytes = tar.extractfile(blob_name(descriptor["digest"])).read()
            manifest = json.loads(manifest_bytes)
            for blob in [manifest["config"], *manifest["layers"]]:
                member = tar.getmember(blob_name(blob["digest"]))
                self.push_blob(repo, blob["digest"], tar.extractfile(member), member.size)
        media = descriptor.get("mediaType", MEDIA_MANIFEST)
        self.push_manifest(repo, descriptor["digest"], manifest_bytes, media)
        return PushedImage(arch, descriptor["digest"], len(manifest_bytes), manifest["config"]["digest"], media)

    def tag_manifest(self, repo: str, tag: str, image: PushedImage) -> None:
        body, _ = self.manifest(repo, image.manifest_digest, image.media_type)
        self.push_manifest(repo, tag, body, image.media_type)

    def push_index(self, repo: str, tag: str, images: list[PushedImage]) -> str:
        """One tag for every architecture: the index engines resolve by their own platform. Returns its digest."""
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {"mediaType": i.media_type, "digest": i.manifest_digest, "size": i.manifest_size, "platform": {"os": "linux", "architecture": ARCHES[i.arch].oci}}
                for i in sorted(images, key=lambda i: i.arch)
            ],
        }
        body = json.dumps(index, sort_keys=True).encode()
        self.push_manifest(repo, tag, body, MEDIA_INDEX)
        return self.manifest(repo, tag, MEDIA_INDEX)[1]
