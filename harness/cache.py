"""Content-addressed build cache: one directory per digest, built once, under a lock, published atomically."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

COMPLETE = "complete"


def default_root() -> Path:
    """Where builds are kept: world-traversable when root, because QEMU runs as libvirt-qemu."""
    if env := os.environ.get("HARNESS_CACHE"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/container-matrix-harness")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "container-matrix-harness"


def digest_of(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


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

    def get_or_build(self, digest: str, recipe: dict, build: Callable[[Path, Path], None]) -> tuple[Path, bool]:
        """The entry for `digest`, building it with build(tmpdir, log) if missing; returns (path, built).

        The log stays beside the cache entry when the build fails, so an error message can point at it.
        """
        final = self.path(digest)
        with _locked(self.dir / f".{digest}.lock"):
            if self.has(digest):
                return final, False
            tmp = self.dir / f".{digest}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            log = self.dir / f"{digest}.build.log"
            log.unlink(missing_ok=True)
            try:
                build(tmp, log)
                os.replace(log, tmp / "build.log")
                (tmp / "recipe.json").write_text(json.dumps(recipe, indent=1, sort_keys=True))
                (tmp / COMPLETE).write_text("")
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return final, True

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
        shutil.rmtree(self.path(digest))
