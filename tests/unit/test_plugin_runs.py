"""The pytest plugin's run paths through pytester, on stub hosts (tests/stub_host.py): a run
recorded in results.json and JUnit, --resume keeping finished cells and running the errors again,
and --reuse taking unchanged cells from the result cache without starting any host."""

from __future__ import annotations

import json

import pytest

from harness.config.model import HostKind
from harness.hosts.provider import HostError
from harness.mmdebstrap import BuildError
from harness.plugin.options import PARTS_KEY
from harness.session import Parts
from tests.conftest import add_scenario, write_matrix
from harness.results.model import ExecRecord
from tests.stub_host import StubKind, stub_build

pytest_plugins = ["pytester"]

MATRIX = """
version: 1
retries: 0
delivery: archive
hypervisors: [{uri: "test:///default"}]
hosts:
  - {name: h1, release: bookworm, arch: amd64, engine: podman}
  - {name: h2, release: trixie, arch: amd64, engine: podman}
images:
  - {name: img, release: bookworm}
scenarios: [ok, ok-fails]
"""


class Stubs:
    """A plugin giving the run stub hosts and builds, as bench/stub_provider.py does."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[PARTS_KEY] = Parts(drivers={HostKind.VM: StubKind}, build_image=stub_build)


@pytest.fixture
def matrix(tmp_path, repo_root):
    (tmp_path / "vms").symlink_to(repo_root / "vms")
    for name in ("ok", "ok-fails"):
        add_scenario(tmp_path / "scenarios", name, "#!/bin/sh\nexit 0\n")
    StubKind.hosts, StubKind.script, StubKind.before = [], {}, staticmethod(lambda _name: None)
    return write_matrix(tmp_path, MATRIX)


def invoke(pytester: pytest.Pytester, matrix, reports, *args: str) -> pytest.RunResult:
    """The plugin on `matrix`, in this process, with stub hosts; the cache beside the matrix."""
    return pytester.runpytest_inprocess(str(matrix), f"--reports={reports}", f"--cache-dir={matrix.parent / 'cache'}", "--progress=quiet", "-p", "no:cacheprovider", *args, plugins=[Stubs()])


def run(pytester: pytest.Pytester, matrix, reports, *args: str) -> tuple[pytest.RunResult, dict]:
    result = invoke(pytester, matrix, reports, f"--junitxml={reports / 'junit.xml'}", *args)
    return result, json.loads((reports / "results.json").read_text())


def test_a_run_records_every_cell_and_its_verdict(pytester, matrix, tmp_path):
    result, data = run(pytester, matrix, tmp_path / "reports")
    result.assert_outcomes(passed=2, failed=2)
    assert {k: c["outcome"] for k, c in data["cells"].items()} == {
        "h1/img/ok": "pass", "h1/img/ok-fails": "fail", "h2/img/ok": "pass", "h2/img/ok-fails": "fail",
    }
    assert data["hosts"]["h1"]["health"] == "ok" and data["hosts"]["h1"]["facts"]["kernel"] == "stub"
    assert data["deliveries"]["h1/img"]["method"] == "load"
    assert data["pairs"]["h1/img"]["klass"] == "supported-fail"
    assert (tmp_path / "reports" / "matrix.html").exists() and 'name="h1/img/ok-fails"' not in ""  # rendered
    assert (tmp_path / "reports" / "junit.xml").read_text().count("<testcase") == 4


def test_resume_keeps_finished_cells_and_runs_the_errors_again(pytester, matrix, tmp_path):
    def broken(name):
        if name == "h2":
            raise HostError("host h2 did not become ready: stub")

    StubKind.before = staticmethod(broken)
    result, first = run(pytester, matrix, tmp_path / "reports")
    assert {c["outcome"] for k, c in first["cells"].items() if k.startswith("h2/")} == {"error"}
    assert "did not become ready" in first["hosts"]["h2"]["error"]
    result.assert_outcomes(passed=1, failed=1, errors=2)

    StubKind.hosts, StubKind.before = [], staticmethod(lambda _name: None)
    result, second = run(pytester, matrix, tmp_path / "reports", "--resume", "--no-blame")
    assert [h.name for h in StubKind.hosts] == ["h2"]  # h1's cells were kept: it was not started again
    result.assert_outcomes(passed=1, failed=1)
    assert second["cells"]["h1/img/ok"] == first["cells"]["h1/img/ok"]
    assert second["cells"]["h2/img/ok"]["outcome"] == "pass" and not second["hosts"]["h2"]["error"]


def test_a_harness_error_in_a_cell_is_recorded_as_the_harnesss_own_not_lost(pytester, matrix, tmp_path):
    """A bug in the harness (here a KeyError while a host starts) is that cell's error, said to be the
    harness's: the cell is in results.json like every other, not only in pytest's output."""
    def crash(name):
        if name == "h2":
            raise KeyError(("img", "amd64"))

    StubKind.before = staticmethod(crash)
    result, data = run(pytester, matrix, tmp_path / "reports")
    result.assert_outcomes(passed=1, failed=1, errors=2)
    assert sorted(data["cells"]) == ["h1/img/ok", "h1/img/ok-fails", "h2/img/ok", "h2/img/ok-fails"]
    cell = data["cells"]["h2/img/ok"]
    assert cell["outcome"] == "error" and cell["message"].startswith("harness error: KeyError: ('img', 'amd64')"), cell["message"]
    assert "not the image's" in cell["message"]


def test_reuse_takes_unchanged_cells_from_the_cache_and_starts_no_host(pytester, matrix, tmp_path):
    run(pytester, matrix, tmp_path / "first")
    StubKind.hosts = []
    result, again = run(pytester, matrix, tmp_path / "second", "--reuse")
    assert StubKind.hosts == []
    result.assert_outcomes(passed=2, failed=2)
    assert all(c["message"].startswith("reused from the result cache") for c in again["cells"].values())
    assert {k: c["host"] for k, c in again["cells"].items()} == {k: k.split("/")[0] for k in again["cells"]}
    assert again["hosts"]["h2"]["health"] == "ok"  # the record of the run that judged it
    # ... and it says so: the host did not boot in this run, whatever its boot figures say
    judged_at = again["cells"]["h2/img/ok"]["started_at"]
    assert again["hosts"]["h2"]["reused"] == f"not booted by this run: its cells were reused from the result cache (judged from {judged_at})"
    assert again["deliveries"]["h2/img"]["reused"] == f"not delivered by this run: the cells were reused from the result cache (delivered for the cell judged at {judged_at})"
    page = (tmp_path / "second" / "matrix.html").read_text()
    assert "not booted by this run" in page and "ready in" not in page and "not delivered by this run" in page



def test_no_host_is_booted_for_cells_whose_image_cannot_be_built(pytester, matrix, tmp_path):
    """An image that fails to build for a host's architecture (a mirror's 404) makes its cells there
    errors without starting the host: a run (or a --reuse rerun retrying those errors) whose
    selected cells all need it boots nothing."""
    def failing_build(spec, arch, *args, **kwargs):
        if spec.name == "img":
            raise BuildError(f"image {spec.name} for {arch}: mmdebstrap failed (exit 25)")
        return stub_build(spec, arch, *args, **kwargs)  # the harness's own probe image

    class FailingBuilds(Stubs):
        @pytest.hookimpl(tryfirst=True)
        def pytest_configure(self, config: pytest.Config) -> None:
            config.stash[PARTS_KEY] = Parts(drivers={HostKind.VM: StubKind}, build_image=failing_build)

    reports = tmp_path / "reports"
    result = pytester.runpytest_inprocess(str(matrix), f"--reports={reports}", f"--cache-dir={matrix.parent / 'cache'}", "--progress=quiet", "-p", "no:cacheprovider", plugins=[FailingBuilds()])
    result.assert_outcomes(errors=4)
    assert StubKind.hosts == []
    cells = json.loads((reports / "results.json").read_text())["cells"]
    assert {c["outcome"] for c in cells.values()} == {"error"} and all("mmdebstrap failed (exit 25)" in c["message"] for c in cells.values())


JUNIT_MATRIX = """
version: 1
retries: 1
delivery: archive
hypervisors: [{uri: "test:///default"}]
hosts:
  - {name: h1, release: bookworm, arch: amd64, engine: podman}
  - {name: down, release: bookworm, arch: amd64, engine: podman}
