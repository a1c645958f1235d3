"""A pytest plugin for bench/scale.py only: the stub hosts and image builds of tests/stub_host.py,
given to the run as its Parts, so what is measured is the harness itself (collection, scheduling,
recording, reporting)."""

from __future__ import annotations

import pytest

from harness.config.model import HostKind
from harness.plugin.options import PARTS_KEY
from harness.session import Parts
from tests.stub_host import StubKind, stub_build


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[PARTS_KEY] = Parts(drivers={HostKind.VM: StubKind}, build_image=stub_build)
