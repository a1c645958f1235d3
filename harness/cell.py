"""One host x image x scenario cell: run the scenario in the image with the host's engine, and judge it."""

from __future__ import annotations

from datetime import datetime, timezone

from harness.results.model import CellResult, ExecRecord

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


def error_result(host: str, image: str, scenario: str, message: str, started_at: str, duration: float) -> CellResult:
    """A cell that could not be judged because the harness or the host failed, not the image."""
    return CellResult(host, image, scenario, "error", round(duration, 3), message=message, started_at=started_at)
