"""CPU-model blame on real VMs, built with a known answer: a workload compiled for x86-64-v3 (one
AVX2 instruction, in a static ELF written here) fails with SIGILL on a host whose CPU model is
Nehalem and runs on the same recipe with QEMU's full model; no container swap helps, and the
sibling that differs only in its CPU model names the layer."""

from __future__ import annotations

import json
import os
import struct

import pytest

from tests.conftest import BOOKWORM_IMAGE, add_scenario, project_copy, run_harness, write_matrix

pytestmark = [pytest.mark.vm, pytest.mark.slow]  # left out of CI for time: run by hand, see README "Tests"

MATRIX = f"""
version: 1
retries: 0
hosts:
  - {{name: bookworm-amd64, release: bookworm, arch: amd64, engine: podman, runtime: crun}}
  - {{name: bookworm-amd64-nehalem, release: bookworm, arch: amd64, engine: podman, runtime: crun, cpu: Nehalem}}
images:{BOOKWORM_IMAGE}scenarios: [needs-avx2]
"""


def avx2_elf() -> bytes:
    """A static x86-64 executable: vpaddd ymm0, ymm0, ymm0 (AVX2), then exit(0)."""
    code = bytes.fromhex("c5fdfec0" "b83c000000" "31ff" "0f05")
    base, size = 0x400000, 64 + 56 + len(code)
    header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + b"\0" * 9, 2, 0x3E, 1, base + 120, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return header + program + code


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    directory = project_copy(tmp_path_factory.mktemp("cpu"))
    scenario = add_scenario(directory / "scenarios", "needs-avx2", "#!/bin/sh\n\"$(dirname \"$0\")/avx2\" && echo 'ran an AVX2 instruction'\n",
                            "purpose: a workload built for x86-64-v3 (AVX2)\ndimension: architecture\n")
    (scenario / "avx2").write_bytes(avx2_elf())
    (scenario / "avx2").chmod(0o755)
    write_matrix(directory, MATRIX)
    _, reports = run_harness(directory, f"cpu-{os.getpid()}", "--quiet")
    return json.loads((reports / "results.json").read_text())


def test_the_avx2_workload_dies_of_sigill_only_on_the_nehalem_host(results):
    cells = results["cells"]
    assert cells["bookworm-amd64/debian-bookworm/needs-avx2"]["outcome"] == "pass", cells["bookworm-amd64/debian-bookworm/needs-avx2"]
    failed = cells["bookworm-amd64-nehalem/debian-bookworm/needs-avx2"]
    assert failed["outcome"] == "fail" and failed["exit_code"] == 132, failed
    # The guest's CPU really lacks AVX2 there: read from the guest, not from the matrix.
    notable = {name: results["hosts"][name]["facts"]["raw"]["cpu_flags_notable"].split() for name in ("bookworm-amd64", "bookworm-amd64-nehalem")}
    assert "avx2" in notable["bookworm-amd64"] and "avx2" not in notable["bookworm-amd64-nehalem"] and "sse4_2" in notable["bookworm-amd64-nehalem"], notable


def test_the_verdict_names_the_cpu_model_from_the_sibling_that_differs_in_it_alone(results):
    (verdict,) = [v for v in results["verdicts"].values() if "bookworm-amd64-nehalem/debian-bookworm/needs-avx2" in v["cells"]]
    assert verdict["layer"] == "CPU model" and verdict["summary"].startswith("CPU model: passes on bookworm-amd64 (CPU model"), verdict
    assert verdict["confirmed"] is None and "not confirmed by an experiment" in verdict["confirmation"]
    assert {e["swap"] for e in verdict["experiments"]} >= {"", "seccomp=unconfined", "apparmor=unconfined"}
    assert all(e["outcome"] == "fail" for e in verdict["experiments"]), verdict["experiments"]
