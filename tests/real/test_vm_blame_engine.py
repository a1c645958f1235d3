"""Blame by the matrix's own cells, on real VMs: a scenario that passes under podman and fails under
docker on the same release, runtime, cgroup mode and LSM is blamed on the engine (no container swap
fixes it; the sibling host that differs in its engine alone passes)."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import BOOKWORM_IMAGE, add_scenario, project_copy, run_harness, write_matrix

pytestmark = [pytest.mark.vm, pytest.mark.slow]  # left out of CI for time: run by hand, see README "Tests"

MATRIX = f"""
version: 1
retries: 0
hosts:
  - {{name: bookworm-amd64-docker, release: bookworm, arch: amd64, engine: docker, runtime: runc}}
  - {{name: bookworm-amd64-podman-runc, release: bookworm, arch: amd64, engine: podman, runtime: runc}}
images:{BOOKWORM_IMAGE}scenarios:
  - podman-marks-containers
"""


def test_a_failure_only_one_engine_has_is_blamed_on_the_engine(tmp_path):
    project_copy(tmp_path)
    # podman marks its containers with /run/.containerenv; docker does not.
    add_scenario(tmp_path / "scenarios", "podman-marks-containers", "#!/bin/sh\ntest -e /run/.containerenv || { echo 'no /run/.containerenv' >&2; exit 1; }\n")
    write_matrix(tmp_path, MATRIX)
    _, reports = run_harness(tmp_path, f"blame-engine-{os.getpid()}", "--quiet")
    data = json.loads((reports / "results.json").read_text())
    assert data["cells"]["bookworm-amd64-podman-runc/debian-bookworm/podman-marks-containers"]["outcome"] == "pass"
    assert data["cells"]["bookworm-amd64-docker/debian-bookworm/podman-marks-containers"]["outcome"] == "fail"
    verdict = next(v for v in data["verdicts"].values() if "bookworm-amd64-docker/debian-bookworm/podman-marks-containers" in v["cells"])
    assert verdict["layer"] == "engine" and verdict["confirmed"] is None, verdict
    assert verdict["summary"] == "engine: passes on bookworm-amd64-podman-runc (engine podman instead of docker)"
    # The container swaps on the host, then the image built from neighbouring releases: none helped.
    assert [e["swap"] for e in verdict["experiments"]][:3] == ["", "seccomp=unconfined", "apparmor=unconfined"]
    assert {e["layer"] for e in verdict["experiments"][3:]} <= {"image"} and not any(e["outcome"] == "pass" for e in verdict["experiments"]), verdict["experiments"]
    # How each engine's default seccomp profile answers clone3, measured in a container of each:
    # docker's (20.10) says ENOSYS, so that glibc falls back to clone; podman's lets it through.
    said = {h: data["hosts"][h]["facts"]["raw"]["container_syscall_clone3"] for h in ("bookworm-amd64-docker", "bookworm-amd64-podman-runc")}
    assert said == {"bookworm-amd64-docker": "ENOSYS", "bookworm-amd64-podman-runc": "allowed"}, said
