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
    assert [(c.pair, c.kind) for c in found] == [("h1/i1", "regression"), ("h1/i2", "improvement"), ("h3/i1", "removed"), ("h4/i1", "added")]
    assert "regression   h1/i1: supported, passing -> supported, FAILING" in as_text(found)
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
