"""The vendor's policy and the class of each host x image pair."""

from __future__ import annotations

from harness.config.model import CellPattern, Policy
from harness.results.model import CellResult, DeliveryRecord, HostRecord, ImageRecord
from harness.supportability import classify, is_supported


def host(release: str, arch: str = "amd64", kind: str = "vm", name: str = "h") -> HostRecord:
    return HostRecord(name, release, arch, "podman", "crun", kind=kind)


def image(release: str, name: str = "i") -> ImageRecord:
    return ImageRecord(name, release)


def test_release_n_images_on_hosts_n_and_n_plus_1():
    policy = Policy()
    assert is_supported(policy, host("bookworm"), image("bookworm"))[0]
    assert is_supported(policy, host("trixie"), image("bookworm"))[0]
    assert not is_supported(policy, host("bullseye"), image("bookworm"))[0]
    assert not is_supported(policy, host("trixie"), image("bullseye"))[0]
    assert is_supported(policy, host("trixie"), image("bullseye"))[1] == "bullseye images are not supported on trixie hosts"


def test_include_exclude_and_architectures():
    policy = Policy(architectures=("amd64",), include=(CellPattern(image="special-*"),), exclude=(CellPattern(host="h", image="i"),))
    assert not is_supported(policy, host("bookworm"), image("bookworm"))[0]  # excluded by name
    assert not is_supported(policy, host("bookworm", arch="arm64", name="x"), image("bookworm"))[0]
    assert is_supported(policy, host("bullseye", name="x"), image("sid", name="special-app"))[0]
    assert not is_supported(policy, host("", kind="engine", name="x"), image("bookworm"))[0]


def cell(outcome: str) -> CellResult:
    return CellResult("h", "i", "s", outcome, 1)


def test_classes():
    policy = Policy()
    supported, unsupported = host("bookworm"), host("bullseye")
    assert classify(policy, supported, image("bookworm"), [cell("pass"), cell("not-applicable")], None).klass == "supported-pass"
    assert classify(policy, supported, image("bookworm"), [cell("pass"), cell("fail")], None).klass == "supported-fail"
    assert classify(policy, supported, image("bookworm"), [cell("timeout")], None).klass == "supported-fail"
    assert classify(policy, supported, image("bookworm"), [cell("pass"), cell("known-issue")], None).klass == "supported-known-issues"
    assert classify(policy, supported, image("bookworm"), [cell("known-issue"), cell("flaky")], None).klass == "supported-flaky"
    assert classify(policy, supported, image("bookworm"), [cell("pass"), cell("fixed?")], None).klass == "supported-flaky"
    assert classify(policy, supported, image("bookworm"), [cell("not-applicable")] * 3, None).klass == "not-tested"
    assert classify(policy, unsupported, image("bookworm"), [cell("not-applicable")], None).klass == "not-tested"
    assert classify(policy, supported, image("bookworm"), [cell("pass"), cell("engine-error")], None).klass == "error"
    assert classify(policy, unsupported, image("bookworm"), [cell("flaky")], None).klass == "unsupported-works"
    assert classify(policy, unsupported, image("bookworm"), [cell("known-issue")], None).klass == "unsupported-broken"
    assert classify(policy, unsupported, image("bookworm"), [cell("pass")], None).klass == "unsupported-works"
    assert classify(policy, unsupported, image("bookworm"), [cell("fail")], None).klass == "unsupported-broken"
    assert classify(policy, supported, image("bookworm"), [cell("error")], None).klass == "error"
    refused = DeliveryRecord("h", "i", "sha256:x", False, 1, [], not_portable="the registry has no manifest for linux/arm64")
    assert classify(policy, supported, image("bookworm"), [], refused).klass == "not-portable"
    unreachable = DeliveryRecord("h", "i", "", False, 1, [], "dial tcp: i/o timeout", tries=3)
    assert classify(policy, supported, image("bookworm"), [], unreachable).klass == "error"
    assert classify(policy, supported, image("bookworm"), [], None).klass == "pending"
