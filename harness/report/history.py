"""Blame along time: a pair that turns red since the last good run, and what differs between the
two runs (the image's manifest, the host's facts, the harness's version). The cheapest blame of
all: it reads results only. `harness history DIR` renders the timeline of every results.json under
DIR; `harness run --history DIR` records, for each pair that passed in the last good run there and
fails now, what changed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.report.render import environment
from harness.results import store
from harness.results.model import HostRecord, PairClass, RunResults

GOOD = {PairClass.SUPPORTED_PASS, PairClass.UNSUPPORTED_WORKS}
BAD = {PairClass.SUPPORTED_FAIL, PairClass.UNSUPPORTED_BROKEN, PairClass.NOT_PORTABLE, PairClass.SUPPORTED_KNOWN_ISSUES}
# The host facts compared between runs, typed first, then some read as they were.
_TYPED = ("os", "kernel", "engine", "engine_version", "runtime", "runtime_version", "cgroup", "lsm")
_RAW = ("libseccomp", "glibc", "selinux_policy", "apparmor", "container_lsm_label", "container_seccomp",
        *(f"container_syscall_{name}" for name in ("clone3", "close_range", "openat2", "faccessat2", "statx")))


def load_runs(directory: Path) -> list[RunResults]:
    """Every readable results.json under `directory`, oldest first (unreadable ones are skipped)."""
    runs = {}
    for path in sorted(directory.rglob("results.json")):
        try:
            run = store.load(path)
        except store.ResultsError:
            continue
        runs[run.run_id] = run
    return sorted(runs.values(), key=lambda r: r.started_at)


def _host_facts(host: HostRecord | None) -> dict[str, str]:
    if host is None:
        return {}
    facts = {k: str(getattr(host.facts, k)) for k in _TYPED}
    return facts | {k: host.facts.raw.get(k, "") for k in _RAW}


def changes(good: RunResults, bad: RunResults, pair: str) -> list[str]:
    """What differs for `pair` (HOST/IMAGE) from the run where it was good to the one where it is not."""
    host, image = pair.split("/")
    found = []
    old_host, new_host = good.hosts.get(host), bad.hosts.get(host)
    arch = new_host.arch if new_host else ""
    old_image, new_image = good.images.get(image), bad.images.get(image)
    old_build = old_image.builds.get(arch) if old_image else None
    new_build = new_image.builds.get(arch) if new_image else None
    if old_build and new_build and old_build.manifest_digest != new_build.manifest_digest:
        found.append(f"image {image} for {arch}: manifest {old_build.manifest_digest[:19]} -> {new_build.manifest_digest[:19]}"
                     f" ({old_build.debian_version or '?'} -> {new_build.debian_version or '?'}, {old_build.package_count} -> {new_build.package_count} packages)")
    old_facts, new_facts = _host_facts(old_host), _host_facts(new_host)
    for key in (*_TYPED, *_RAW):
        if old_facts.get(key, "") != new_facts.get(key, ""):
            found.append(f"host {host} {key}: {old_facts.get(key) or '-'} -> {new_facts.get(key) or '-'}")
    if old_host and new_host and old_host.recipe_digest != new_host.recipe_digest:
        found.append(f"host {host} recipe: {old_host.recipe_digest[:12]} -> {new_host.recipe_digest[:12]}")
    old_cmds = {c.scenario: c.command for c in good.cells.values() if (c.host, c.image) == (host, image)}
    for cell in bad.cells.values():
        if (cell.host, cell.image) == (host, image) and cell.outcome.broken and old_cmds.get(cell.scenario) not in (None, cell.command):
            found.append(f"scenario {cell.scenario}: its command changed")
    if good.harness_version != bad.harness_version:
        found.append(f"harness {good.harness_version} -> {bad.harness_version}")
    return found or ["nothing the results record (the same image, host facts and harness): look at the run's own evidence"]


def since_last_good(history: list[RunResults], now: RunResults) -> dict[str, list[str]]:
    """For each pair that is bad now and was good in the latest earlier run where it ran: what changed."""
    found = {}
    for pair, result in now.pairs.items():
        if result.klass not in BAD:
            continue
        good = next((r for r in reversed(history) if r.run_id != now.run_id and pair in r.pairs and r.pairs[pair].klass in GOOD), None)
        if good is not None:
            found[pair] = [f"good in run {good.run_id} ({good.started_at})", *changes(good, now, pair)]
    return found


@dataclass(frozen=True)
class Timeline:
    runs: list[RunResults]
    pairs: list[str]
    first_bad: dict[str, tuple[str, list[str]]]  # pair -> (run id, what changed since the last good run)


def timeline(runs: list[RunResults]) -> Timeline:
    pairs = sorted({p for r in runs for p in r.pairs})
    first_bad = {}
    for pair in pairs:
        last_good = None
        for run in runs:
            klass = run.pairs[pair].klass if pair in run.pairs else None
            if klass in GOOD:
                last_good = run
            elif klass in BAD and last_good is not None:
                first_bad[pair] = (run.run_id, changes(last_good, run, pair))
                last_good = None
    return Timeline(runs, pairs, first_bad)


def render_history(directory: Path, out: Path) -> tuple[Path, Timeline]:
    found = timeline(load_runs(directory))
    latest = found.runs[-1] if found.runs else RunResults("none", str(directory), "", "")
    out.write_text(environment().get_template("history.html.j2").render(results=latest, timeline=found))
    return out, found
