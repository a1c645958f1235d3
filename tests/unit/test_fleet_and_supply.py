"""The fleet (hosts: start, health check, lose and move, fail, stop) and the image supply
(which architectures an image is built and published for), on stub hosts, booting nothing."""

from __future__ import annotations

import pytest

import harness.supply as supply_module
from harness.config.load import load_matrix
from harness.config.model import HostKind
from harness.context import RunContext
from harness.hosts.fleet import Fleet
from harness.hosts.hypervisors import HypervisorLost
from harness.hosts.provider import HostError
from harness.registry.publish import Publication
from harness.supply import ImageSupply, SupplyError
from tests.conftest import write_matrix
from tests.stub_host import StubKind, stub_build

MATRIX = """
version: 1
hosts:
  - {name: x86, release: bookworm, arch: amd64, engine: podman}
  - {name: arm, release: bookworm, arch: arm64, engine: podman}
images:
  - {name: base, release: bookworm}
  - {name: arm-only, release: bookworm, arches: [arm64]}
scenarios: [useradd]
"""


@pytest.fixture
def matrix(tmp_path, repo_root):
    (tmp_path / "scenarios").symlink_to(repo_root / "scenarios")
    (tmp_path / "vms").symlink_to(repo_root / "vms")
    return load_matrix(write_matrix(tmp_path, MATRIX))


@pytest.fixture
def run(tmp_path):
    return RunContext("r1", tmp_path / "cache", tmp_path / "reports", (), registry="http://127.0.0.1:1")


class Kind(StubKind):
    lost: list[str] = []

    def lose_hypervisor(self, name: str, why: str) -> None:
        type(self).lost.append(name)


@pytest.fixture
def kind():
    Kind.hosts, Kind.script, Kind.lost, Kind.before = [], {}, [], staticmethod(lambda _name: None)
    return Kind


def fleet(matrix, run) -> Fleet:
    return Fleet(matrix, run, drivers={HostKind.VM: Kind}, build=stub_build)


def test_a_host_starts_once_health_checked_with_typed_facts(matrix, run, kind):
    f = fleet(matrix, run)
    host = f.host("x86")
    assert f.host("x86") is host and len(kind.hosts) == 1
    record = f.record("x86")
    assert record.health == "ok" and record.facts.kernel == "stub" and record.facts.machine == "amd64"


def test_a_host_whose_hypervisor_is_lost_starts_again_elsewhere_and_says_why(matrix, run, kind):
    calls = []

    def before(name):
        calls.append(name)
        if len(calls) == 1:
            raise HypervisorLost("host x86: libvirt gone (hypervisor node stopped answering)", "node")

    kind.before = staticmethod(before)
    f = fleet(matrix, run)
    moved = []
    f.on_move.append(moved.append)
    host = f.host("x86")
    assert calls == ["x86", "x86"] and kind.lost == ["node"] and moved == ["x86"]
    assert "started again: host x86: libvirt gone" in host.record.moved
    # Lost again under a later cell: the running host is stopped, and the next ask starts another.
    f.lose("x86", HypervisorLost("gone again", "node2"))
    assert host.stopped and f.host("x86") is not host and kind.lost == ["node", "node2"]


def test_a_failed_health_check_is_the_hosts_error_for_every_later_cell(matrix, run, kind):
    kind.script = {"harness-probe": [1]}
    f = fleet(matrix, run)
    with pytest.raises(HostError, match="failed its health check"):
        f.host("x86")
    with pytest.raises(HostError, match="failed its health check"):
        f.host("x86")
    assert len(kind.hosts) == 1 and kind.hosts[0].stopped and f.record("x86").error


def test_a_host_is_stopped_after_its_last_cell(matrix, run, kind):
    f = fleet(matrix, run)
    f.expect("x86", 2)
    host = f.host("x86")
    f.cell_done("x86")
    assert not host.stopped
    f.cell_done("x86")
    assert host.stopped


@pytest.fixture
def published(matrix, run, monkeypatch):
    """A supply whose builds build nothing and whose publications only record what they were asked."""
    supply = ImageSupply(matrix, run, build=stub_build)
    asked: list = []

    def publish(url, name, builds, index):
        asked.append((url, name, tuple(sorted(builds)), index))
        return Publication(f"harness/{name}", "c-0", "sha256:0", tuple(sorted(builds)))

    monkeypatch.setattr(supply_module, "publish", publish)
    return supply, asked


def test_a_slice_of_amd64_hosts_builds_no_other_architecture(published):
    supply, asked = published
    supply.select("x86", "base")
    assert supply.publication("base", "amd64").arches == ("amd64",)
    assert asked == [("http://127.0.0.1:1", "base", ("amd64",), True)]  # still an index: the image is multi-arch
    assert supply.records["base"].reference == "127.0.0.1:1/harness/base:c-0"


def test_every_selected_architecture_and_one_publication_per_run(published):
    supply, asked = published
    supply.select("x86", "base")
    supply.select("arm", "base")
    assert supply.publication("base", "arm64").arches == ("amd64", "arm64")
    supply.publication("base", "amd64")
    assert len(asked) == 1


