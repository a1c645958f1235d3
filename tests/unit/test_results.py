"""results.json: plain dataclasses, versioned, written atomically."""

from __future__ import annotations

import json
import os
import stat

import pytest

from harness.results import store
from harness.results.model import (
    SCHEMA_VERSION,
    Attempt,
    CellResult,
    DeliveryRecord,
    HostFacts,
    HostRecord,
    Freshness,
    ImageBuildRecord,
    ImageRecord,
    Outcome,
    PairClass,
    PairResult,
    RunResults,
)


def sample() -> RunResults:
    results = RunResults(run_id="r1", matrix="/m/matrix.yaml", started_at="2026-01-01T00:00:00+00:00", harness_version="0", images={"img": ImageRecord("img", "bookworm", ["passwd"])})
    fresh = Freshness("C", 3, 96, "http://deb.debian.org/debian-security bookworm-security", "2026-01-02T00:00:00+00:00", ["libc6 1 -> 2"])
    build = ImageBuildRecord("amd64", "linux/amd64", "sha256:c", "sha256:m", 100, 2, "2026-01-01T00:00:00+00:00", "12.15", "2.36-9", 96, "d", {"k": "v"}, fresh)
    results.images["img"].builds["amd64"] = build
    results.hosts["h1"] = HostRecord("h1", "bookworm", "amd64", "podman", "crun", facts=HostFacts(kernel="6.1.0", cpus=2, raw={"kernel": "6.1.0", "cpus": "2"}), boot_seconds=3.5)
    results.deliveries["h1/img"] = DeliveryRecord("h1", "img", "sha256:abc", True, 1.5, ["podman", "load"])
    cell = CellResult("h1", "img", "useradd", Outcome.FLAKY, 1.25, command=["podman", "run"], exit_code=0, stdout="ok\n", attempts=[Attempt(Outcome.FAIL, 1, 1.0, "", "boom")])
    results.cells[cell.key] = cell
    results.pairs["h1/img"] = PairResult("h1", "img", True, "policy", "works", PairClass.SUPPORTED_PASS)
    return results


def test_round_trip(tmp_path):
    path = tmp_path / "results.json"
    store.save(sample(), path)
    loaded = store.load(path)
    assert loaded == sample()
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION


def test_cell_key():
    assert CellResult("h", "i", "s", "pass", 0).key == "h/i/s"


def test_save_leaves_no_temporary_files(tmp_path):
    for _ in range(3):
        store.save(sample(), tmp_path / "results.json")
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_unknown_schema_version_is_refused(tmp_path):
    path = tmp_path / "results.json"
    data = sample().to_json()
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(store.ResultsError, match="schema_version 99"):
        store.load(path)


def test_a_run_is_live_while_any_of_its_processes_is(tmp_path):
    """The controller and each xdist worker claim the run; another run's cleanup spares it until all are gone."""
    from harness.runs import OWNERS, claim, live_runs, release

    run = tmp_path / "runs" / "r1"
    claim(run)
    (run / OWNERS / "999999999").touch()  # a worker that has exited
    assert live_runs(tmp_path / "runs") == {"r1"}
    release(run)
    assert live_runs(tmp_path / "runs") == set()


def test_results_json_matches_its_schema(tmp_path):
    import jsonschema

    from harness.results.schema import results_schema

    store.save(sample(), tmp_path / "results.json")
    jsonschema.validate(json.loads((tmp_path / "results.json").read_text()), results_schema())


def test_the_schemas_value_lists_are_the_enums(tmp_path):
    """Each enum is defined once: the schema's lists come from it, and a value outside it is refused on load."""
    from harness.config.model import DeliveryMethod, HostKind
    from harness.results.schema import results_schema

    defs = results_schema()["$defs"]
    assert defs["outcome"]["enum"] == [o.value for o in Outcome]
    assert defs["pair_class"]["enum"] == [c.value for c in PairClass]
    assert defs["host_kind"]["enum"] == ["vm", "disk", "engine"] == [k.value for k in HostKind]
    assert defs["delivery_method"]["enum"] == [m.value for m in DeliveryMethod]
    data = sample().to_json()
    data["cells"]["h1/img/useradd"]["outcome"] = "passed-ish"
    (tmp_path / "results.json").write_text(json.dumps(data))
    with pytest.raises(store.ResultsError, match="cells/h1/img/useradd/outcome: 'passed-ish' is not one of"):
        store.load(tmp_path / "results.json")


