"""Existing engines as hosts, for real: the local podman's API service driven through testcontainers.

This is the fast lane: no VM boots, yet the image is a real Debian image built by the harness,
loaded through the engine's API, and the scenarios really run in it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.engines.service import PodmanService, answers
from tests.conftest import (
    BOOKWORM_IMAGE,
    LOCAL_PODMAN_HOST,
    add_scenario,
    needs_podman,
    project_copy,
    write_matrix,
)

pytestmark = needs_podman

MATRIX = f"""
version: 1
hosts:{LOCAL_PODMAN_HOST}images:{BOOKWORM_IMAGE}scenarios:
  - fork-bomb
  - floods-stdout
  - useradd
  - prints-and-fails
  - hangs
  - not-for-this-image
  - service-dies
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("engine")
    project_copy(directory)
    add_scenario(directory / "scenarios", "prints-and-fails", "#!/bin/sh\necho '</pre><script>alert(1)</script>'\nexit 7\n")
    add_scenario(directory / "scenarios", "hangs", "#!/bin/sh\necho started\nsleep infinity\n", "purpose: hangs\ndimension: engine\ntimeout: 3\n")
    add_scenario(directory / "scenarios", "service-dies", "#!/bin/sh\necho never\n",
                 "purpose: its init dies\ndimension: engine\nmode: service\ninit: [/bin/sh, -c, 'echo init dying; exit 3']\n")
    add_scenario(directory / "scenarios", "not-for-this-image", "#!/bin/sh\nexit 0\n", "purpose: x\ndimension: application\nneeds: [nginx]\n")
    add_scenario(directory / "scenarios", "floods-stdout", "#!/bin/sh\nhead -c 100000000 /dev/zero | tr '\\0' x\necho\necho END\n")
    add_scenario(
        directory / "scenarios",
        "fork-bomb",
        "#!/bin/sh\ncat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null\nbomb() { bomb | bomb & }\nbomb\nsleep 3\necho survived\n",
        "purpose: a fork bomb\ndimension: kernel\ntimeout: 60\noptions: {pids_limit: 100}\n",
    )
    reports = directory / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(write_matrix(directory, MATRIX)), "--reports", str(reports)],
        capture_output=True,
        text=True,
    )
    print(proc.stdout[-4000:], proc.stderr[-2000:])
    return proc, reports


def test_cells_run_in_the_local_engine(run):
    proc, reports = run
    assert "1 skipped" in proc.stdout
    results = json.loads((reports / "results.json").read_text())
    useradd = results["cells"]["local-podman/debian-bookworm/useradd"]
    assert useradd["outcome"] == "pass" and "matrixuser:x:" in useradd["stdout"]
    assert useradd["command"][:3] == ["docker", "-H", "unix:///run/container-matrix-harness/podman.sock"]
    failing = results["cells"]["local-podman/debian-bookworm/prints-and-fails"]
    assert failing["outcome"] == "fail" and failing["exit_code"] == 7
    assert len(failing["attempts"]) == 1  # retried once (retries defaults to 1), failed both times
    hung = results["cells"]["local-podman/debian-bookworm/hangs"]
    assert hung["outcome"] == "timeout" and hung["stdout"].strip() == "started"
    skipped = results["cells"]["local-podman/debian-bookworm/not-for-this-image"]
    assert skipped["outcome"] == "not-applicable" and skipped["message"] == "not applicable: the image has no nginx"
    # Judged from one container per host and image that listed what the image lacks of every scenario's needs.
    assert skipped["stdout"].startswith("missing: nginx (one container checked the needs") and skipped["duration"] == 0
    assert results["pairs"]["local-podman/debian-bookworm"]["klass"] == "unsupported-broken"  # engine hosts: only by include
    assert results["hosts"]["local-podman"]["health"] == "ok"
    dead = results["cells"]["local-podman/debian-bookworm/service-dies"]
    assert dead["outcome"] == "fail" and dead["message"].startswith("the container exited (status 3) before the scenario started"), dead
    assert "init dying" in dead["stdout"] and "never" not in dead["stdout"]


def test_a_flood_of_output_is_cut_and_the_run_goes_on(run):
    _, reports = run
    flood = json.loads((reports / "results.json").read_text())["cells"]["local-podman/debian-bookworm/floods-stdout"]
    assert flood["outcome"] == "pass"
    assert len(flood["stdout"]) < 70_000 and "characters cut by the harness" in flood["stdout"]
    assert flood["stdout"].rstrip().endswith("END")
    assert (reports / "matrix.html").stat().st_size < 2_000_000


