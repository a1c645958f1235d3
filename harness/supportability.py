"""The vendor's policy applied to each host x image pair: supported or not, and the pair's class."""

from __future__ import annotations

from harness.config.model import HostKind, Policy
from harness.results.model import CellResult, DeliveryRecord, HostRecord, ImageRecord, Outcome, PairClass, PairResult


def is_supported(policy: Policy, host: HostRecord, image: ImageRecord) -> tuple[bool, str]:
    """(supported, why) for an image on a host, per the policy's rule, includes and excludes."""
    for pattern in policy.exclude:
        if pattern.matches(host.name, image.name):
            return False, f"excluded by policy ({pattern.host} x {pattern.image})"
    for pattern in policy.include:
        if pattern.matches(host.name, image.name):
            return True, f"included by policy ({pattern.host} x {pattern.image})"
    if host.kind == HostKind.ENGINE:
        return False, "engine hosts are supported only where the policy includes them"
    if host.arch not in policy.architectures:
        return False, f"architecture {host.arch} is not supported"
    order = list(policy.release_order)
    if host.release not in order or image.release not in order:
        return False, f"release {host.release if host.release not in order else image.release} is not in the policy's release order"
    newer_by = order.index(host.release) - order.index(image.release)
    if newer_by in policy.host_newer_by:
        return True, f"{image.release} images are supported on {host.release} hosts"
    return False, f"{image.release} images are not supported on {host.release} hosts"


def pair_status(cells: list[CellResult], delivery: DeliveryRecord | None) -> str:
    if delivery is not None and not delivery.ok:
        return "not-portable"
    if not cells:
        return "pending"
    if any(c.outcome.broken for c in cells):  # the outcomes that count against the image
        return "broken"
    if any(c.outcome == Outcome.ERROR for c in cells):
        return "error"
    return "works"


def classify(policy: Policy, host: HostRecord, image: ImageRecord, cells: list[CellResult], delivery: DeliveryRecord | None) -> PairResult:
    supported, reason = is_supported(policy, host, image)
    status = pair_status(cells, delivery)
    if status in ("not-portable", "error", "pending"):
        klass = PairClass(status)
    elif supported:
        klass = PairClass.SUPPORTED_PASS if status == "works" else PairClass.SUPPORTED_FAIL
    else:
        klass = PairClass.UNSUPPORTED_WORKS if status == "works" else PairClass.UNSUPPORTED_BROKEN
    return PairResult(host.name, image.name, supported, reason, status, klass)
