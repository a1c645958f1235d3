"""How stale an image is: the installed packages for which the release's fix archive (its security
archive; the suite itself for testing and unstable) now has a newer version, graded A to F.

Judged at every run, not at build time: a cached image ages while the archive moves on.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from debian.debian_support import version_compare

from harness.images.archive import Suite, fix_suites, package_index
from harness.mmdebstrap import BuildError
from harness.results.model import Freshness

# Upper bounds of outdated packages for each grade; more than the last is F.
GRADES = (("A", 0), ("B", 2), ("C", 5), ("D", 10))


def grade(outdated: int) -> str:
    return next((g for g, bound in GRADES if outdated <= bound), "F")


def outdated_packages(installed: dict[str, str], fixed: dict[str, str]) -> list[str]:
    """'name installed -> fixed' for each installed package the fix archive has newer."""
    return [
        f"{name} {version} -> {fixed[name]}"
        for name, version in sorted(installed.items())
        if name in fixed and version_compare(fixed[name], version) > 0
    ]


def freshness_of(installed: dict[str, str], release: str, arch: str, mirror: str, index_cache: Path) -> Freshness:
    """The image's freshness now; an unreachable archive gives grade "?" with the reason, never an error."""
    suites: list[Suite] = fix_suites(release, mirror)
    checked_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    against = ", ".join(f"{s.url} {s.name}" for s in suites)
    if not installed:
        return Freshness(grade="?", outdated=0, checked=0, against=against, checked_at=checked_at, error="no package list was read from the image")
    try:
        fixed: dict[str, str] = {}
        for suite in suites:
            for name, version in package_index(suite, arch, index_cache).items():
                if name not in fixed or version_compare(version, fixed[name]) > 0:
                    fixed[name] = version
    except BuildError as exc:
        return Freshness(grade="?", outdated=0, checked=len(installed), against=against, checked_at=checked_at, error=str(exc))
    updates = outdated_packages(installed, fixed)
    return Freshness(grade=grade(len(updates)), outdated=len(updates), checked=len(installed), against=against, checked_at=checked_at, updates=updates)
