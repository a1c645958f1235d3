"""Host-level blame with a variant host, on real VMs, built with a known answer: a workload that
reads its memory limit where cgroup v1 keeps it (as JVMs before cgroup v2 support did) fails on a
cgroup v2 host whatever container layer or image is swapped; the matrix has no sibling that
differs in cgroup mode alone, so the harness boots one (the same disk, booted with cgroup v1)
after the host's last cell, and the workload passes there."""

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
  - {{name: bookworm-amd64, release: bookworm, arch: amd64, engine: podman, runtime: crun}}
images:{BOOKWORM_IMAGE}scenarios: [cgroup-v1-limit]
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    directory = project_copy(tmp_path_factory.mktemp("host-blame"))
    add_scenario(directory / "scenarios", "cgroup-v1-limit",
                 "#!/bin/sh\nlimit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) || exit 1\n[ \"$limit\" = 67108864 ] && echo \"memory limit $limit read from cgroup v1\"\n",
                 "purpose: a runtime that sizes itself from cgroup v1's memory limit\ndimension: kernel\noptions: {memory: 64m}\n")
    write_matrix(directory, MATRIX)
    _, reports = run_harness(directory, f"host-blame-{os.getpid()}", "--quiet")
    return json.loads((reports / "results.json").read_text())


def test_a_cgroup_v1_workload_is_blamed_on_the_cgroup_mode_by_a_variant_host(results):
    cell = results["cells"]["bookworm-amd64/debian-bookworm/cgroup-v1-limit"]
    assert cell["outcome"] == "fail" and "No such file" in cell["stderr"], cell
    (verdict,) = results["verdicts"].values()
    assert (verdict["layer"], verdict["summary"], verdict["confirmed"]) == ("cgroup mode", "cgroup mode: passes on a variant host with cgroup mode v1 instead of v2", True), verdict
    on_variant = [e for e in verdict["experiments"] if e["swap"].endswith("(a variant host)")]
    # Read in the variant's container: the limit the engine set, where cgroup v1 keeps it.
    assert [e["outcome"] for e in on_variant] == ["pass", "pass"] and "memory limit 67108864 read from cgroup v1" in on_variant[0]["evidence"]
    assert all(e["outcome"] != "pass" for e in verdict["experiments"] if e not in on_variant)
    assert set(results["hosts"]) == {"bookworm-amd64"}  # the variant is an experiment, not a host of the run