def test_a_truncated_results_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "results.json"
    store.save(sample(), path)
    path.write_text(path.read_text()[:200])
    with pytest.raises(store.ResultsError) as caught:
        store.load(path)
    assert str(caught.value).startswith(f"{path}: not JSON") and "\n" not in str(caught.value)


def test_an_images_grade_is_its_worst_builds():
    image = sample().images["img"]
    assert image.grade == "C"
    image.builds["arm64"] = ImageBuildRecord("arm64", "linux/arm64", "", "", 0, 1, "", "", "", 0, "", freshness=Freshness("F", 11, 96, "", ""))
    assert image.grade == "F"


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda text: text[: len(text) // 2], "not JSON"),
        (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "cells"}), "(top): 'cells' is a required property"),
        (lambda text: "not json at all", "not JSON"),
        (lambda text: "[1, 2]", "not a results file of schema version"),
    ],
)
@pytest.mark.parametrize("command", ["report", "diff-old", "diff-new"])
def test_a_damaged_results_file_is_one_line_naming_it_and_exit_2(tmp_path, damage, said, command):
    import subprocess
    import sys

    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    store.save(sample(), good)
    bad.write_text(damage(good.read_text()))
    args = {"report": ["report", str(bad)], "diff-old": ["diff", str(bad), str(good)], "diff-new": ["diff", str(good), str(bad)]}[command]
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and str(bad) in proc.stderr and said in proc.stderr and "Traceback" not in proc.stderr


def test_results_and_the_report_are_readable_as_any_file_the_user_writes(tmp_path):
    """Published reports are served by a web server's own user: an atomic write must not leave the
    temporary file's 0600 behind, but the mode the user's umask gives any new file."""
    from harness.results.store import write_atomically

    umask = os.umask(0o022)
    try:
        write_atomically(tmp_path / "matrix.html", "<html></html>")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "matrix.html").stat().st_mode) == 0o644


def _written_with_a_change(tmp_path):
    """results.json as a run rewrote it, then one more finished cell, recorded in the journal only."""
    from dataclasses import replace

    results, path = sample(), tmp_path / "results.json"
    writer = store.ResultsWriter(path, results, every=3600)
    writer.save()
    cell = replace(results.cells["h1/img/useradd"], scenario="groupadd", outcome=Outcome.FAIL)
    results.cells[cell.key] = cell
    writer.change(cells={cell.key: cell})
    return path, cell


def test_a_cell_recorded_between_two_rewrites_is_read_back_from_the_journal(tmp_path):
    """The file is rewritten every few seconds, not after every cell: a run killed in between loses
    no finished cell, as what reads results (--resume, report, diff) applies the journal."""
    path, cell = _written_with_a_change(tmp_path)
    assert cell.key not in json.loads(path.read_text())["cells"]
    assert store.load(path).cells[cell.key] == cell
    assert store.load(path).cells["h1/img/useradd"] == sample().cells["h1/img/useradd"]


def test_a_rewrite_takes_the_journal_in(tmp_path):
    path, cell = _written_with_a_change(tmp_path)
    writer = store.ResultsWriter(path, store.load(path))
    writer.save()
    assert not store.journal_of(path).exists()
    assert json.loads(path.read_text())["cells"][cell.key]["outcome"] == "fail"


def test_a_journal_line_cut_short_is_a_change_never_finished(tmp_path):
    path, cell = _written_with_a_change(tmp_path)
    with open(store.journal_of(path), "a") as fh:
        fh.write('{"run_id": "r1", "cells": {"h1/img/x": {"host"')  # killed mid-write
    assert set(store.load(path).cells) == {"h1/img/useradd", cell.key}


def test_a_damaged_journal_is_named(tmp_path):
    path, _ = _written_with_a_change(tmp_path)
    journal = store.journal_of(path)
    journal.write_text("garbage\n" + journal.read_text())
    with pytest.raises(store.ResultsError, match=r"results.journal.jsonl: line 1 is not JSON"):
        store.load(path)


def test_another_runs_journal_is_not_applied(tmp_path):
    path, cell = _written_with_a_change(tmp_path)
    data = json.loads(path.read_text())
    data["run_id"] = "r2"  # results.json replaced by another run's
    path.write_text(json.dumps(data))
    assert cell.key not in store.load(path).cells
