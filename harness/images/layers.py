"""An application image's own layer: what its full root file system adds to, changes in or removes
from its base image's, as an OCI layer tar (changed entries, plus `.wh.` whiteouts for removals).

Applied on top of the base layer, it gives the full tree (modification times of unchanged files
aside, which are not compared), so the base layer is shared: a host that has the base pulls only
the application's layer.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from pathlib import Path

WHITEOUT = ".wh."


def _norm(name: str) -> str:
    """./usr/bin/ and usr/bin name the same entry."""
    name = name[2:] if name.startswith("./") else name
    return name.rstrip("/") or "."


def _signature(tar: tarfile.TarFile, member: tarfile.TarInfo) -> tuple:
    """What makes two entries the same file: type, ownership, mode, link target, content."""
    content = ""
    if member.isreg():
        h = hashlib.sha256()
        with tar.extractfile(member) as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        content = h.hexdigest()
    return (member.type, member.mode, member.uid, member.gid, member.linkname, member.devmajor, member.devminor, content, tuple(sorted(member.pax_headers.items())))


def _signatures(path: Path) -> dict[str, tuple]:
    with tarfile.open(path) as tar:
        return {_norm(m.name): _signature(tar, m) for m in tar}


def _parents(name: str) -> list[str]:
    parents = []
    while (name := posixpath.dirname(name)) not in ("", "."):
        parents.append(name)
    return parents


def write_diff_layer(base: Path, full: Path, out: Path) -> int:
    """Write the layer that turns `base` into `full`; returns how many entries it holds."""
    lower = _signatures(base)
    with tarfile.open(full) as tar:
        members = {_norm(m.name): m for m in tar}
        changed = {name for name, m in members.items() if name != "." and lower.get(name) != _signature(tar, m)}
        # A hard link and its target travel together, or one of them would keep the old inode.
        for name, m in members.items():
            if m.islnk():
                target = _norm(m.linkname)
                if name in changed or target in changed:
                    changed |= {name, target}
        # Parent directories go along, so the layer applies wherever it is unpacked.
        changed |= {p for name in list(changed) for p in _parents(name) if p in members}
        removed = sorted(name for name in lower if name != "." and name not in members)
        # A removed directory is whited out once, not file by file.
        removed = [n for n in removed if not any(p in lower and p not in members for p in _parents(n))]
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as layer:
            for name in removed:
                info = tarfile.TarInfo("./" + posixpath.join(posixpath.dirname(name), WHITEOUT + posixpath.basename(name)))
                layer.addfile(info)
            for name, m in members.items():  # in the full tar's order: directories before their files
                if name in changed:
                    layer.addfile(m, tar.extractfile(m) if m.isreg() else None)
    return len(changed) + len(removed)
