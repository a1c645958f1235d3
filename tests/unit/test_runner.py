"""The cell runner on a stub host (tests/stub_host.py): judging, retries, known issues, not
applicable, the harness's timeout against a scenario's own exit 124 or 137, the result cache."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from harness.cells.cache import ResultCache
from harness.cells.runner import CellRunner, CellSettings
from harness.cells.verdict import judge
from harness.config.kinds.vm import VmHostSpec
from harness.config.model import CellPattern, KnownIssue, Machine, ScenarioSpec
from harness.hosts.hypervisors import HypervisorLost
from harness.hosts.provider import HostError, missing_from, needs_check
from harness.results.model import MAX_OUTPUT, CellResult, DeliveryRecord, ExecRecord, Outcome, clip
from tests.stub_host import StubHost

SPEC = VmHostSpec("h1", Machine(cell_timeout=10), release="bookworm", arch="amd64", engine="podman", runtime="crun")
DELIVERY = DeliveryRecord("h1", "img", "sha256:img", True, 1.0, ["podman", "pull", "x"])


def scenario(name: str = "s", needs: tuple[str, ...] = (), timeout: float | None = None) -> ScenarioSpec:
    return ScenarioSpec(name, Path(name), Path(name) / "run", "p", timeout, needs=needs)


def run(*answers, settings: CellSettings = CellSettings(retries=0), delivery: DeliveryRecord = DELIVERY, runner: CellRunner | None = None, name: str = "s") -> CellResult:
    host = StubHost(SPEC, {name: list(answers)})
    return (runner or CellRunner()).run(host, delivery, scenario(name), settings)


def test_outcomes_of_one_run():
    assert run(0).outcome == Outcome.PASS
    failed = run(1)
    assert (failed.outcome, failed.message, failed.exit_code) == (Outcome.FAIL, "the scenario exited with 1", 1)
    assert run(127).outcome == Outcome.FAIL and run(127).message == "the scenario's command was not found in the image (exit 127)"


def test_exit_125_is_the_engines_error_with_its_message_not_the_images_failure():
    refused = ExecRecord(["podman", "run"], 125, "", "Error: crun: creating cgroup directory: Permission denied: OCI permission denied\n", 0.2)
    result = run(refused)
    assert result.outcome == Outcome.ENGINE_ERROR and result.outcome.infrastructure and not result.outcome.broken
    assert result.message == "the engine could not create or start the container (exit 125): Error: crun: creating cgroup directory: Permission denied: OCI permission denied"
    lacking = run(ExecRecord(["x"], 77, "not applicable: the image has no useradd\n", "", 0.1))
    assert (lacking.outcome, lacking.message) == (Outcome.NOT_APPLICABLE, "not applicable: the image has no useradd")


def test_only_the_harness_timeout_is_a_timeout_not_a_scenarios_own_124_or_137():
    assert run(ExecRecord(["x"], None, "", "", 10.0, timed_out=True)).outcome == Outcome.TIMEOUT
    for code in (124, 137):
        result = run(code)
        assert result.outcome == Outcome.FAIL and result.message == f"the scenario exited with {code}"


def test_the_result_is_final_and_carries_how_to_reproduce_it():
    result = run(0)
    assert result.reproduce == ["stub run img s"] and result.started_at
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.outcome = Outcome.FAIL  # type: ignore[misc]


def test_a_pass_after_a_failure_is_flaky_and_keeps_the_failed_attempt():
    result = run(1, 0, settings=CellSettings(retries=2))
    assert result.outcome == Outcome.FLAKY and [a.outcome for a in result.attempts] == [Outcome.FAIL]
    assert "failed 1 time(s)" in result.message


def test_a_steady_failure_fails_after_every_retry_and_a_pass_is_not_retried():
    assert len(run(1, settings=CellSettings(retries=2)).attempts) == 2
    assert run(0, settings=CellSettings(retries=3)).attempts == []


def test_known_issues_are_applied_once_and_the_judged_outcome_is_kept():
    known = (KnownIssue(CellPattern("h*", "img", "s"), "https://bugs.example/1", "useradd vs libselinux"),)
    failing = run(1, settings=CellSettings(retries=0, known_issues=known))
    assert (failing.outcome, failing.original_outcome, failing.bug) == (Outcome.KNOWN_ISSUE, Outcome.FAIL, "https://bugs.example/1")
    assert "useradd vs libselinux" in failing.message
    passing = run(0, settings=CellSettings(retries=0, known_issues=known))
    assert (passing.outcome, passing.original_outcome) == (Outcome.FIXED, Outcome.PASS)
    other = run(1, settings=CellSettings(retries=0, known_issues=known), name="other")
    assert other.outcome == Outcome.FAIL and other.bug == "" and other.original_outcome is None


def test_needs_are_checked_once_per_host_and_image():
    runner = CellRunner()
    host = StubHost(SPEC)
    settings = CellSettings(retries=0, needs=("missing-useradd", "sh"))
    lacking = runner.run(host, DELIVERY, scenario("a", needs=("missing-useradd",)), settings)
    assert lacking.outcome == Outcome.NOT_APPLICABLE and "missing-useradd" in lacking.message
    assert runner.run(host, DELIVERY, scenario("b", needs=("sh",)), settings).outcome == Outcome.PASS
    assert sum(line.startswith("stub needs") for line in host.log) == 1  # one container for both cells


def test_a_platform_mismatch_is_flagged_and_the_cell_still_runs():
    result = run(0, delivery=dataclasses.replace(DELIVERY, mismatch="image is linux/amd64, host is linux/arm64"))
    assert result.outcome == Outcome.PASS and result.message == "image is linux/amd64, host is linux/arm64"


def test_the_hosts_failure_is_raised_not_judged():
    with pytest.raises(HostError):
        run(HostError("host h1: guest agent gone"))
    with pytest.raises(HypervisorLost):
        run(HypervisorLost("node gone", "node"))


def test_the_cache_keeps_the_judged_verdict_and_reuse_applies_known_issues_under_the_asking_cell(tmp_path):
    runner = CellRunner(ResultCache(tmp_path))
    first = run(1, settings=CellSettings(retries=0, cache_key="k1"), runner=runner)
    assert first.outcome == Outcome.FAIL
    known = (KnownIssue(CellPattern("h2", "img", "s"), "https://bugs.example/2"),)
    cell, host, delivery = runner.reused("h2", "img", "s", CellSettings(known_issues=known, cache_key="k1"))
    assert (cell.host, cell.outcome, cell.original_outcome) == ("h2", Outcome.KNOWN_ISSUE, Outcome.FAIL)
    assert host.name == "h1" and delivery == DELIVERY
    assert runner.reused("h1", "img", "s", CellSettings(cache_key="other")) is None
    with pytest.raises(HostError):
        run(HostError("gone"), settings=CellSettings(cache_key="k2"), runner=runner)
    assert runner.reused("h1", "img", "s", CellSettings(cache_key="k2")) is None  # errors are never kept



def test_a_not_portable_image_is_kept_like_a_verdict_and_other_errors_are_not(tmp_path):
    """The host's engine refused the image as not portable to it: that says something lasting of
    the image, so a --reuse rerun takes it instead of booting the host to be refused again."""
    from harness.cells.verdict import error_result

    runner = CellRunner(ResultCache(tmp_path))
    host = StubHost(SPEC).record
    refused = dataclasses.replace(DELIVERY, ok=False, not_portable="the registry has no manifest for linux/amd64")
    cell = error_result("h1", "img", "s", "image img is not portable to h1: the registry has no manifest for linux/amd64", "2026-12-05T21:00:00+00:00", 1.0)
    runner.not_portable(cell, host, refused, CellSettings(cache_key="refused"))
    kept, _, delivery = runner.reused("h1", "img", "s", CellSettings(cache_key="refused"))
    assert kept.outcome == Outcome.ERROR and kept.message.startswith("reused from the result cache") and "not portable to h1" in kept.message
    assert delivery.not_portable == "the registry has no manifest for linux/amd64"
    timed_out = dataclasses.replace(DELIVERY, ok=False, output="dial tcp 10.0.2.2:8008: i/o timeout")
    runner.not_portable(cell, host, timed_out, CellSettings(cache_key="network"))  # not the image's: run again
    assert runner.reused("h1", "img", "s", CellSettings(cache_key="network")) is None

def test_huge_output_is_clipped_with_a_note():
    clipped = clip("x" * (MAX_OUTPUT * 3))
    assert len(clipped) < MAX_OUTPUT + 200 and "characters cut by the harness" in clipped


def test_the_needs_check_names_every_missing_command_in_a_real_shell():
    """The check a container runs (here in this machine's /bin/sh), and what the runner reads from it."""

    def check(*needs: str) -> ExecRecord:
        argv = needs_check(scenario(needs=needs))
        done = subprocess.run(argv, capture_output=True, text=True)
        return ExecRecord(argv, done.returncode, done.stdout, done.stderr, 0.0)

    assert missing_from(check("sh", "cat")) == set()
    lacking = check("sh", "no-such-command-1", "no-such-command-2")
    assert judge(lacking) == (Outcome.NOT_APPLICABLE, "not applicable: the image has no no-such-command-1 no-such-command-2")
    assert missing_from(lacking) == {"no-such-command-1", "no-such-command-2"}
    assert missing_from(ExecRecord(["podman"], 125, "", "no such image", 0.0)) is None  # the check itself failed


def test_an_oom_kill_and_a_service_that_never_started_say_so():
    oom = run(ExecRecord(["podman", "run"], 137, "", "", 1.0, oom_killed=True))
    assert (oom.outcome, oom.message) == (Outcome.FAIL, "killed: out of memory (exit 137)")
    exited = run(ExecRecord(["podman", "exec"], 125, "systemd: Failed to mount cgroup\n", "Error: can only create exec sessions on running containers\n", 1.0, container_exit=255))
    assert exited.outcome == Outcome.FAIL and exited.message.startswith("the container exited (status 255) before the scenario started")
    assert "Failed to mount cgroup" in exited.stdout  # the container's own log is the evidence


def test_the_guests_timeout_wrapper_is_told_from_a_scenarios_own_exit():
    from harness.hosts.agent import limit_reached

    assert limit_reached(124, 30.2, 30) and limit_reached(137, 40.0, 30)
    assert not limit_reached(124, 0.3, 30) and not limit_reached(137, 2.0, 30)  # exited so by itself
    assert not limit_reached(1, 40.0, 30)
