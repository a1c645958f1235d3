"""Host-side scenarios and suites in official-images' layout, for real: the project's own suite
(suites/basics) on a podman host (bookworm's podman-docker) and a docker host (trixie's docker-cli)
here, and on bullseye's podman (the harness's shim) and bookworm's docker in
test_vm_suites_slow.py; beside a suite written here that checks what the harness owes such a
test, from inside the guest: the image under the expected name, `docker` on PATH, the host's tools,
nothing left behind, an expected stdout judged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BOOKWORM_IMAGE, add_scenario

pytestmark = [pytest.mark.vm, pytest.mark.slow]  # CI leaves it out for its time (cold): see the README

REPO = Path(__file__).resolve().parents[2]
# Two releases of each engine: two hosts here (in CI), the other two in test_vm_suites_slow.py.
HOSTS = {
    "podman-bookworm": "{release: bookworm, arch: amd64, engine: podman, runtime: crun}",
    "docker-trixie": "{release: trixie, arch: amd64, engine: docker}",
}
SLOW_HOSTS = {
    "podman-bullseye": "{release: bullseye, arch: amd64, engine: podman, runtime: crun}",
    "docker-bookworm": "{release: bookworm, arch: amd64, engine: docker}",
}
BASICS = ["utc", "override-entrypoint", "run-as-user", "env-flag", "build-offline"]
# The suite written here: each test reads from the guest what the harness promised it.
OWN = {
    "host-tools": """#!/bin/bash
set -e
[ "$IMAGE" = "$1" ] && [ "$1" = "debian-bookworm:latest" ]
docker image inspect "$1" > /dev/null
for tool in bash getopt diff awk mktemp; do command -v "$tool" > /dev/null; done
command -v docker
""",
    "leaves-behind": """#!/bin/bash
set -e
docker run -d --name harness-left-behind --entrypoint sleep "$1" 600 > /run/harness-left-behind
context=$(mktemp -d) && echo "FROM $1" > "$context/Dockerfile"
docker build --network none -t harness-left-behind:built "$context" > /dev/null
""",
    "nothing-left": """#!/bin/bash
[ -s /run/harness-left-behind ] || { echo "leaves-behind did not run first"; exit 77; }
if docker ps -aq --no-trunc | grep -q "$(cat /run/harness-left-behind)"; then echo "its container is still there"; exit 1; fi
if docker image inspect harness-left-behind:built > /dev/null 2>&1; then echo "its image is still there"; exit 1; fi
""",
    "wrong-output": "#!/bin/sh\necho one\necho three\n",
}


def suite_run(tmp_path_factory, hosts: dict[str, str]) -> tuple[subprocess.CompletedProcess, dict]:
    directory = tmp_path_factory.mktemp("suites")
    for name, script in OWN.items():
        test = directory / "own" / "tests" / name
        test.mkdir(parents=True)
        (test / "run.sh").write_text(script)
        (test / "run.sh").chmod(0o755)
    (directory / "own/tests/wrong-output/expected-std-out.txt").write_text("one\ntwo\n")
    add_scenario(directory / "scenarios", "own-mode-host", '#!/bin/sh\nexec docker run --rm "$IMAGE" cat /etc/debian_version\n',
                 "purpose: a matrix's own host-side scenario\ndimension: engine\nmode: host\n")
    entries = "".join(f"  - {{name: {name}, {spec[1:]}\n" for name, spec in hosts.items())
    (directory / "matrix.yaml").write_text(f"""
version: 1
retries: 0
hosts:
{entries}images:{BOOKWORM_IMAGE}scenarios: [own-mode-host]
suites:
  - {{path: {REPO / 'suites' / 'basics'}, format: official-images}}
  - {{path: own, format: official-images, tests: [host-tools, leaves-behind, nothing-left, wrong-output]}}
""")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "matrix.yaml", f"--run-id=suites-{os.getpid()}", "--quiet", "--no-blame"],
                          cwd=directory, capture_output=True, text=True)
    print(proc.stdout[-5000:], proc.stderr[-3000:])
    return proc, json.loads((directory / "reports" / "results.json").read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return suite_run(tmp_path_factory, HOSTS)


def cell(data: dict, host: str, scenario: str) -> dict:
    return data["cells"][f"{host}/debian-bookworm/{scenario}"]


@pytest.mark.parametrize("host", list(HOSTS))
def test_the_projects_own_suite_passes_on_docker_and_podman_hosts_of_two_releases(run, host):
    _, data = run
    assert data["hosts"][host]["error"] == "", data["hosts"][host]
    for test in BASICS:
        result = cell(data, host, test)
        assert result["outcome"] == "pass", (test, result["message"], result["stdout"], result["stderr"])


@pytest.mark.parametrize("host", list(HOSTS))
def test_a_host_side_test_finds_the_image_its_name_and_the_hosts_tools(run, host):
    _, data = run
    result = cell(data, host, "host-tools")
    assert result["outcome"] == "pass", (result["message"], result["stderr"])
    docker = result["stdout"].strip()
    assert docker == ("/run/harness-bin/docker" if host == "podman-bullseye" else "/usr/bin/docker")  # bullseye: the harness's shim


@pytest.mark.parametrize("host", list(HOSTS))
def test_what_a_test_ran_or_built_is_gone_after_it(run, host):
    _, data = run
    assert cell(data, host, "leaves-behind")["outcome"] == "pass"
    after = cell(data, host, "nothing-left")
    assert after["outcome"] == "pass", (after["message"], after["stdout"])


def test_a_test_whose_stdout_differs_from_its_expected_output_fails_saying_where(run):
    _, data = run
    result = cell(data, "docker-trixie", "wrong-output")
    assert result["outcome"] == "fail" and result["exit_code"] == 0
    assert result["message"] == "its stdout differs from expected-std-out.txt at line 2: expected 'two', got 'three'"


def test_a_matrixs_own_mode_host_scenario_runs_on_the_host(run):
    _, data = run
    result = cell(data, "podman-bookworm", "own-mode-host")
    assert result["outcome"] == "pass" and result["stdout"].startswith("12."), result
    assert any(line.startswith("docker tag sha256:") for line in result["reproduce"]), result["reproduce"]
