"""A real registry (Debian's docker-registry) on this machine: the harness starts it, pushes the
probe image for two architectures behind one OCI index, and the local podman pulls it by reference,
resolving its own platform (and another one when asked) from the index."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cache import BuildCache, default_root
from harness.config.model import PROBE_IMAGE
from harness.images.build import build_image
from harness.registry.push import MEDIA_INDEX, RegistryClient
from harness.registry.server import RegistryServer, answers
from tests.conftest import free_port, needs_podman

MIRROR = "http://deb.debian.org/debian"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    server = RegistryServer(tmp_path_factory.mktemp("registry"), f"127.0.0.1:{free_port()}")
    server.start()
    yield server
    server.stop()
    assert not answers(server.url)


@pytest.fixture(scope="module")
def pushed(registry):
    cache = BuildCache(default_root(), "images")
    builds = {arch: build_image(PROBE_IMAGE, arch, MIRROR, cache)[0] for arch in ("amd64", "arm64")}
    client = RegistryClient(registry.url)
    images = [client.push_archive("harness/probe", b.archive, arch) for arch, b in builds.items()]
    digest = client.push_index("harness/probe", "latest", images)
    return client, builds, digest


def test_the_index_lists_both_platforms(pushed):
    client, builds, digest = pushed
    body, served = client.manifest("harness/probe", "latest", MEDIA_INDEX)
    index = json.loads(body)
    assert served == digest and index["mediaType"] == MEDIA_INDEX
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]


def test_pushing_again_uploads_nothing_new(pushed):
    client, builds, _ = pushed
    again = client.push_archive("harness/probe", builds["amd64"].archive, "amd64")
    assert again.config_digest == builds["amd64"].image_id


@needs_podman
@pytest.mark.parametrize("platform, arch", [(None, "amd64"), ("linux/arm64", "arm64")])
def test_podman_pulls_by_reference_and_resolves_the_platform(registry, pushed, platform, arch):
    _, builds, _ = pushed
    reference = f"{registry.addr}/harness/probe:latest"
    pull = ["podman", "pull", "--tls-verify=false", *(["--platform", platform] if platform else []), reference]
    subprocess.run(pull, check=True, capture_output=True, text=True)
    inspect = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}} {{.Architecture}}", reference], check=True, capture_output=True, text=True)
    image_id, got_arch = inspect.stdout.split()
    assert (f"sha256:{image_id}", got_arch) == (builds[arch].image_id, arch)
    subprocess.run(["podman", "rmi", "--force", reference], capture_output=True)


def _registry_of_another_harness(root: Path, addr: str) -> subprocess.Popen:
    """A registry (loopback only) started by another harness process, which then sleeps."""
    starter = subprocess.Popen(
        [sys.executable, "-c", f"import time; from pathlib import Path; from harness.registry.server import RegistryServer; "
         f"RegistryServer(Path({str(root)!r}), {addr!r}).start(); print('up', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert starter.stdout.readline().strip() == "up"
    return starter


@pytest.mark.parametrize("other_run_lives", [False, True])
def test_a_killed_runs_registry_is_stopped_by_the_next_cleanup(tmp_path, other_run_lives):
    import signal
    import time

    from harness.cleanup import cleanup

    addr = f"127.0.0.1:{free_port()}"
    starter = _registry_of_another_harness(tmp_path / "registry", addr)
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    assert answers(f"http://{addr}"), "the registry outlives the harness that was killed"
    if other_run_lives:  # another run on this machine may be pulling from it: it stays
        from harness.runs import claim

        claim(tmp_path / "runs" / "other")
        assert not cleanup([], tmp_path).services and answers(f"http://{addr}")
        shutil.rmtree(tmp_path / "runs" / "other")
    cleaned = cleanup([], tmp_path)
    assert any("stopped the registry" in s for s in cleaned.services)
    deadline = time.monotonic() + 10
    while answers(f"http://{addr}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not answers(f"http://{addr}")


def _another_run(root: Path, addr: str) -> subprocess.Popen:
    """Another harness process using the registry on addr (its cache at root): it starts (or finds)
    it, and stops (gives it up) when told on stdin."""
    run = subprocess.Popen(
        [sys.executable, "-c", f"import sys; from pathlib import Path; from harness.registry.server import RegistryServer; "
         f"s = RegistryServer(Path({str(root)!r}), {addr!r}); s.start(); print('up', s.process is not None, flush=True); sys.stdin.readline(); s.stop()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert run.stdout.readline().split() == ["up", "False"], "the other run uses the registry the first started"
    return run


def test_a_registry_two_runs_share_is_stopped_by_the_last_one_out(tmp_path):
    """Runs with different caches (bench/matrix_time.py's state directories) on one machine share the
    registry on the port: the one that started it must not stop it under the other's pulls."""
    addr = f"127.0.0.1:{free_port()}"
    first = RegistryServer(tmp_path / "a" / "registry", addr)
    first.start()
    second = _another_run(tmp_path / "b" / "registry", addr)
    try:
        first.stop()
        assert answers(f"http://{addr}"), "the first run stopped the registry the second still pulls from"
    finally:
        second.communicate("\n", timeout=30)
    assert not answers(f"http://{addr}"), "the last run out leaves the registry serving"


def test_a_registry_a_killed_run_left_is_not_stopped_by_cleanup_while_another_run_pulls_from_it(tmp_path):
    import signal

    from harness.cleanup import cleanup

    addr = f"127.0.0.1:{free_port()}"
    starter = _registry_of_another_harness(tmp_path / "a" / "registry", addr)
    user = RegistryServer(tmp_path / "b" / "registry", addr)
    try:
        user.start()
        starter.send_signal(signal.SIGKILL)
        starter.wait()
        assert not cleanup([], tmp_path / "a").services and answers(f"http://{addr}")
    finally:
        starter.kill()
        user.stop()
    assert not answers(f"http://{addr}"), "the last run out stops the registry whose starter is gone"


def test_an_image_given_by_reference_is_described_by_its_registry(registry, pushed):
    from harness.registry.inspect import describe

    _, builds, digest = pushed
    described, index, _ = describe(f"{registry.url.split('://')[1]}/harness/probe:latest", tls_verify=False)
    assert index == digest and sorted(described) == ["amd64", "arm64"]
    assert described["arm64"].image_id == builds["arm64"].image_id and described["arm64"].platform == "linux/arm64"
    assert described["amd64"].layers == 1 and described["amd64"].size > 0
    builds, digest, why = describe("127.0.0.1:1/nothing/here:1", tls_verify=False)
    assert (builds, digest) == ({}, "") and why.startswith("registry http://127.0.0.1:1 cannot be reached")


def test_a_loopback_only_registry_a_killed_run_left_is_replaced_when_other_machines_must_pull(tmp_path):
    import signal

    from harness.registry.server import RegistryError

    addr = f"127.0.0.1:{free_port()}"
    starter = _registry_of_another_harness(tmp_path / "registry", addr)
    try:
        # Its starter lives: it is another run's, and it is left alone, with a message that says so.
        with pytest.raises(RegistryError, match="serves this machine only"):
            RegistryServer(tmp_path / "registry", addr, listen_all=True).start()
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait()
    opened = RegistryServer(tmp_path / "registry", addr, listen_all=True)
    try:
        assert opened.start() == f"http://{addr}" and opened.process is not None
        assert "addr: :" in (tmp_path / "registry" / "config.yml").read_text()
        assert RegistryServer(tmp_path / "registry", addr).start() == f"http://{addr}"  # loopback users reuse it
    finally:
        opened.stop()
