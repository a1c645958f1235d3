"""What is installed in a built image, read from its dpkg status file on the harness machine (no
emulation needed for a foreign-architecture image)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Packages


@dataclass(frozen=True)
class Installed:
    """The installed packages of an image: name -> version, and the few that make its facts."""

    versions: dict[str, str]
    debian_version: str

    @property
    def glibc(self) -> str:
        return self.versions.get("libc6", "")

    @property
    def count(self) -> int:
        return len(self.versions)


def read_installed(status: Path, debian_version: Path) -> Installed:
    versions = {}
    with open(status, encoding="utf-8", errors="replace") as fh:
        for para in Packages.iter_paragraphs(fh, use_apt_pkg=False):
            if para.get("Status", "").endswith(" installed"):
                versions[para["Package"]] = para["Version"]
    return Installed(versions, debian_version.read_text().strip() if debian_version.exists() else "")
