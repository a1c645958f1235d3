"""A VM host's engine image store, kept across runs.

The store is a disk of its own (an ext4 file system the guest mounts where its engine keeps images),
cached per host build: each boot gets a throw-away qcow2 overlay on the kept base, so a run never
changes what another run booted with; when the host stops cleanly after pulling something, the
overlay is flattened into a new base and put in place atomically (two runs that both pulled: the
last one's store is kept, and either is whole). Beside the base, `held.json` keeps the evidence of
each image's first pull (its reference, the platform the engine chose, what the pull printed) and
when a run last used it; images no run used for STORE_KEEP_DAYS are removed before the store is
kept, so it does not grow without end.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

STORE_SIZE = "64G"  # virtual: the file holds only what was written
STORE_KEEP_DAYS = 7
FORMAT = 1  # bumped when the file system or the layout changes: older stores are not used


@dataclass
class HeldImage:
    """An image the store holds, with the evidence of the pull that put it there."""

    image_id: str
    references: list[str]
    platform: str
    first_pull: str  # what that pull printed
    pulled_at: str
    last_used: float = 0.0


@dataclass
class Held:
    images: dict[str, HeldImage] = field(default_factory=dict)  # by image ID

    def by_path(self, reference: str) -> HeldImage | None:
        """The image held under this reference's repository and tag, whatever registry address
        (host:port) it was pulled by then: the run's registry may listen elsewhere now."""
        path = reference.partition("/")[2]
        return next((i for i in self.images.values() if any(r.partition("/")[2] == path for r in i.references)), None)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "images": {k: asdict(v) for k, v in self.images.items()}}, indent=1, sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> "Held":
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                return cls()
            return cls({k: HeldImage(**v) for k, v in data["images"].items()})
        except (OSError, ValueError, TypeError, KeyError):
            return cls()  # no evidence kept: the images are pulled (and recorded) again


class ImageStore:
    """The store of one host build (`key`) in `root`."""

    def __init__(self, root: Path, key: str, fmt: int = FORMAT):
        self.root, self.key = root, f"{key}-f{fmt}"
        self.base = root / f"{self.key}.qcow2"
        self.held_file = root / f"{self.key}.held.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{self.key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _empty(self) -> Path:
        """An empty ext4 file system, the base of a host's first store: made raw (mkfs.ext4 writes
        half a gigabyte of journal and tables there), kept as qcow2 (its zeros left out: 10 MB)."""
        empty = self.root / f"empty-f{FORMAT}.qcow2"
        if not empty.exists():
            raw, partial = empty.with_suffix(f".{os.getpid()}.raw"), empty.with_suffix(f".{os.getpid()}.partial")
            try:
                subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "store", "-E", "root_owner=0:0", str(raw), STORE_SIZE], check=True, capture_output=True)
                subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(partial)], check=True, capture_output=True)
            finally:
                raw.unlink(missing_ok=True)
            os.replace(partial, empty)
        return empty

    def overlay(self, path: Path, fresh: bool = False) -> tuple[Path, Held]:
        """A throw-away overlay for one boot at `path`, and what it holds (nothing when `fresh`)."""
        with self._locked():
            warm = self.base.exists() and not fresh
            base = self.base if warm else self._empty()
            held = Held.from_file(self.held_file) if warm else Held()
        path.unlink(missing_ok=True)
        # The backing file is named by its absolute path: a base replaced meanwhile stays open as it was.
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(path)], check=True, capture_output=True)
        return path, held

    def keep(self, overlay: Path, held: Held) -> int:
        """Flatten a cleanly unmounted overlay into the new base; returns its size in bytes."""
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.root / f"{self.key}.{os.getpid()}.partial"
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(overlay), str(partial)], check=True, capture_output=True)
        with self._locked():
            os.replace(partial, self.base)
            self.held_file.write_text(held.to_json())
        return self.base.stat().st_size


    def touch(self, held: Held) -> None:
        """Record when the images were last used, the base unchanged."""
        with self._locked():
            if self.base.exists():
                self.held_file.write_text(held.to_json())


def stale(held: Held, used: set[str], now: float | None = None) -> list[str]:
    """IDs of held images neither used by this boot nor by any run for STORE_KEEP_DAYS."""
    cutoff = (now or time.time()) - STORE_KEEP_DAYS * 86400
    return [i for i, image in held.images.items() if i not in used and image.last_used < cutoff]


def prune_stores(root: Path, keep: set[str]) -> list[tuple[str, int]]:
    """Remove the stores (and their evidence) of host builds not in `keep`, and stores of an older
    FORMAT, which no run boots with any more; returns (store, bytes) of each removed. A store a run
    is keeping right now is waited for (its lock), not cut in half."""
    removed = []
    for base in sorted(root.glob("*.qcow2")) if root.is_dir() else []:
        named = re.fullmatch(r"(.+)-f(\d+)\.qcow2", base.name)
        if named is None or int(named[2]) == FORMAT and (named[1] == "empty" or named[1] in keep):
            continue
        store = ImageStore(root, named[1], int(named[2]))
        with store._locked():
            size = base.stat().st_blocks * 512 if base.exists() else 0
            base.unlink(missing_ok=True)
            store.held_file.unlink(missing_ok=True)
        (root / f".{store.key}.lock").unlink(missing_ok=True)
        removed.append((store.key, size))
    return removed
