"""One host x image x scenario cell: run the scenario in the image with the host's engine, and judge it."""

from __future__ import annotations

from datetime import datetime, timezone

from harness.config.model import KnownIssue
from harness.hosts.provider import NOT_APPLICABLE
from harness.results.model import Attempt, CellResult, ExecRecord

# Output kept per stream in results: the head and the tail, which is where the evidence is.
MAX_OUTPUT = 64 * 1024


def clip(text: str, limit: int = MAX_OUTPUT) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut by the harness ...]\n{text[-half:]}"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def judge(execution: ExecRecord) -> tuple[str, str]:
    """(outcome, message) for a finished scenario run."""
    if execution.timed_out:
        return "timeout", "the scenario did not finish within its timeout"
    if execution.exit_code == 0:
        return "pass", ""
    if execution.exit_code == NOT_APPLICABLE:
        reason = (execution.stdout.strip().splitlines() or ["the scenario says it does not apply"])[-1]
        return "not-applicable", reason
    if execution.exit_code in (125, 126, 127):
        # podman's own exit codes: the container could not be created or its command not started.
        return "fail", f"the engine could not start the scenario (exit {execution.exit_code})"
    return "fail", f"the scenario exited with {execution.exit_code}"


def cell_result(host: str, image: str, scenario: str, execution: ExecRecord, started_at: str) -> CellResult:
    outcome, message = judge(execution)
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


def with_retries(first: CellResult, retry, retries: int) -> CellResult:
    """Run a failing cell again up to `retries` times: a later pass makes it flaky, not a pass."""
    result, earlier = first, []
    while result.outcome in ("fail", "timeout") and len(earlier) < retries:
        earlier.append(Attempt(result.outcome, result.exit_code, result.duration, result.stdout, result.stderr))
        result = retry()
    result.attempts = earlier
    if earlier and result.outcome == "pass":
        result.outcome = "flaky"
        result.message = f"failed {len(earlier)} time(s) ({earlier[0].outcome}, exit {earlier[0].exit_code}), then passed"
    return result


def apply_known_issues(result: CellResult, known: tuple[KnownIssue, ...]) -> CellResult:
    """A listed bug turns its failure into "known-issue", and its pass into a loud "fixed?"."""
    for issue in known:
        if issue.pattern.matches(result.host, result.image, result.scenario):
            result.bug = issue.bug
            if result.outcome in ("fail", "timeout"):
                result.message = f"known issue {issue.bug}: {issue.note or result.message}"
                result.outcome = "known-issue"
            elif result.outcome in ("pass", "flaky"):
                result.message = f"listed as known issue {issue.bug}, but it passes now: fixed?"
                result.outcome = "fixed?"
            break
    return result


def error_result(host: str, image: str, scenario: str, message: str, started_at: str, duration: float) -> CellResult:
    """A cell that could not be judged because the harness or the host failed, not the image."""
    return CellResult(host, image, scenario, "error", round(duration, 3), message=message, started_at=started_at)
