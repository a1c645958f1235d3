"""Blame along time: each pair's first bad run, and what changed since its last good one."""

from __future__ import annotations

import subprocess
import sys

from harness.config.model import Policy
from harness.report.history import changes, since_last_good, timeline
from harness.results import store
from harness.results.model import CellResult, HostFacts, HostRecord, ImageBuildRecord, ImageRecord, RunResults
from harness.supportability import classify


def night(run_id: str, started: str, outcome: str, kernel: str, manifest: str) -> RunResults:
    run = RunResults(run_id, "m", started, "0.1.0", finished_at=started)
    run.hosts["h"] = HostRecord("h", "bookworm", "amd64", "podman", "crun", facts=HostFacts(kernel=kernel, raw={"libseccomp": "2.5.4"}))
    image = ImageRecord("img", "bookworm")
    image.builds["amd64"] = ImageBuildRecord("amd64", "linux/amd64", "sha256:c", manifest, 1, 1, "", "12.1", "2.36", 90, "")
    run.images["img"] = image
    cell = CellResult("h", "img", "useradd", outcome, 1.0, command=["podman", "run", "x"])
    run.cells[cell.key] = cell
    run.pairs["h/img"] = classify(Policy(), run.hosts["h"], image, [cell], None)
    return run


def test_the_first_bad_run_and_what_changed_since_the_last_good_one(tmp_path):
    runs = [
        night("n1", "2026-11-28T00:00:00+00:00", "pass", "6.1.0-40", "sha256:" + "a" * 64),
        night("n2", "2026-11-29T00:00:00+00:00", "pass", "6.1.0-40", "sha256:" + "a" * 64),
        night("n3", "2026-11-30T00:00:00+00:00", "fail", "6.1.0-41", "sha256:" + "b" * 64),
    ]
    found = timeline(runs)
    run_id, changed = found.first_bad["h/img"]
    assert run_id == "n3"
    assert changed[0].startswith("image img for amd64: manifest sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb")
    assert "host h kernel: 6.1.0-40 -> 6.1.0-41" in changed
    assert since_last_good(runs[:2], runs[2])["h/img"][0] == "good in run n2 (2026-11-29T00:00:00+00:00)"
    assert changes(runs[0], runs[1], "h/img") == ["nothing the results record (the same image, host facts and harness): look at the run's own evidence"]
    for run in runs:
        store.save(run, tmp_path / run.run_id / "results.json")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "history", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0 and "h/img: first bad in run n3: image img for amd64" in proc.stdout
    page = (tmp_path / "history.html").read_text()
    assert 'class="supported-fail first-bad"' in page and "host h kernel: 6.1.0-40 -&gt; 6.1.0-41" in page
