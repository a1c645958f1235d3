"""Image-level blame on a real VM, built with a known answer: `ls --zero` (coreutils 9.0 and
later) fails in a bullseye image (coreutils 8.32) on a bookworm host whatever container layer is
swapped, and passes when the same image recipe is built from the host's own release."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import add_scenario, project_copy, run_harness, write_matrix

pytestmark = [pytest.mark.vm, pytest.mark.slow]  # left out of CI for time: run by hand, see README "Tests"

MATRIX = """
version: 1
retries: 0
hosts:
  - {name: bookworm-amd64, release: bookworm, arch: amd64, engine: podman, runtime: crun}
images:
  - {name: debian-bullseye, release: bullseye, packages: [passwd]}
scenarios: [ls-zero]
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    directory = project_copy(tmp_path_factory.mktemp("image-blame"))
    add_scenario(directory / "scenarios", "ls-zero", "#!/bin/sh\nls --zero / >/dev/null && echo 'ls ends its lines with NUL'\n",
                 "purpose: a tool option newer coreutils have\ndimension: application\n")
    write_matrix(directory, MATRIX)
    _, reports = run_harness(directory, f"image-blame-{os.getpid()}", "--quiet")
    return json.loads((reports / "results.json").read_text())


def test_an_old_images_tool_is_blamed_on_the_image_by_building_it_from_the_hosts_release(results):
    cell = results["cells"]["bookworm-amd64/debian-bullseye/ls-zero"]
    assert cell["outcome"] == "fail" and "unrecognized option" in cell["stderr"], cell
    (verdict,) = results["verdicts"].values()
    assert (verdict["layer"], verdict["summary"], verdict["confirmed"]) == ("image", "image: passes in debian-bullseye built from bookworm (the host's release)", True), verdict
    swapped = [e for e in verdict["experiments"] if e["layer"] == "image"]
    # The variant's container really ran there: its own image ID in the command, a different one.
    assert swapped and all(e["outcome"] == "pass" for e in swapped) and swapped[0]["command"] != verdict["experiments"][0]["command"]
    assert "ls ends its lines with NUL" in swapped[0]["evidence"]
    container = [e for e in verdict["experiments"] if e["layer"] in ("seccomp", "LSM", "runtime")]
    assert len(container) == 3 and all(e["outcome"] == "fail" for e in container)
