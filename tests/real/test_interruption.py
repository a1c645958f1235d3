"""Interruption, for real, on the local engine: the harness killed with SIGKILL mid-run loses no
finished cell, `--resume` runs only the rest, and the next run cleans up what the killed one left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.results import store
from tests.conftest import (
    BOOKWORM_IMAGE,
    LOCAL_PODMAN_HOST,
    add_scenario,
    needs_podman,
    project_copy,
    write_matrix,
)

pytestmark = needs_podman

MATRIX = f"""
version: 1
retries: 0
hosts:{LOCAL_PODMAN_HOST}images:{BOOKWORM_IMAGE}scenarios:
  - useradd
  - slow
"""


def harness(directory: Path, *extra: str) -> subprocess.Popen:
    # A socket of this test's own, so the service is the killed run's and not another run's.
    env = {**os.environ, "HARNESS_PODMAN_SOCKET": str(directory / "podman.sock")}
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(directory / "matrix.yaml"), "--reports", str(directory / "reports"), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=env,
    )


def recorded(results: Path) -> dict:
    """What the run has recorded: results.json with its journal (rewritten only every few seconds)."""
    return store.load(results).to_json()


def wait_for_first_cell(results: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 600
    while not (results.exists() and recorded(results)["cells"]):
        assert time.monotonic() < deadline and proc.poll() is None, "the run ended before its first cell"
        time.sleep(0.05)


def test_sigkill_keeps_finished_cells_and_resume_runs_the_rest(tmp_path):
    project_copy(tmp_path)
    add_scenario(tmp_path / "scenarios", "slow", "#!/bin/sh\nsleep 4\necho slept\n")
    write_matrix(tmp_path, MATRIX)
    results = tmp_path / "reports" / "results.json"

    first = harness(tmp_path)
    wait_for_first_cell(results, first)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed = recorded(results)
    assert list(killed["cells"]) == ["local-podman/debian-bookworm/useradd"]
    assert killed["finished_at"] == ""

    second = harness(tmp_path, "--resume")
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out
    assert "1 passed, 1 deselected" in out
    assert "stopped the podman API service" in out  # the killed run's service, found and stopped
    resumed = json.loads(results.read_text())  # the whole file rewritten at the end
    assert not store.journal_of(results).exists()
    assert sorted(resumed["cells"]) == ["local-podman/debian-bookworm/slow", "local-podman/debian-bookworm/useradd"]
    assert resumed["cells"]["local-podman/debian-bookworm/useradd"] == killed["cells"]["local-podman/debian-bookworm/useradd"]
    assert resumed["finished_at"]
    assert resumed["pairs"]["local-podman/debian-bookworm"]["status"] == "works"


def test_sigterm_tears_down_and_keeps_results(tmp_path):
    project_copy(tmp_path)
    add_scenario(tmp_path / "scenarios", "slow", "#!/bin/sh\nsleep 30\n")
    write_matrix(tmp_path, MATRIX)
    results = tmp_path / "reports" / "results.json"
    proc = harness(tmp_path)
    wait_for_first_cell(results, proc)
    time.sleep(2)  # the slow cell is running
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    kept = json.loads(results.read_text())
    assert kept["cells"]["local-podman/debian-bookworm/useradd"]["outcome"] == "pass"
    assert "Traceback" not in out
    # the podman API service this run started is gone with it
    assert not (tmp_path / "podman.sock").exists()


def test_a_damaged_cached_image_is_rebuilt(tmp_path):
    """The probe image's cached archive is corrupted on purpose: the run notices and rebuilds it."""
    from harness.cache import BuildCache, default_root
    from harness.config.model import PROBE_IMAGE
    from harness.images.build import build_image

    build, _ = build_image(PROBE_IMAGE, "amd64", "http://deb.debian.org/debian", BuildCache(default_root(), "images"))
    middle = build.archive.stat().st_size // 2
    with open(build.archive, "r+b") as fh:
        fh.seek(middle)
        fh.write(b"corrupted by a test")
        fh.flush()
        os.fsync(fh.fileno())
    project_copy(tmp_path)
    add_scenario(tmp_path / "scenarios", "slow", "#!/bin/sh\nexit 0\n")
    write_matrix(tmp_path, MATRIX)
    out, _ = harness(tmp_path).communicate(timeout=900)
    assert "is damaged (image.oci.tar): rebuilding it" in out, out
    assert "2 passed" in out
    with open(build.archive, "rb") as fh:
        fh.seek(middle)
        assert fh.read(19) != b"corrupted by a test", "the damaged archive was not rebuilt"


def test_a_build_killed_with_its_mounts_in_place_is_cleared_by_the_next(tmp_path):
    """A SIGKILLed mmdebstrap leaves /proc and /sys mounted in its half-built tree; the next build of
    the same recipe must detach them and build, not fail on a tree it cannot remove."""
    from harness.cache import BuildCache

    cache = BuildCache(tmp_path, "hosts")
    rootfs = tmp_path / "hosts" / ".abc.partial" / "rootfs"
    for name, kind in (("proc", "proc"), ("sys", "sysfs")):
        (rootfs / name).mkdir(parents=True)
        subprocess.run(["mount", "-t", kind, kind, str(rootfs / name)], check=True)
    assert str(rootfs) in Path("/proc/self/mountinfo").read_text()

    path, built = cache.get_or_build("abc", {}, lambda tmp, log: (tmp / "artifact").write_text("x"))
    assert built and (path / "artifact").read_text() == "x"
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()
