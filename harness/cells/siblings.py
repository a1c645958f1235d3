"""Host-level blame from the matrix's own cells: the same image and scenario on the hosts that
differ from the failing cell's host in exactly one setting (engine, runtime, cgroup mode, LSM,
kernel, CPU model, release, engine CLI or pod). A sibling that passes implicates that setting; when no container swap
helped (the verdict said "the image or the scenario"), a single implicated setting becomes the
verdict's layer. It costs nothing: those cells ran anyway. Not confirmed by experiment: it says so.
"""

from __future__ import annotations

from dataclasses import replace

from harness.config.kinds.vm import VmHostSpec
from harness.config.model import Matrix
from harness.results.model import Layer, RunResults, Verdict

SETTINGS = {
    "engine": Layer.ENGINE,
    "runtime": Layer.RUNTIME,
    "cgroup": Layer.CGROUP,
    "lsm": Layer.LSM,
    "kernel_release": Layer.KERNEL,
    "cpu": Layer.CPU,
    "release": Layer.RELEASE,
    "via": Layer.ORCHESTRATION,
}


def _differences(a: VmHostSpec, b: VmHostSpec) -> list[str]:
    return [name for name in SETTINGS if getattr(a, name) != getattr(b, name)]


def siblings(matrix: Matrix, host: str) -> list[tuple[str, str]]:
    """(sibling host, the one setting it differs in) for a VM host of the matrix."""
    spec = matrix.host(host)
    if not isinstance(spec, VmHostSpec):
        return []
    found = []
    for other in matrix.vm_hosts():
        if other.name != host and other.arch == spec.arch and len(diff := _differences(spec, other)) == 1:
            found.append((other.name, diff[0]))
    return found


def variants_of(matrix: Matrix, host: str) -> list[tuple[str, str, VmHostSpec]]:
    """Hosts built like `host` with one setting changed, for a host the matrix has no sibling of
    (a sibling's cells are evidence enough, and cost nothing): (setting, what the report calls the
    change, the variant's spec). Cheapest first: those that only boot differently (cgroup mode,
    CPU model) before those that need another disk (no LSM, another release's kernel, the other
    engine)."""
    spec = matrix.host(host)
    if not isinstance(spec, VmHostSpec) or siblings(matrix, host) or spec.via != "engine":
        return []  # a pod host's own experiment runs the cell without the pod (cells/blame.py)
    order = matrix.policy.release_order
    newer = order[order.index(spec.release) + 1] if spec.release in order[:-1] else ""
    changes: list[tuple[str, object]] = [("cgroup", "v1" if spec.cgroup == "v2" else "v2")]
    if spec.cpu:
        changes.append(("cpu", None))
    if spec.lsm != "none":
        changes.append(("lsm", "none"))
    if spec.kernel_release != spec.release or newer:
        changes.append(("kernel_release", spec.release if spec.kernel_release != spec.release else newer))
    changes.append(("engine", "docker" if spec.engine == "podman" else "podman"))
    found = []
    for setting, value in changes:
        field = "kernel" if setting == "kernel_release" else setting  # the other engine keeps the runtime
        variant = replace(spec, name=f"{spec.name}--{setting.split('_')[0]}-{value or 'default'}", **{field: value})
        found.append((setting, f"{SETTINGS[setting]} {value or 'default'} instead of {getattr(spec, setting) or 'default'}", variant))
    return found


def with_siblings(matrix: Matrix, results: RunResults, verdict: Verdict) -> Verdict:
    """The verdict with what the failing cell's siblings showed, and a host-level layer when the
    container swaps found none and one setting alone separates passing siblings."""
    host, image, scenario = verdict.cells[0].split("/")
    lines, passing = [], set()
    for other, setting in siblings(matrix, host):
        cell = results.cells.get(f"{other}/{image}/{scenario}")
        if cell is None:
            continue
        mine, theirs = getattr(matrix.host(host), setting), getattr(matrix.host(other), setting)
        lines.append(f"{cell.outcome} on {other} ({SETTINGS[setting]} {theirs or 'default'} instead of {mine or 'default'})")
        if cell.outcome.passed:
            passing.add(setting)
    if not lines:
        return verdict
    refined = replace(verdict, siblings=lines)
    if verdict.layer == Layer.IMAGE and len(passing) == 1:
        setting = passing.pop()
        layer = SETTINGS[setting]
        summary = f"{layer}: passes on {', '.join(l.split(' on ', 1)[1] for l in lines if l.startswith(('pass', 'flaky')))}"
        refined = replace(refined, layer=layer, summary=summary, confirmed=None, confirmation="from the matrix's own cells on a sibling host; not confirmed by an experiment")
    return refined
