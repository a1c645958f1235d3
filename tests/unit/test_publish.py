"""The published support statement: tiers as vendors word them, known issues as footnotes, columns
grouped by release and architecture, CSV and JSON beside it; refused while a supported pair fails."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

from harness.config.model import CellPattern, Policy
from harness.report.publish import Tier, blockers, statement
from harness.results import store
from harness.results.model import CellResult, HostRecord, ImageRecord, RunResults
from harness.supportability import classify


def results(**outcomes: list[str]) -> RunResults:
    """Hosts bookworm/trixie on amd64/arm64; images debian-bookworm (supported on both releases) and
    debian-bullseye (on bookworm only); outcomes by "host__image"."""
    run = RunResults(run_id="r7", matrix="m", started_at="2026-12-01T00:00:00+00:00", harness_version="0", finished_at="2026-12-01T01:00:00+00:00")
    for release in ("trixie", "bookworm"):
        for arch in ("arm64", "amd64"):
            run.hosts[f"{release}-{arch}"] = HostRecord(f"{release}-{arch}", release, arch, "podman", "crun")
    run.images = {"debian-bookworm": ImageRecord("debian-bookworm", "bookworm"), "debian-bullseye": ImageRecord("debian-bullseye", "bullseye")}
    policy = Policy(include=(CellPattern("nothing", "nothing"),))
    for host in run.hosts.values():
        for image in run.images.values():
            cells = []
            for i, outcome in enumerate(outcomes.get(f"{host.name}__{image.name}".replace("-", "_"), ["pass"])):
                bug = "https://bugs.example/42" if outcome == "known-issue" else ""
                message = "known issue https://bugs.example/42: useradd vs libselinux" if bug else ""
                cells.append(CellResult(host.name, image.name, f"s{i}", outcome, 1.0, message=message, bug=bug))
            for cell in cells:
                run.cells[cell.key] = cell
            run.pairs[f"{host.name}/{image.name}"] = classify(policy, host, image, cells, None)
    return run


def test_tiers_footnotes_and_column_groups():
    found = statement(results(trixie_amd64__debian_bookworm=["pass", "known-issue"], trixie_arm64__debian_bullseye=["fail"]))
    assert found.hosts == ("bookworm-amd64", "bookworm-arm64", "trixie-amd64", "trixie-arm64")  # by release, then architecture
    assert found.entry("debian-bookworm", "bookworm-amd64").tier == Tier.SUPPORTED
    known = found.entry("debian-bookworm", "trixie-amd64")
    assert known.tier == Tier.KNOWN_ISSUES and known.footnotes == (1,)
    assert found.footnotes[0].bug == "https://bugs.example/42" and found.footnotes[0].note == "useradd vs libselinux"
    assert found.entry("debian-bullseye", "bookworm-amd64").tier == Tier.SUPPORTED
    assert found.entry("debian-bullseye", "trixie-amd64").tier == Tier.WORKS
    assert found.entry("debian-bullseye", "trixie-arm64").tier == Tier.NOT_SUPPORTED


def test_a_failing_supported_pair_stops_the_publication_and_is_named(tmp_path):
    failing = results(bookworm_arm64__debian_bookworm=["pass", "fail"], trixie_amd64__debian_bookworm=["not-applicable"])
    assert blockers(failing) == [
        "bookworm-arm64/debian-bookworm: supported, but it fails",
        "trixie-amd64/debian-bookworm: supported, but it was not tested (no scenario applied to the image)",
    ]
    store.save(failing, tmp_path / "results.json")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "publish", str(tmp_path / "results.json")], capture_output=True, text=True)
    assert proc.returncode == 1 and "bookworm-arm64/debian-bookworm: supported, but it fails" in proc.stderr
    assert not (tmp_path / "support.html").exists()


def test_published_as_html_csv_and_json(tmp_path):
    store.save(results(trixie_amd64__debian_bookworm=["pass", "known-issue"]), tmp_path / "results.json")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "publish", str(tmp_path / "results.json")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "support.csv").read_text())))
    assert {"image": "debian-bookworm", "host": "trixie-amd64", "release": "trixie", "arch": "amd64", "engine": "podman",
            "tier": "supported with known issues", "known issues": "https://bugs.example/42"} in rows
    data = json.loads((tmp_path / "support.json").read_text())
    assert data["run_id"] == "r7" and data["footnotes"][0]["bug"] == "https://bugs.example/42"
    html = (tmp_path / "support.html").read_text()
    assert 'colspan="2" class="release">bookworm' in html and "Tested in run r7, 2026-12-01T00:00:00+00:00 to 2026-12-01T01:00:00+00:00" in html
    assert 'href="#note-1"' in html and "FAILING" not in html


def test_a_known_issues_footnote_quotes_its_blame_verdict():
    from harness.results.model import Layer, Verdict

    run = results(trixie_amd64__debian_bookworm=["pass", "known-issue"])
    run.verdicts["trixie-amd64/debian-bookworm/s1"] = Verdict(Layer.LSM, "LSM: passes with label=disable", ["trixie-amd64/debian-bookworm/s1"], confirmed=True)
    assert statement(run).footnotes[0].note == "useradd vs libselinux (which layer: LSM: passes with label=disable, confirmed)"
