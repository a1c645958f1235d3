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
    """What the pair's cells observed, most telling first."""
    if delivery is not None and not delivery.ok:
        return "not-portable" if delivery.not_portable else "error"
    if not cells:
        return "pending"
    outcomes = {c.outcome for c in cells}
    if any(o.broken for o in outcomes):  # the outcomes that count against the image
        return "broken"
    if any(o.infrastructure for o in outcomes):
        return "error"
    if outcomes == {Outcome.NOT_APPLICABLE}:
        return "not-tested"
    if outcomes & {Outcome.FLAKY, Outcome.FIXED}:
        return "flaky"
    if Outcome.KNOWN_ISSUE in outcomes:
        return "known-issues"
    return "works"


# (supported, status) -> class; the statuses that are a class of their own whatever the policy says
# are not-portable, error, pending and not-tested.
_SUPPORTED = {"works": PairClass.SUPPORTED_PASS, "flaky": PairClass.SUPPORTED_FLAKY, "known-issues": PairClass.SUPPORTED_KNOWN_ISSUES, "broken": PairClass.SUPPORTED_FAIL}
_UNSUPPORTED = {"works": PairClass.UNSUPPORTED_WORKS, "flaky": PairClass.UNSUPPORTED_WORKS, "known-issues": PairClass.UNSUPPORTED_BROKEN, "broken": PairClass.UNSUPPORTED_BROKEN}


def classify(policy: Policy, host: HostRecord, image: ImageRecord, cells: list[CellResult], delivery: DeliveryRecord | None) -> PairResult:
    supported, reason = is_supported(policy, host, image)
    status = pair_status(cells, delivery)
    klass = (_SUPPORTED if supported else _UNSUPPORTED).get(status) or PairClass(status)
    return PairResult(host.name, image.name, supported, reason, status, klass)