def test_the_images_own_architectures_when_no_selected_host_has_one(published):
    supply, asked = published
    supply.select("x86", "arm-only")
    assert supply.publication("arm-only", "amd64").arches == ("arm64",)  # the amd64 host finds no amd64 in it
    assert asked[0][3] is False


def test_no_registry_is_the_images_error_naming_it(matrix, tmp_path):
    supply = ImageSupply(matrix, RunContext("r1", tmp_path, tmp_path, ()), build=stub_build)
    with pytest.raises(SupplyError, match="image base: no registry"):
        supply.publication("base", "amd64")


def test_a_failed_build_is_remembered_per_architecture(matrix, run):
    calls = []

    def failing(spec, arch, *args):
        calls.append(arch)
        if arch == "arm64":
            from harness.mmdebstrap import BuildError

            raise BuildError(f"image {spec.name} for arm64: mirror out of sync")
        return stub_build(spec, arch, *args)

    supply = ImageSupply(matrix, run, build=failing)
    with pytest.raises(SupplyError, match="mirror out of sync"):
        supply.image("base", "arm64")
    with pytest.raises(SupplyError, match="mirror out of sync"):
        supply.image("base", "arm64")
    assert supply.image("base", "amd64").arch == "amd64" and calls == ["arm64", "amd64"]


def test_a_host_of_no_architecture_of_the_image_learns_it_is_not_portable_though_the_selected_build_failed(tmp_path, repo_root, run, monkeypatch):
    """Chunk D of the default matrix: an arm64 and a ppc64el host, an image for amd64 and arm64 whose
    arm64 build fails (the mirror). The ppc64el host must still get an index to pull from (its pull
    says the image has no ppc64el), not the arm64 build's failure, nor a harness crash (KeyError)."""
    (tmp_path / "scenarios").symlink_to(repo_root / "scenarios")
    (tmp_path / "vms").symlink_to(repo_root / "vms")
    matrix = load_matrix(write_matrix(tmp_path, """
version: 1
hosts:
  - {name: arm, release: bookworm, arch: arm64, engine: podman}
  - {name: ppc, release: bookworm, arch: ppc64el, engine: podman}
images:
  - {name: old, release: bookworm, arches: [amd64, arm64]}
scenarios: [useradd]
"""))

    def failing(spec, arch, *args):
        if arch == "arm64":
            from harness.mmdebstrap import BuildError

            raise BuildError(f"image {spec.name} for arm64: libc6 404")
        return stub_build(spec, arch, *args)

    monkeypatch.setattr(supply_module, "publish", lambda url, name, builds, index: Publication(f"harness/{name}", "c-0", "sha256:0", tuple(sorted(builds))))
    supply = ImageSupply(matrix, run, build=failing)
    supply.select("arm", "old")
    supply.select("ppc", "old")
    assert supply.publication("old", "ppc64el").arches == ("amd64",)
    with pytest.raises(SupplyError, match="for arm64: libc6 404"):
        supply.publication("old", "arm64")


def pulled(matrix, run, answers):
    """A stub host that pulls, answering `answers` in turn, and what the supply recorded."""
    from tests.stub_host import StubHost

    host = StubHost(matrix.host("x86"), {"pull": list(answers)})
    supply = ImageSupply(matrix, run, build=stub_build, pull_retry_delays=(0.01, 0.01))
    supply.publication = lambda name, arch: Publication(f"harness/{name}", "c-0", "sha256:0", (arch,))  # type: ignore[method-assign]
    return supply.deliver(host, "base"), host


def test_a_pull_that_fails_for_the_network_is_tried_again(matrix, run):
    delivery, host = pulled(matrix, run, [(125, "Error: dial tcp 10.0.2.2:8008: connect: connection refused"), (0, "")])
    assert delivery.ok and delivery.tries == 2 and "connection refused" in delivery.output
    assert sum(line.startswith("stub pull") for line in host.log) == 2


def test_only_a_missing_platform_or_a_refused_format_is_not_portable(matrix, run):
    from harness.supportability import pair_status

    missing, host = pulled(matrix, run, [(125, "Error: choosing an image from manifest list: no image found in manifest list for architecture amd64")])
    assert not missing.ok and missing.not_portable == "the registry has no manifest for linux/amd64" and missing.tries == 1
    assert pair_status([], missing) == "not-portable"
    timeout, _ = pulled(matrix, run, [(125, "Error: reading manifest: dial tcp 10.0.2.2:8008: i/o timeout")])
    assert not timeout.ok and timeout.not_portable == "" and timeout.tries == 3
    assert pair_status([], timeout) == "error"
    from harness.supply import delivery_problem

    assert "for a reason that is not the image's" in delivery_problem(timeout, "x86")


def test_a_host_that_cannot_pull_from_the_registry_fails_its_health_check(matrix, run, kind):
    from harness.results.model import DeliveryRecord

    down = DeliveryRecord("x86", "harness-probe", "", False, 1.0, ["podman", "pull"], "dial tcp 10.0.2.2:8008: connection refused", tries=3)
    f = Fleet(matrix, run, drivers={HostKind.VM: Kind}, build=stub_build, reach=lambda _host: down)
    with pytest.raises(HostError, match="cannot pull from the run's registry \\(3 tries\\): dial tcp"):
        f.host("x86")
    assert kind.hosts[0].stopped
