"""Judging a cell: outcomes, not applicable, retries and flakes, known issues."""

from __future__ import annotations

from harness.cell import (
    MAX_OUTPUT,
    apply_known_issues,
    cell_result,
    clip,
    judge,
    with_retries,
)
from harness.config.model import CellPattern, KnownIssue
from harness.results.model import CellResult, ExecRecord


def run(code, timed_out=False, stdout="out") -> ExecRecord:
    return ExecRecord(["podman", "run"], code, stdout, "err", 1.0, timed_out)


def test_outcomes():
    assert judge(run(0))[0] == "pass"
    assert judge(run(1)) == ("fail", "the scenario exited with 1")
    assert judge(run(125))[0] == "fail" and "engine" in judge(run(125))[1]
    assert judge(run(124, timed_out=True))[0] == "timeout"
    assert judge(run(77, stdout="not applicable: the image has no useradd\n")) == ("not-applicable", "not applicable: the image has no useradd")


def test_huge_output_is_clipped_with_a_note():
    clipped = clip("x" * (MAX_OUTPUT * 3))
    assert len(clipped) < MAX_OUTPUT + 200
    assert "characters cut by the harness" in clipped


def test_cell_result_keeps_the_command():
    result = cell_result("h", "i", "s", run(0), "t")
    assert result.command == ["podman", "run"] and result.outcome == "pass" and result.stdout == "out"


def sequence(*codes):
    codes = list(codes)
    return lambda: cell_result("h", "i", "s", run(codes.pop(0)), "t")


def test_a_pass_after_a_failure_is_flaky_and_keeps_both_attempts():
    attempts = sequence(1, 0)
    result = with_retries(attempts(), attempts, retries=2)
    assert result.outcome == "flaky"
    assert [a.outcome for a in result.attempts] == ["fail"]
    assert "failed 1 time(s)" in result.message


def test_a_steady_failure_is_a_failure_after_all_retries():
    attempts = sequence(1, 1, 1)
    result = with_retries(attempts(), attempts, retries=2)
    assert result.outcome == "fail" and len(result.attempts) == 2


def test_no_retry_of_a_pass_or_without_retries():
    attempts = sequence(0)
    assert with_retries(attempts(), attempts, retries=3).attempts == []
    attempts = sequence(1)
    assert with_retries(attempts(), attempts, retries=0).outcome == "fail"


def test_known_issue_and_fixed():
    known = (KnownIssue(CellPattern("h*", "i", "s"), "https://bugs.example/1", "useradd vs libselinux"),)
    failing = apply_known_issues(CellResult("h1", "i", "s", "fail", 1), known)
    assert failing.outcome == "known-issue" and failing.bug == "https://bugs.example/1"
    assert "useradd vs libselinux" in failing.message
    passing = apply_known_issues(CellResult("h1", "i", "s", "pass", 1), known)
    assert passing.outcome == "fixed?"
    other = apply_known_issues(CellResult("x", "i", "s", "fail", 1), known)
    assert other.outcome == "fail" and other.bug == ""


def test_the_needs_check_names_every_missing_command_in_a_real_shell():
    """The check a container runs (here in this machine's /bin/sh), and what the session reads from it."""
    import subprocess
    from pathlib import Path

    from harness.config.model import ScenarioSpec
    from harness.hosts.provider import missing_from, needs_check

    def check(*needs: str) -> ExecRecord:
        argv = needs_check(ScenarioSpec("s", Path("s"), Path("s/run"), "p", None, needs=needs))
        done = subprocess.run(argv, capture_output=True, text=True)
        return ExecRecord(argv, done.returncode, done.stdout, done.stderr, 0.0)

    assert missing_from(check("sh", "cat")) == set()
    lacking = check("sh", "no-such-command-1", "no-such-command-2")
    assert judge(lacking) == ("not-applicable", "not applicable: the image has no no-such-command-1 no-such-command-2")
    assert missing_from(lacking) == {"no-such-command-1", "no-such-command-2"}
    assert missing_from(ExecRecord(["podman"], 125, "", "no such image", 0.0)) is None  # the check itself failed
