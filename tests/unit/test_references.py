"""Image references: how a guest reaches a registry on this machine, and how a reference splits."""

from __future__ import annotations

import pytest

from harness.registry.inspect import split_reference
from harness.registry.publish import guest_reference


@pytest.mark.parametrize(
    "reference, seen_by_guest",
    [
        ("127.0.0.1:8008/elsewhere/debian:12", "10.0.2.2:8008/elsewhere/debian:12"),
        ("localhost:5000/a/b@sha256:" + "0" * 64, "10.0.2.2:5000/a/b@sha256:" + "0" * 64),
        ("quay.io/vendor/app:1.2", "quay.io/vendor/app:1.2"),
    ],
)
def test_loopback_registries_are_the_gateway_for_guests(reference, seen_by_guest):
    assert guest_reference(reference) == seen_by_guest


def test_split_reference():
    assert split_reference("127.0.0.1:8008/elsewhere/debian:12") == ("127.0.0.1:8008", "elsewhere/debian", "12")
    assert split_reference("quay.io/vendor/app") == ("quay.io", "vendor/app", "latest")
    assert split_reference("r.example/a@sha256:" + "f" * 64) == ("r.example", "a", "sha256:" + "f" * 64)
