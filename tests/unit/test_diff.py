"""harness diff: pairs whose class changed between two runs, regressions first."""

from __future__ import annotations

import subprocess
import sys

from harness.report.diff import as_text, changes, render_diff
from harness.results import store
from harness.results.model import PairClass, PairResult, RunResults


def run(run_id: str, **classes: str) -> RunResults:
    results = RunResults(run_id=run_id, matrix="m", started_at="t", harness_version="0")
    for key, klass in classes.items():
        host, image = key.split("__")
        results.pairs[f"{host}/{image}"] = PairResult(host, image, klass.startswith("supported"), "", "works", PairClass(klass))
    return results


def test_changes_in_order():
    old = run("a", h1__i1="supported-pass", h1__i2="unsupported-broken", h2__i1="supported-pass", h3__i1="error")
    new = run("b", h1__i1="supported-fail", h1__i2="unsupported-works", h2__i1="supported-pass", h4__i1="supported-pass")
    found = changes(old, new)
    assert [(c.pair, c.kind) for c in found] == [("h1/i1", "regression"), ("h1/i2", "improvement"), ("h4/i1", "added"), ("h3/i1", "removed")]
    assert "regression        h1/i1: supported, passing -> supported, FAILING" in as_text(found)
    assert as_text(changes(old, old)) == "no pair changed class"


def test_cli_exits_1_on_regression_and_renders_a_page(tmp_path):
    store.save(run("a", h1__i1="supported-pass"), tmp_path / "old.json")
    store.save(run("b", h1__i1="supported-fail"), tmp_path / "new.json")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "diff", str(tmp_path / "old.json"), str(tmp_path / "new.json")], capture_output=True, text=True)
    assert proc.returncode == 1 and "regression" in proc.stdout
    page = (tmp_path / "diff.html").read_text()
    assert 'data-kind="regression"' in page and "h1/i1" in page
    render_diff(run("a"), run("b"), tmp_path / "same.html")
    assert "No host x image pair changed class" in (tmp_path / "same.html").read_text()


def test_every_transition_of_the_readmes_table():
    """The README's table, row by row; only regressions make the exit code 1."""
    rows = [
        ("supported-pass", "supported-fail", "regression"),
        ("supported-pass", "error", "regression"),
        ("supported-pass", "not-portable", "regression"),
        ("supported-pass", "supported-known-issues", "regression"),
        ("supported-pass", "pending", "not run this time"),  # left out of this run (-k)
        ("supported-fail", "pending", "not run this time"),
        ("supported-fail", "error", "changed"),  # an error says nothing of the image: not better
        ("supported-pass", "supported-flaky", "changed"),
        ("supported-fail", "supported-pass", "improvement"),
        ("error", "supported-pass", "improvement"),
        ("unsupported-broken", "unsupported-works", "improvement"),
        ("pending", "supported-pass", "changed"),  # first seen: nothing was there to improve on
        ("not-tested", "supported-pass", "improvement"),
        ("unsupported-works", "unsupported-broken", "changed"),
    ]
    for old, new, kind in rows:
        found = changes(run("a", h__i=old), run("b", h__i=new))
        assert [c.kind for c in found] == [kind], (old, new)


def test_a_pair_left_out_of_this_run_is_not_a_regression_on_the_command_line(tmp_path):
    store.save(run("a", h1__i1="supported-pass"), tmp_path / "old.json")
    store.save(run("b", h1__i1="pending"), tmp_path / "new.json")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "diff", str(tmp_path / "old.json"), str(tmp_path / "new.json")], capture_output=True, text=True)
    assert proc.returncode == 0 and "not run this time h1/i1: supported, passing -> not run" in proc.stdout


def test_a_regression_carries_its_blame_verdict():
    from harness.results.model import Layer, Verdict

    new = run("b", h1__i1="supported-fail")
    new.verdicts["h1/i1/useradd"] = Verdict(Layer.LSM, "LSM: passes with label=disable", ["h1/i1/useradd"], confirmed=True)
    text = as_text(changes(run("a", h1__i1="supported-pass"), new), new)
    assert text == "regression        h1/i1: supported, passing -> supported, FAILING (why: LSM: passes with label=disable)"
