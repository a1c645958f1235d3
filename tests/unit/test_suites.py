"""Suites in official-images' layout and host-side scenarios: reading them from the matrix (bad
input in one line each), judging an expected stdout, laying them on the delivery disk, and the
host-side script's cleanup, run by a real shell against a fake `docker`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.cells.verdict import judge, stdout_differs
from harness.config.load import MatrixError, load_matrix
from harness.hosts import host_side
from harness.images.deliver import assemble_payload
from harness.results.model import ExecRecord, Outcome
from tests.conftest import add_scenario

REPO = Path(__file__).resolve().parents[2]


def suite(root: Path, tests: dict[str, str], expected: dict[str, str] | None = None, executable: bool = True) -> Path:
    for name, script in tests.items():
        (root / "tests" / name).mkdir(parents=True)
        (root / "tests" / name / "run.sh").write_text(script)
        (root / "tests" / name / "run.sh").chmod(0o755 if executable else 0o644)
    for name, text in (expected or {}).items():
        (root / "tests" / name / "expected-std-out.txt").write_text(text)
    return root


def matrix(tmp_path: Path, suites: str, scenarios: str = "", hosts: str = "  - {name: p, release: bookworm, arch: amd64, engine: podman}\n") -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(f"version: 1\nhosts:\n{hosts}images:\n  - {{name: debian-bookworm, release: bookworm}}\n{scenarios}{suites}")
    return path


def problems(path: Path) -> str:
    with pytest.raises(MatrixError) as caught:
        load_matrix(path)
    return str(caught.value)


def test_each_chosen_test_becomes_a_host_side_scenario_with_its_expected_output(tmp_path):
    suite(tmp_path / "image-tests", {"utc": "#!/bin/sh\n", "override-cmd": "#!/bin/sh\n", "other": "#!/bin/sh\n"}, {"utc": "UTC\n"})
    m = load_matrix(matrix(tmp_path, "suites:\n  - {path: image-tests, format: official-images, tests: [utc, override-cmd]}\n"))
    assert [(s.name, s.mode, s.expected_stdout) for s in m.scenarios] == [("utc", "host", "UTC\n"), ("override-cmd", "host", None)]
    assert m.scenarios[0].suite_root == tmp_path / "image-tests" / "tests"


def test_all_tests_when_none_are_named_and_the_tests_directory_itself_is_taken(tmp_path):
    suite(tmp_path / "s", {"b": "#!/bin/sh\n", "a": "#!/bin/sh\n"})
    m = load_matrix(matrix(tmp_path, "suites:\n  - {path: s/tests, format: official-images}\n"))
    assert [s.name for s in m.scenarios] == ["a", "b"]


def test_podman_hosts_get_a_docker_cli_only_when_the_matrix_has_host_side_scenarios(tmp_path):
    hosts = "  - {name: p, release: bookworm, arch: amd64, engine: podman}\n  - {name: old, release: bullseye, arch: amd64, engine: podman}\n  - {name: d, release: bookworm, arch: amd64, engine: docker}\n"
    suite(tmp_path / "s", {"a": "#!/bin/sh\n"})
    with_suite = load_matrix(matrix(tmp_path, "suites:\n  - {path: s, format: official-images}\n", hosts=hosts))
    assert [h.extra_packages for h in with_suite.hosts] == [("podman-docker",), (), ()]  # bullseye: the harness's shim
    add_scenario(tmp_path / "scenarios", "plain", "#!/bin/sh\n")
    without = load_matrix(matrix(tmp_path, "", "scenarios: [plain]\n", hosts=hosts))
    assert [h.extra_packages for h in without.hosts] == [(), (), ()]


def test_a_suite_directory_not_in_the_layout_is_one_line(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "run.sh").write_text("#!/bin/sh\n")
    said = problems(matrix(tmp_path, "suites:\n  - {path: flat, format: official-images}\n"))
    assert said.count("\n") == 0 and "matrix.yaml:" in said and "is not in the official-images layout: no tests/<name>/run.sh" in said


def test_a_test_whose_run_sh_is_not_executable_is_one_line(tmp_path):
    suite(tmp_path / "s", {"utc": "#!/bin/sh\n"}, executable=False)
    said = problems(matrix(tmp_path, "suites:\n  - {path: s, format: official-images}\n"))
    assert said.count("\n") == 0 and "suite test 'utc':" in said and "run.sh is not executable" in said


def test_a_named_test_the_suite_lacks_a_name_clash_and_no_scenarios_at_all(tmp_path):
    suite(tmp_path / "s", {"utc": "#!/bin/sh\n"})
    assert "suite test 'nope': no " in problems(matrix(tmp_path, "suites:\n  - {path: s, format: official-images, tests: [nope]}\n"))
    add_scenario(tmp_path / "scenarios", "utc", "#!/bin/sh\n")
    assert "suite test 'utc' has the name of another scenario" in problems(matrix(tmp_path, "suites:\n  - {path: s, format: official-images}\n", "scenarios: [utc]\n"))
    assert "no scenarios: give `scenarios:`, `suites:`, or both" in problems(matrix(tmp_path, ""))


def test_a_host_side_scenario_has_no_needs_or_container_options(tmp_path):
    add_scenario(tmp_path / "scenarios", "h", "#!/bin/sh\n", "purpose: p\ndimension: engine\nmode: host\nneeds: [sh]\n")
    assert "scenario 'h'" in problems(matrix(tmp_path, "", "scenarios: [h]\n"))


def test_an_expected_stdout_is_judged_line_by_line_and_carriage_returns_dropped():
    ok = ExecRecord(["t"], 0, "UTC\r\n", "", 1.0)
    assert judge(ok, "UTC\n") == (Outcome.PASS, "")
    assert judge(ok, "GMT\n") == (Outcome.FAIL, "its stdout differs from expected-std-out.txt at line 1: expected 'GMT', got 'UTC'")
    assert stdout_differs("a\nb\n", "a\n") == "its stdout differs from expected-std-out.txt at line 2: expected 'b', got nothing more"
    assert judge(ExecRecord(["t"], 3, "UTC\n", "", 1.0), "UTC\n")[0] == Outcome.FAIL  # matching output does not excuse an exit status


def test_the_suites_whole_directory_is_on_the_delivery_disk_once(tmp_path):
    suite(tmp_path / "s", {"a": "#!/bin/sh\n", "b": "#!/bin/sh\n"})
    (tmp_path / "s" / "tests" / "helper.sh").write_text("#!/bin/sh\n")
    m = load_matrix(matrix(tmp_path, "suites:\n  - {path: s, format: official-images}\n"))
    payload = assemble_payload(tmp_path / "payload", [], list(m.scenarios))
    assert (payload / m.scenarios[0].payload_script).is_file() and (payload / m.scenarios[1].payload_script).is_file()
    suite_dir = (payload / m.scenarios[0].payload_script).parents[1]
    assert (suite_dir / "helper.sh").is_file() and len(list((payload / "suites").iterdir())) == 1


FAKE_DOCKER = r"""#!/bin/sh
# A docker CLI that keeps its containers, images and names in files under $0's directory.
d=$(dirname "$0"); echo "$*" >> "$d/calls"
case "$1" in
tag) echo "$3" >> "$d/names" ;;
ps) cat "$d/containers" ;;
images) if [ "$2" = "--format" ]; then cat "$d/names"; else cat "$d/images"; fi ;;
run) echo "c-new" >> "$d/containers"; echo "hello" ;;
build) echo "i-new" >> "$d/images"; echo "built:1" >> "$d/names" ;;
rm|rmi) ;;
esac
"""


def test_the_host_side_script_tags_runs_and_removes_only_what_the_test_made(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text(FAKE_DOCKER)
    (fake / "docker").chmod(0o755)
    (fake / "containers").write_text("c-old\n")
    (fake / "images").write_text("i-old\n")
    (fake / "names").write_text("old:1\n")
    test = tmp_path / "run.sh"
    test.write_text('#!/bin/sh\n[ "$IMAGE" = "$1" ] || exit 9\ndocker run "$1"\ndocker build .\npwd > "$(dirname "$0")/cwd"\nexit 3\n')
    test.chmod(0o755)
    script = tmp_path / "host-side"
    script.write_text(host_side.TEXT)
    done = subprocess.run(["sh", str(script), "run", str(tmp_path / "state"), "app:latest", "sha256:abc", str(test)],
                          capture_output=True, text=True, env={"PATH": f"{fake}:/usr/bin:/bin"})
    assert (done.returncode, done.stdout) == (3, "hello\n"), done.stderr
    calls = (fake / "calls").read_text().splitlines()
    assert calls[0] == "tag sha256:abc app:latest"
    assert "rm -f c-new" in calls and "rmi built:1" in calls and "rmi -f i-new" in calls
    assert not any("old" in c for c in calls if c.startswith("rm"))  # what was there before stays
    assert (tmp_path / "cwd").read_text().strip() == str(tmp_path / "state" / "work") and not (tmp_path / "state").exists()


def test_via_pod_and_cri_need_trixies_podman(tmp_path):
    add_scenario(tmp_path / "scenarios", "plain", "#!/bin/sh\n")
    for host, said in (("{name: d, release: bookworm, arch: amd64, engine: docker, via: pod}", "via: pod needs engine: podman"),
                       ("{name: o, release: bullseye, arch: amd64, engine: podman, via: pod}", "via: pod needs trixie or later: bullseye's podman 3.0"),
                       ("{name: b, release: bookworm, arch: amd64, engine: podman, via: pod}", "via: pod needs trixie or later: bookworm's podman 4.3.1"),
                       ("{name: c, release: bookworm, arch: amd64, engine: podman, via: cri}", "via: cri needs trixie or later: bookworm packages no CRI API proto"),
                       ("{name: e, release: trixie, arch: amd64, engine: docker, via: cri}", "via: cri needs engine: podman (dockerd runs a containerd of its own)")):
        assert said in problems(matrix(tmp_path, "", "scenarios: [plain]\n", hosts=f"  - {host}\n"))
    assert load_matrix(matrix(tmp_path, "", "scenarios: [plain]\n", hosts="  - {name: p, release: trixie, arch: amd64, engine: podman, via: pod}\n")).hosts[0].via == "pod"


def test_reproduce_refuses_a_swap_on_a_host_side_test_before_starting_anything(tmp_path):
    from harness.reproduce import ReproduceError, reproduce

    suite(tmp_path / "s", {"utc": "#!/bin/sh\n"})
    m = load_matrix(matrix(tmp_path, "suites:\n  - {path: s, format: official-images}\n"))
    with pytest.raises(ReproduceError, match="runs on the host and starts its own containers: no swap reaches them"):
        reproduce(m, "p/debian-bookworm/utc", tmp_path / "cache", None, swap="seccomp=unconfined")
    assert not (tmp_path / "cache").exists()
