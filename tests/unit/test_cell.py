"""Judging a cell from what its scenario did."""

from __future__ import annotations

from harness.cell import MAX_OUTPUT, cell_result, clip, judge
from harness.results.model import ExecRecord


def run(code, timed_out=False) -> ExecRecord:
    return ExecRecord(["podman", "run"], code, "out", "err", 1.0, timed_out)


def test_outcomes():
    assert judge(run(0))[0] == "pass"
    assert judge(run(1)) == ("fail", "the scenario exited with 1")
    assert judge(run(125))[0] == "fail" and "engine" in judge(run(125))[1]
    assert judge(run(124, timed_out=True))[0] == "timeout"


def test_huge_output_is_clipped_with_a_note():
    text = "x" * (MAX_OUTPUT * 3)
    clipped = clip(text)
    assert len(clipped) < MAX_OUTPUT + 200
    assert "characters cut by the harness" in clipped


def test_cell_result_keeps_the_command():
    result = cell_result("h", "i", "s", run(0), "t")
    assert result.command == ["podman", "run"] and result.outcome == "pass" and result.stdout == "out"
