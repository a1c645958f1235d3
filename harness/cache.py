"""Content-addressed build cache: one directory per digest, built once, under a lock, published atomically."""

from __future__ import annotations

import fcntl
import hashlib
from functools import cache
import json
import os
import re
import shutil
import subprocess
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

COMPLETE = "complete"
CHECKSUMS = "checksums.json"
# Bumped when content_checksum changes; entries checked by an older one are trusted and re-recorded.
CHECKSUM_FORMAT = 2


# Blocks are hashed at fixed offsets, so the checksum depends on the bytes only, not on how the file
# system happens to lay them out (ext4 turns a freshly written image's unwritten extents into written
# ones later, which moved data/hole boundaries and made intact root disks look damaged).
_BLOCK = 1 << 16
_ZEROS = bytes(_BLOCK)


def content_checksum(path: Path) -> str:
    """blake2b over the file's non-zero 64 KiB blocks and their offsets; holes of a sparse disk image
    are skipped unread, so a mostly empty 6 GiB root disk is checked in about a second."""
    h = hashlib.blake2b(digest_size=32)
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        fd, block = fh.fileno(), 0
        while block * _BLOCK < size:
            try:
                start = os.lseek(fd, block * _BLOCK, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            block = max(block, start // _BLOCK)
            fh.seek(block * _BLOCK)
            while block * _BLOCK < end:
                chunk = fh.read(_BLOCK)
                if chunk != _ZEROS[: len(chunk)]:
                    h.update(block.to_bytes(8, "little"))
                    h.update(chunk)
                block += 1
    return h.hexdigest()


class DamagedBuild(UserWarning):
    """A cached build failed its checksum and is being rebuilt."""


def tree_digest(root: Path) -> str:
    """The digest of every file below `root` (names and contents; Python's byte-code left out)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def default_root() -> Path:
    """Where builds are kept: world-traversable when root, because QEMU runs as libvirt-qemu."""
    if env := os.environ.get("HARNESS_CACHE"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/container-matrix-harness")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "container-matrix-harness"


def digest_of(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


@cache
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def file_digest(path: Path) -> str:
    """A file's sha256, read once per process for as long as its size and modification time stay
    (an image archive's digest is part of every cell key of that image)."""
    stat = path.stat()
    return _file_digest(str(path), stat.st_mtime_ns, stat.st_size)


def _mounts_below(path: Path) -> list[str]:
    """Mount points inside `path`, deepest first (mountinfo escapes blanks as octal)."""
    prefix = str(path.resolve()) + "/"
    points = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point.startswith(prefix):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Remove a build tree, even one an interrupted mmdebstrap left with /proc, /sys and /dev
    mounted inside it (rmtree alone fails on those, and the next build then finds its way blocked)."""
    for point in _mounts_below(path):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


class BuildCache:
    """A kind of build (hosts, images) kept as <root>/<kind>/<digest>/ with a `complete` marker."""

    def __init__(self, root: Path, kind: str):
        self.dir = root / kind
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)

    def path(self, digest: str) -> Path:
        return self.dir / digest

    def has(self, digest: str) -> bool:
        return (self.path(digest) / COMPLETE).exists()

    def damaged(self, digest: str) -> list[str]:
        """Files of a complete entry whose content no longer matches the checksum taken at build time."""
        entry = self.path(digest)
        try:
            recorded = json.loads((entry / CHECKSUMS).read_text())
        except FileNotFoundError:
            recorded = {}
        except ValueError:
            return [CHECKSUMS]
        if recorded.get("format") != CHECKSUM_FORMAT:
            self._record_checksums(entry)  # kept before this checksum existed: trusted on first use
            return []
        expected = recorded.get("files", {})
        return [name for name, checksum in sorted(expected.items()) if not (entry / name).is_file() or content_checksum(entry / name) != checksum]

    def get_or_build(self, digest: str, recipe: dict, build: Callable[[Path, Path], None]) -> tuple[Path, bool]:
        """The entry for `digest`, building it with build(tmpdir, log) if missing; returns (path, built).

        The log stays beside the cache entry when the build fails, so an error message can point at it.
        """
        final = self.path(digest)
        with _locked(self.dir / f".{digest}.lock"):
            if self.has(digest):
                damaged = self.damaged(digest)
                if not damaged:
                    return final, False
                # A warning, so pytest shows it in its summary even though the build ran inside a cell.
                warnings.warn(DamagedBuild(f"cached build {final} is damaged ({', '.join(damaged)}): rebuilding it"), stacklevel=2)
                self.remove(digest)
            tmp = self.dir / f".{digest}.partial"
            remove_tree(tmp)
            tmp.mkdir()
            log = self.dir / f"{digest}.build.log"
            log.unlink(missing_ok=True)
            try:
                build(tmp, log)
                if log.exists():
                    os.replace(log, tmp / "build.log")
                self._record_checksums(tmp)
                (tmp / "recipe.json").write_text(json.dumps(recipe, indent=1, sort_keys=True))
                (tmp / COMPLETE).write_text("")
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
            except BaseException:
                remove_tree(tmp)
                raise
            return final, True

    @staticmethod
    def _record_checksums(entry: Path) -> None:
        sums = {f.name: content_checksum(f) for f in sorted(entry.iterdir()) if f.is_file() and f.name not in ("build.log", CHECKSUMS, COMPLETE)}
        (entry / CHECKSUMS).write_text(json.dumps({"format": CHECKSUM_FORMAT, "files": sums}, indent=1))

    def entries(self) -> list[tuple[str, dict, int]]:
        """(digest, recipe, size in bytes) of every complete entry."""
        out = []
        for entry in sorted(self.dir.iterdir()):
            if entry.name.startswith(".") or not (entry / COMPLETE).exists():
                continue
            size = sum(f.stat().st_blocks * 512 for f in entry.rglob("*") if f.is_file())
            out.append((entry.name, json.loads((entry / "recipe.json").read_text()), size))
        return out

    def remove(self, digest: str) -> None:
        remove_tree(self.path(digest))

    def remove_abandoned(self) -> list[Path]:
        """Half-built trees of builds that were killed (no process holds their lock); returns them."""
        removed = []
        for partial in sorted(self.dir.glob(".*.partial")):
            with open(self.dir / f"{partial.name.removesuffix('.partial')}.lock", "w") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a build is running
                remove_tree(partial)
                removed.append(partial)
        return removed