def test_a_fork_bomb_is_contained_by_the_pids_limit(run):
    _, reports = run
    cells = json.loads((reports / "results.json").read_text())["cells"]
    bomb = cells["local-podman/debian-bookworm/fork-bomb"]
    # The script outlives its own bomb: the limit held it, and its last line ran (not a timeout, not a broken host).
    assert bomb["outcome"] == "pass" and bomb["stdout"].rstrip().endswith("survived"), bomb
    assert bomb["stdout"].splitlines()[0] == "100"
    # the cells after it (useradd is the third) ran normally on the same engine
    assert cells["local-podman/debian-bookworm/useradd"]["outcome"] == "pass"


def test_results_follow_their_published_schema(run):
    import jsonschema

    from harness.results.schema import results_schema

    _, reports = run
    jsonschema.validate(json.loads((reports / "results.json").read_text()), results_schema())


def test_engine_facts_come_from_the_engine(run):
    _, reports = run
    host = json.loads((reports / "results.json").read_text())["hosts"]["local-podman"]
    assert host["accel"] == "engine"
    assert host["facts"]["engine"] == "podman"
    assert host["facts"]["engine_version"] == subprocess.run(["podman", "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True).stdout.strip()
    assert host["facts"]["raw"]["endpoint"].startswith("unix://")
    assert host["arch"] == "amd64"


def test_report_marks_engine_hosts_and_escapes(run):
    _, reports = run
    html = (reports / "matrix.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "engine host" in html


def test_service_started_by_the_harness_is_stopped(run, tmp_path):
    service = PodmanService(tmp_path / "podman.sock")
    endpoint = service.start()
    assert endpoint == f"unix://{tmp_path / 'podman.sock'}" and answers(tmp_path / "podman.sock")
    service.stop()
    assert not answers(tmp_path / "podman.sock")


def test_remote_endpoint_over_tcp(tmp_path):
    """A DOCKER_HOST-style TCP endpoint: scenarios are copied into the container, not bind-mounted."""
    import socket
    import time

    import docker

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", endpoint], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                docker.DockerClient(base_url=endpoint).ping()
                break
            except Exception:
                time.sleep(0.1)
        project_copy(tmp_path)
        host = LOCAL_PODMAN_HOST.replace("    local: true\n", f"    endpoint: {endpoint}\n")
        matrix = f"version: 1\nhosts:{host}images:{BOOKWORM_IMAGE}scenarios: [useradd]\n"
        reports = tmp_path / "reports"
        proc = subprocess.run(
            [sys.executable, "-m", "harness.cli", "run", str(write_matrix(tmp_path, matrix)), "--reports", str(reports)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout[-3000:]
        host = json.loads((reports / "results.json").read_text())["hosts"]["local-podman"]
        assert host["facts"]["raw"]["endpoint"] == endpoint
    finally:
        service.terminate()
        service.wait()


def test_reuse_takes_unchanged_cells_from_the_cache(run, tmp_path):
    proc, reports = run
    again = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(reports.parent / "matrix.yaml"), "--reports", str(tmp_path), "--reuse"],
        capture_output=True,
        text=True,
    )
    assert "1 skipped" in again.stdout
    reused = json.loads((tmp_path / "results.json").read_text())
    # Nothing was built, but the cached image's facts are there and its freshness judged again.
    build = reused["images"]["debian-bookworm"]["builds"]["amd64"]
    assert build["layers"] == 1 and build["freshness"]["checked"] == build["package_count"]
    cells = reused["cells"]
    assert all(c["message"].startswith("reused from the result cache") for c in cells.values())
    assert cells["local-podman/debian-bookworm/useradd"]["stdout"] == json.loads((reports / "results.json").read_text())["cells"]["local-podman/debian-bookworm/useradd"]["stdout"]


def test_an_image_that_cannot_be_built_is_one_clear_error(tmp_path):
    project_copy(tmp_path)
    bad = BOOKWORM_IMAGE.replace("debian-bookworm", "broken").replace("[passwd]", "[no-such-package-xyz]")
    matrix = f"version: 1\nhosts:{LOCAL_PODMAN_HOST}images:{BOOKWORM_IMAGE}{bad}scenarios: [useradd]\n"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(write_matrix(tmp_path, matrix)), "--reports", str(tmp_path / "reports")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "1 passed, 1 error" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    cell = json.loads((tmp_path / "reports" / "results.json").read_text())["cells"]["local-podman/broken/useradd"]
    assert cell["outcome"] == "error"
    assert cell["message"].startswith("image broken for amd64: mmdebstrap failed")
    assert "build.log" in cell["message"]
