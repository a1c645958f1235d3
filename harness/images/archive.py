"""The Debian archive as images see it: which suites an image is built from, when the archive last
changed (the reproducible build date), and the package indexes its freshness is judged against."""

from __future__ import annotations

import email.utils
import hashlib
import lzma
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from debian.debian_support import version_compare

from harness.mmdebstrap import BuildError

# Releases whose fixes reach users through the security archive; testing and unstable get them in
# the release's own suite.
_ROLLING = ("forky", "sid")
INDEX_TTL = 6 * 3600  # seconds a downloaded package index is trusted before it is fetched again


@dataclass(frozen=True)
class Suite:
    """One apt source: an archive URL and a suite in it (main only)."""

    url: str
    name: str

    def deb_line(self) -> str:
        return f"deb {self.url} {self.name} main"


def security_mirror(mirror: str) -> str:
    """deb.debian.org/debian -> deb.debian.org/debian-security, as Debian lays its mirrors out."""
    return mirror.rstrip("/") + "-security"


def build_suites(release: str, mirror: str, updates: bool) -> list[Suite]:
    """What an image is built from: its release, plus (for a stable release, unless the image is
    wanted as released) the security and point-release updates, as Debian's own images are."""
    suites = [Suite(mirror, release)]
    if updates and release not in _ROLLING:
        suites += [Suite(mirror, f"{release}-updates"), Suite(security_mirror(mirror), f"{release}-security")]
    return suites


def fix_suites(release: str, mirror: str) -> list[Suite]:
    """Where fixed packages of a release are published: what an image's freshness is judged against."""
    if release in _ROLLING:
        return [Suite(mirror, release)]
    return [Suite(security_mirror(mirror), f"{release}-security")]


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=120) as reply:
            return reply.read()
    except (urllib.error.URLError, OSError) as exc:
        raise BuildError(f"the Debian archive cannot be read: {url}: {exc}") from None


def _release_field(suite: Suite, field: str) -> str:
    for line in _fetch(f"{suite.url}/dists/{suite.name}/InRelease").decode(errors="replace").splitlines():
        if line.startswith(f"{field}:"):
            return line.split(":", 1)[1].strip()
    return ""


def require_architecture(suites: list[Suite], arch: str, what: str) -> None:
    """Fail early, and say why, when a suite has no `arch`: a release in LTS keeps only some
    architectures (bullseye's main suite now lists amd64, arm64, armhf and i386; bookworm-security
    no s390x)."""
    for suite in suites:
        listed = _release_field(suite, "Architectures").split()
        if listed and arch not in listed:
            raise BuildError(f"{what}: {suite.url} has no {arch} in {suite.name} (its architectures: {' '.join(listed)})")


def archive_epoch(suites: list[Suite]) -> int:
    """The newest Release date of the suites: SOURCE_DATE_EPOCH for a reproducible build, so the same
    recipe from the same archive state gives the same bytes."""
    dates = [int(email.utils.parsedate_to_datetime(date).timestamp()) for suite in suites if (date := _release_field(suite, "Date"))]
    if not dates:
        raise BuildError(f"no Date in the Release files of {', '.join(s.name for s in suites)}")
    return max(dates)


def package_index(suite: Suite, arch: str, cache_dir: Path) -> dict[str, str]:
    """Binary package name -> newest version in the suite's main component for `arch` (arch: all
    included), downloaded at most once per INDEX_TTL and shared by every run on this machine; the dict
    is shared within the process too: read it, never change it."""
    url = f"{suite.url}/dists/{suite.name}/main/binary-{arch}/Packages.xz"
    path = cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".Packages")
    if not path.exists() or time.time() - path.stat().st_mtime > INDEX_TTL:
        cache_dir.mkdir(parents=True, exist_ok=True)
        data = lzma.decompress(_fetch(url))
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    stat = path.stat()
    return _versions(str(path), stat.st_mtime_ns, stat.st_size)


@cache
def _versions(path: str, mtime_ns: int, size: int) -> dict[str, str]:
    """An index's newest version of each package, parsed once per process while its file stays
    the same (every image of a release is judged against the same index, on every run, reused or
    not). Read by its two fields, not with python-debian's deb822 parser: measured on 2026-12-05,
    bookworm-security's 2.5 MB index took 0.82 s with deb822, 0.05 s so; sid's 65 MB one 1 s so.
    Package is a paragraph's first field and continuation lines start with a blank."""
    versions: dict[str, str] = {}
    name = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("Package:"):
                name = line[8:].strip()
            elif name is not None and line.startswith("Version:"):
                version = line[8:].strip()
                if name not in versions or version_compare(version, versions[name]) > 0:
                    versions[name] = version
                name = None
    return versions