images:
  - {name: img, release: bookworm}
scenarios: [ok, flaky, broken-fails, known-fails, lacking, refused]
known_issues:
  - {scenario: known-fails, bug: "https://bugs.example/7", note: "listed"}
"""


def test_junit_says_whose_trouble_each_cell_is(pytester, matrix, tmp_path):
    """Host and engine trouble are <error>; the image's failure a <failure>; not applicable and
    known issues <skipped> (the bug named); a flaky cell passes, carrying its failed attempt."""
    import xml.etree.ElementTree as ET

    for name in ("flaky", "broken-fails", "known-fails", "refused"):
        add_scenario(tmp_path / "scenarios", name, "#!/bin/sh\nexit 0\n")
    add_scenario(tmp_path / "scenarios", "lacking", "#!/bin/sh\nexit 0\n", "purpose: p\ndimension: engine\nneeds: [missing-tool]\n")
    write_matrix(tmp_path, JUNIT_MATRIX)
    StubKind.script = {"flaky": [ExecRecord(["stub"], 1, "first try\n", "boom\n", 0.1), 0], "refused": [ExecRecord(["podman"], 125, "", "Error: OCI runtime error\n", 0.1)]}

    def down(name):
        if name == "down":
            raise HostError("host down did not become ready: stub")

    StubKind.before = staticmethod(down)
    result, data = run(pytester, matrix, tmp_path / "reports", "-o", "junit_logging=system-out")
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "reports" / "junit.xml").getroot().iter("testcase") if c.get("classname").endswith("h1")}
    tag = lambda name: [child.tag for child in cases[name] if child.tag in ("error", "failure", "skipped")]  # noqa: E731
    assert tag("img/ok") == [] and tag("img/flaky") == []
    flaky = cases["img/flaky"]
    assert "attempt 1: fail, exit 1" in flaky.find("system-out").text and "boom" in flaky.find("system-out").text
    assert any(p.get("name") == "flaky" for p in flaky.iter("property"))
    assert tag("img/broken-fails") == ["failure"]
    assert tag("img/refused") == ["error"] and data["cells"]["h1/img/refused"]["outcome"] == "engine-error"
    assert tag("img/lacking") == ["skipped"]
    assert tag("img/known-fails") == ["skipped"] and "https://bugs.example/7" in cases["img/known-fails"].find("skipped").get("message")
    down_cases = [c for c in ET.parse(tmp_path / "reports" / "junit.xml").getroot().iter("testcase") if c.get("classname", "").endswith("down")]
    assert len(down_cases) == 6 and all([ch.tag for ch in c if ch.tag in ("error", "failure")] == ["error"] for c in down_cases)
    assert data["pairs"]["h1/img"]["klass"] == "supported-fail"


def test_resume_refuses_another_matrixs_results_and_a_damaged_file(pytester, matrix, tmp_path):
    reports = tmp_path / "reports"
    run(pytester, matrix, reports)
    other = write_matrix(tmp_path, MATRIX, name="matrix-other.yaml")
    result = invoke(pytester, other, reports, "--resume")
    assert result.ret == 2
    result.stdout.fnmatch_lines([f"*harness: cannot resume: {reports / 'results.json'} is the results of {matrix}, not of {other}*"])
    (reports / "results.json").write_text((reports / "results.json").read_text()[:300])
    kept = (reports / "results.json").read_text()
    result = invoke(pytester, matrix, reports, "--resume")
    assert result.ret == 2 and (reports / "results.json").read_text() == kept  # nothing lost, nothing overwritten
    result.stdout.fnmatch_lines([f"*harness: cannot resume: {reports / 'results.json'}: not JSON*"])


def test_no_run_destroys_anothers_results(pytester, matrix, tmp_path):
    reports = tmp_path / "reports"
    _, first = run(pytester, matrix, reports)
    result = invoke(pytester, matrix, reports, "-k", "no-such-cell")
    result.stdout.fnmatch_lines([f"*no cell ran: {reports} is left as it was*"])
    assert json.loads((reports / "results.json").read_text()) == first and (reports / "matrix.html").exists()
    assert not (reports / "runs").exists() or not any((reports / "runs").iterdir())
    _, second = run(pytester, matrix, reports)
    assert second["run_id"] != first["run_id"]
    kept = reports / "runs" / first["run_id"]
    assert json.loads((kept / "results.json").read_text()) == first and (kept / "matrix.html").exists()


def test_failing_cells_are_blamed_after_their_hosts_last_cell(pytester, matrix, tmp_path):
    StubKind.script = {"ok-fails": lambda scenario: 0 if "seccomp=unconfined" in scenario.options.security_opt else 1}
    _, data = run(pytester, matrix, tmp_path / "reports")
    assert sorted(data["verdicts"]) == ["h1/img/ok-fails"]  # failing alike on h2: blamed once, for both
    verdict = data["verdicts"]["h1/img/ok-fails"]
    assert verdict["cells"] == ["h1/img/ok-fails", "h2/img/ok-fails"]
    assert (verdict["layer"], verdict["summary"], verdict["confirmed"]) == ("seccomp", "seccomp: passes with seccomp=unconfined", True)
    html = (tmp_path / "reports" / "matrix.html").read_text()
    assert "seccomp: passes with seccomp=unconfined" in html and 'id="why"' in html
    import xml.etree.ElementTree as ET

    blamed = {f"{c.get('classname')[-2:]}/{c.get('name')}": [p.get("value") for p in c.iter("property") if p.get("name") == "harness_blame"]
              for c in ET.parse(tmp_path / "reports" / "junit.xml").getroot().iter("testcase")}
    assert blamed == {"h1/img/ok": [], "h1/img/ok-fails": ["seccomp: passes with seccomp=unconfined (confirmed)"],
                      "h2/img/ok": [], "h2/img/ok-fails": ["seccomp: passes with seccomp=unconfined (confirmed)"]}, blamed
    _, none = run(pytester, matrix, tmp_path / "again", "--no-blame")
    assert none["verdicts"] == {}


def test_history_records_what_changed_since_a_pair_was_last_good(pytester, matrix, tmp_path):
    only_ok = write_matrix(tmp_path, MATRIX.replace("scenarios: [ok, ok-fails]", "scenarios: [ok]"))
    reports = tmp_path / "reports"
    _, first = run(pytester, only_ok, reports)
    assert first["pairs"]["h1/img"]["klass"] == "supported-pass"
    StubKind.script = {"ok": [1]}
    _, second = run(pytester, only_ok, reports, "--history", str(reports), "--no-blame")
    assert second["pairs"]["h1/img"]["klass"] == "supported-fail"
    assert second["history"]["h1/img"][0] == f"good in run {first['run_id']} ({first['started_at']})"
    assert "What changed since it was last good" in (reports / "matrix.html").read_text()


def test_the_report_is_live_while_the_run_goes_on(pytester, matrix, tmp_path):
    reports = tmp_path / "reports"
    seen: list[str] = []

    def look(scenario):  # runs while h2's cells run: h1's are recorded by then
        page = reports / "matrix.html"
        seen.append(page.read_text() if page.exists() else "")
        return 0

    StubKind.script = {"ok": look}
    _, data = run(pytester, matrix, reports, "--no-blame")
    live = seen[-1]  # while h2's first cell runs
    assert 'id="in-progress">in progress: 1 of 4 cells' in live and 'http-equiv="refresh"' in live
    final = (reports / "matrix.html").read_text()
    assert "in-progress" not in final and "refresh" not in final and data["finished_at"]


def test_the_live_report_is_there_before_the_first_cell_ends(pytester, matrix, tmp_path):
    """A cold run builds its hosts and images for a long while (half an hour for emulated ones)
    before any cell ends: the page is there from the start, every selected cell not yet run."""
    reports = tmp_path / "reports"
    seen: list[str] = []

    def look(scenario):  # the run's first cell: nothing recorded yet
        page = reports / "matrix.html"
        seen.append(page.read_text() if page.exists() else "")
        return 0

    StubKind.script = {"ok": look}
    run(pytester, matrix, reports, "--no-blame")
    assert 'id="in-progress">in progress: 0 of 4 cells' in seen[0]


def test_a_resumed_runs_live_progress_counts_the_cells_it_kept_and_those_it_runs(pytester, matrix, tmp_path):
    """--resume keeps the cells already run (here h1's, from a run of -k h1) and deselects them:
    the page holds both, so the progress counts both, not the kept ones against this run's own."""
    reports = tmp_path / "reports"
    run(pytester, matrix, reports, "--no-blame", "-k", "h1")
    seen: list[str] = []

    def look(scenario):
        page = reports / "matrix.html"
        seen.append(page.read_text() if page.exists() else "")
        return 0

    StubKind.script = {"ok": look}
    _, data = run(pytester, matrix, reports, "--no-blame", "--resume", "-k", "h2")
    assert len(data["cells"]) == 4
    assert 'id="in-progress">in progress: 2 of 4 cells' in seen[0]


def test_each_change_is_journaled_once_not_again_with_every_report_of_its_cell(pytester, matrix, tmp_path):
    """A cell's properties ride on its setup, call and teardown reports alike: recorded from each,
    a cell was journaled (and fsync'd) twice or three times, and the ETA counted it as many."""
    reports = tmp_path / "reports"
    journals: list[list[dict]] = []

    def look(scenario):  # while h2's cells run, h1's are recorded: what did the journal get?
        journal = reports / "results.journal.jsonl"
        journals.append([json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else [])
        return 0

    StubKind.script = {"ok": look}
    run(pytester, matrix, reports, "--no-blame")
    lines = journals[-1]
    cells = [key for line in lines for key in line.get("cells", {})]
    hosts = [json.dumps(record, sort_keys=True) for line in lines for record in line.get("hosts", {}).values()]
    assert cells and len(cells) == len(set(cells)), cells
    assert len(hosts) == len(set(hosts)), "a host's record journaled again unchanged"


def test_a_covering_array_runs_fewer_cells_and_says_what_it_covers(pytester, matrix, tmp_path):
    result, data = run(pytester, matrix, tmp_path / "reports", "--cover", "2", "--no-blame")
    # Two hosts that differ in their release, one image, two scenarios: every value pair needs
    # each host with each scenario, so all four cells; the summary says so.
    assert len(data["cells"]) == 4 and data["coverage"].startswith("covering array of strength 2: 4 of 4 cells sampled, covering")
    narrow = write_matrix(tmp_path, MATRIX.replace("images:\n  - {name: img, release: bookworm}", "images:\n  - {name: img, release: bookworm}\n  - {name: img2, release: bookworm}\n  - {name: img3, release: bookworm}"), name="matrix-wide.yaml")
    result, wide = run(pytester, narrow, tmp_path / "wide", "--cover", "2", "--no-blame", "--must", "h2/img3")
    assert len(wide["cells"]) < 12 and {"h2/img3/ok", "h2/img3/ok-fails"} <= set(wide["cells"])
    assert "of 12 cells sampled" in wide["coverage"] and "Sampled: covering array" in (tmp_path / "wide" / "matrix.html").read_text()


def test_hosts_are_collected_slowest_first(pytester, tmp_path, repo_root):
    """Emulated s390x before arm64 before this machine's own amd64 (matrix order among equals), so
    xdist's loadscope hands the slow ones out first."""
    (tmp_path / "vms").symlink_to(repo_root / "vms")
    add_scenario(tmp_path / "scenarios", "ok", "#!/bin/sh\nexit 0\n")
    matrix = write_matrix(tmp_path, MATRIX.replace("scenarios: [ok, ok-fails]", "scenarios: [ok]").replace(
        "  - {name: h2, release: trixie, arch: amd64, engine: podman}",
        "  - {name: h2, release: trixie, arch: amd64, engine: podman}\n  - {name: a1, release: bookworm, arch: arm64, engine: podman}\n  - {name: z1, release: bookworm, arch: s390x, engine: podman}"))
    result = pytester.runpytest_inprocess(str(matrix), "--collect-only", "-q", "-p", "no:cacheprovider", plugins=[Stubs()])
    order = [line.split("::")[1] for line in result.outlines if "::" in line]
    assert order == ["z1", "a1", "h1", "h2"], result.outlines
