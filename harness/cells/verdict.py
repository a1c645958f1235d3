"""How a cell is judged: an execution's outcome, retries that reveal a flake, known issues.

Pure functions over results: nothing here runs anything (that is runner.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from harness.config.model import KnownIssue
from harness.hosts.provider import ENGINE_FAILED, NOT_APPLICABLE
from harness.results.model import Attempt, CellResult, ExecRecord, Outcome, clip



def stdout_differs(expected: str, stdout: str) -> str:
    """'' when a test printed what its expected-std-out.txt says (carriage returns dropped, as
    official-images' driver does), else where it first differs."""
    got, want = stdout.replace("\r", "").splitlines(), expected.replace("\r", "").splitlines()
    if got == want:
        return ""
    line = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
    said = lambda lines: repr(lines[line]) if line < len(lines) else "nothing more"  # noqa: E731
    return f"its stdout differs from expected-std-out.txt at line {line + 1}: expected {said(want)}, got {said(got)}"


def judge(execution: ExecRecord, expected_stdout: str | None = None) -> tuple[Outcome, str]:
    """(outcome, message) for a finished scenario run; a test with an expected stdout passes only
    when it printed exactly that."""
    if execution.timed_out:
        return Outcome.TIMEOUT, "the scenario did not finish within its timeout"
    if execution.container_exit is not None:
        return Outcome.FAIL, f"the container exited (status {execution.container_exit}) before the scenario started; its own log is the output"
    if execution.oom_killed:
        return Outcome.FAIL, f"killed: out of memory (exit {execution.exit_code})"
    if execution.exit_code == 0:
        differs = stdout_differs(expected_stdout, execution.stdout) if expected_stdout is not None else ""
        return (Outcome.FAIL, differs) if differs else (Outcome.PASS, "")
    if execution.exit_code == NOT_APPLICABLE:
        reason = (execution.stdout.strip().splitlines() or ["the scenario says it does not apply"])[-1]
        return Outcome.NOT_APPLICABLE, reason
    if execution.exit_code == ENGINE_FAILED:
        # The engine's own: the container could not be created or started. Not the image's doing.
        said = (execution.stderr.strip() or execution.stdout.strip()).splitlines()
        return Outcome.ENGINE_ERROR, f"the engine could not create or start the container (exit 125){': ' + said[-1] if said else ''}"
    if execution.exit_code in (126, 127):
        # The engine's exit codes for the image's side: the command cannot be invoked, or is missing.
        what = "cannot be invoked" if execution.exit_code == 126 else "was not found in the image"
        return Outcome.FAIL, f"the scenario's command {what} (exit {execution.exit_code})"
    return Outcome.FAIL, f"the scenario exited with {execution.exit_code}"


def cell_result(host: str, image: str, scenario: str, execution: ExecRecord, started_at: str, expected_stdout: str | None = None) -> CellResult:
    outcome, message = judge(execution, expected_stdout)
    return CellResult(
        host=host,
        image=image,
        scenario=scenario,
        outcome=outcome,
        duration=round(execution.duration, 3),
        message=message,
        command=execution.argv,
        exit_code=execution.exit_code,
        stdout=clip(execution.stdout),
        stderr=clip(execution.stderr),
        started_at=started_at,
    )


def with_retries(first: CellResult, retry: Callable[[], CellResult], retries: int) -> CellResult:
    """Run a failing cell again up to `retries` times: a later pass makes it flaky, not a pass."""
    result, earlier = first, []
    while result.outcome.broken and len(earlier) < retries:
        earlier.append(Attempt(result.outcome, result.exit_code, result.duration, result.stdout, result.stderr))
        result = retry()
    if earlier and result.outcome == Outcome.PASS:
        message = f"failed {len(earlier)} time(s) ({earlier[0].outcome}, exit {earlier[0].exit_code}), then passed"
        return replace(result, outcome=Outcome.FLAKY, message=message, attempts=earlier)
    return replace(result, attempts=earlier)


def apply_known_issues(result: CellResult, known: tuple[KnownIssue, ...]) -> CellResult:
    """A listed bug turns its failure into "known-issue", and its pass into a loud "fixed?"; the
    outcome as judged is kept beside the new one."""
    for issue in known:
        if not issue.pattern.matches(result.host, result.image, result.scenario):
            continue
        if result.outcome.broken:
            return replace(result, outcome=Outcome.KNOWN_ISSUE, original_outcome=result.outcome, bug=issue.bug, message=f"known issue {issue.bug}: {issue.note or result.message}")
        if result.outcome.passed:
            return replace(result, outcome=Outcome.FIXED, original_outcome=result.outcome, bug=issue.bug, message=f"listed as known issue {issue.bug}, but it passes now: fixed?")
        return replace(result, bug=issue.bug)
    return result


def error_result(host: str, image: str, scenario: str, message: str, started_at: str, duration: float) -> CellResult:
    """A cell that could not be judged because the harness or the host failed, not the image."""
    return CellResult(host, image, scenario, Outcome.ERROR, round(duration, 3), message=message, started_at=started_at)
