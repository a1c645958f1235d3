"""The project's own suite and the harness's promises to host-side tests on the other release of
each engine (marker `slow`): bullseye's podman, which has no podman-docker (the harness's shim
stands in), and bookworm's docker.io. The checks are test_vm_suites.py's."""

from __future__ import annotations

import pytest

from tests.real import test_vm_suites as checks
from tests.real.test_vm_suites import SLOW_HOSTS, suite_run

pytestmark = [pytest.mark.vm, pytest.mark.slow]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return suite_run(tmp_path_factory, SLOW_HOSTS)


@pytest.mark.parametrize("host", list(SLOW_HOSTS))
def test_the_projects_own_suite_passes(run, host):
    checks.test_the_projects_own_suite_passes_on_docker_and_podman_hosts_of_two_releases(run, host)


@pytest.mark.parametrize("host", list(SLOW_HOSTS))
def test_the_image_its_name_docker_and_the_hosts_tools(run, host):
    checks.test_a_host_side_test_finds_the_image_its_name_and_the_hosts_tools(run, host)


@pytest.mark.parametrize("host", list(SLOW_HOSTS))
def test_nothing_left_behind(run, host):
    checks.test_what_a_test_ran_or_built_is_gone_after_it(run, host)
