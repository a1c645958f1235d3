"""Portability apart from compatibility, for real, on an emulated arm64 host pulling from the
harness's registry: a multi-arch image resolves to the host's own platform; an image published for
amd64 only is pulled anyway, flagged before it runs, and then run, recording what really happens;
an image published in a registry before the run is pulled by its own reference."""

from __future__ import annotations

import json
import os

import pytest

from harness.cache import BuildCache, default_root
from harness.config.model import ImageSpec
from harness.images.build import build_image
from harness.registry.push import RegistryClient
from harness.registry.server import RegistryServer
from tests.conftest import project_copy, run_harness, write_matrix

MIRROR = "http://deb.debian.org/debian"

pytestmark = [pytest.mark.vm, pytest.mark.slow]  # left out of CI for time: run by hand, see README "Tests"
RUN_ID = f"portability-{os.getpid()}"

MATRIX = """
version: 1
retries: 0
hosts:
  - {name: trixie-arm64, release: trixie, arch: arm64, engine: podman, runtime: crun, cpu: cortex-a57}
images:
  - {name: debian-bookworm, release: bookworm, packages: [passwd], arches: [amd64, arm64]}
  - {name: bookworm-amd64-only, release: bookworm, packages: [passwd], arches: [amd64]}
  - {name: published-elsewhere, reference: "127.0.0.1:8008/elsewhere/debian:12", tls_verify: false, release: bookworm}
scenarios:
  - useradd
"""


@pytest.fixture(scope="module")
def elsewhere():
    """A vendor's image, published before the run in a registry on this machine (the one the run
    will find serving): the bookworm builds for amd64 and arm64 behind one index."""
    server = RegistryServer(default_root() / "registry")
    url = server.start()
    spec = ImageSpec("debian-bookworm", "bookworm", ("passwd",), ("/bin/bash",))
    client = RegistryClient(url)
    pushed = [client.push_archive("elsewhere/debian", build_image(spec, a, MIRROR, BuildCache(default_root(), "images"))[0].archive, a) for a in ("amd64", "arm64")]
    yield client.push_index("elsewhere/debian", "12", pushed)
    server.stop()


@pytest.fixture(scope="module")
def results(tmp_path_factory, elsewhere):
    directory = project_copy(tmp_path_factory.mktemp("portability"))
    write_matrix(directory, MATRIX)
    _, reports = run_harness(directory, RUN_ID, "--quiet")
    return json.loads((reports / "results.json").read_text())


def test_an_image_given_by_reference_is_pulled_as_it_is(results, elsewhere):
    delivery = results["deliveries"]["trixie-arm64/published-elsewhere"]
    assert delivery["ok"] and delivery["reference"] == "10.0.2.2:8008/elsewhere/debian:12", delivery
    assert delivery["platform"] == "linux/arm64" and not delivery["mismatch"]
    assert "--tls-verify=false" in delivery["command"]
    assert results["cells"]["trixie-arm64/published-elsewhere/useradd"]["outcome"] == "pass"
    image = results["images"]["published-elsewhere"]
    assert image["source"] == "reference" and image["index_digest"] == elsewhere
    assert sorted(image["builds"]) == ["amd64", "arm64"] and image["builds"]["arm64"]["layers"] == 1
    assert results["pairs"]["trixie-arm64/published-elsewhere"]["supported"]  # release: bookworm, as the matrix says


def test_the_index_resolves_to_the_hosts_platform(results):
    delivery = results["deliveries"]["trixie-arm64/debian-bookworm"]
    assert delivery["ok"] and delivery["method"] == "pull" and delivery["platform"] == "linux/arm64" and not delivery["mismatch"]
    assert delivery["reference"].startswith("10.0.2.2:")
    assert results["cells"]["trixie-arm64/debian-bookworm/useradd"]["outcome"] == "pass"


def test_another_architectures_image_is_flagged_then_run(results):
    delivery = results["deliveries"]["trixie-arm64/bookworm-amd64-only"]
    assert delivery["ok"], "portable: the engine pulls it"
    assert delivery["mismatch"] == "image is linux/amd64, host is linux/arm64"
    cell = results["cells"]["trixie-arm64/bookworm-amd64-only/useradd"]
    assert cell["message"].startswith("image is linux/amd64, host is linux/arm64")
    # The guest has no binfmt handler for amd64: not compatible, and the output says why.
    assert cell["outcome"] == "fail" and "exec format error" in (cell["stdout"] + cell["stderr"]).lower()
    assert results["pairs"]["trixie-arm64/bookworm-amd64-only"]["status"] == "broken"
    # Failing for its platform alone: no swap could change that, so no blame experiment ran.
    assert not any("trixie-arm64/bookworm-amd64-only/useradd" in v["cells"] for v in results["verdicts"].values())
