"""The published support statement: what a vendor tells its customers, from a run's results.

Four tiers, as vendors word them: supported; supported with known issues (each a footnote with its
bug and note); works, not supported; not supported. Written as support.html, support.csv and
support.json, and only when no supported pair fails, errors, is flaky or went untested: a
statement is published only when each of its verdicts is exactly true. Failing pairs belong on the
QE page (matrix.html).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from harness.report.render import environment
from harness.results.model import Outcome, PairClass, PairResult, RunResults

# Debian's releases, oldest first: the order of the statement's column groups.
RELEASE_ORDER = ("buster", "bullseye", "bookworm", "trixie", "forky", "sid")


class Tier(StrEnum):
    SUPPORTED = "supported"
    KNOWN_ISSUES = "supported with known issues"
    WORKS = "works, not supported"
    NOT_SUPPORTED = "not supported"


# A supported pair in one of these classes stops the publication, saying why.
BLOCKING = {
    PairClass.SUPPORTED_FAIL: "fails",
    PairClass.SUPPORTED_FLAKY: "is flaky (a cell failed before it passed, or a known issue's cell passes now)",
    PairClass.ERROR: "errored (the host, the engine or the harness)",
    PairClass.NOT_PORTABLE: "is not portable",
    PairClass.NOT_TESTED: "was not tested (no scenario applied to the image)",
    PairClass.PENDING: "was not run",
}


@dataclass(frozen=True)
class Footnote:
    number: int
    bug: str
    note: str
    cells: tuple[str, ...]


@dataclass(frozen=True)
class Entry:
    image: str
    host: str
    release: str
    arch: str
    engine: str
    tier: Tier
    footnotes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Statement:
    run_id: str
    tested: str  # when the run started and finished
    hosts: tuple[str, ...]  # in column order: grouped by release, then architecture
    images: tuple[str, ...]
    entries: tuple[Entry, ...]
    footnotes: tuple[Footnote, ...] = field(default_factory=tuple)

    def entry(self, image: str, host: str) -> Entry | None:
        return next((e for e in self.entries if e.image == image and e.host == host), None)

    def groups(self, results: RunResults) -> list[tuple[str, int]]:
        """(release, number of host columns) in column order, for the header's first row."""
        out: list[tuple[str, int]] = []
        for host in self.hosts:
            release = results.hosts[host].release or "engine hosts"
            if out and out[-1][0] == release:
                out[-1] = (release, out[-1][1] + 1)
            else:
                out.append((release, 1))
        return out


def blockers(results: RunResults) -> list[str]:
    """The supported pairs that stop the publication, one line each."""
    return [f"{key}: supported, but it {BLOCKING[p.klass]}" for key, p in sorted(results.pairs.items()) if p.supported and p.klass in BLOCKING]


def _tier(pair: PairResult) -> Tier:
    if pair.supported:
        return Tier.KNOWN_ISSUES if pair.klass == PairClass.SUPPORTED_KNOWN_ISSUES else Tier.SUPPORTED
    return Tier.WORKS if pair.klass == PairClass.UNSUPPORTED_WORKS else Tier.NOT_SUPPORTED


def _column_order(results: RunResults, host: str) -> tuple:
    record = results.hosts[host]
    release = RELEASE_ORDER.index(record.release) if record.release in RELEASE_ORDER else len(RELEASE_ORDER)
    return (release, record.release, record.arch, host)


def statement(results: RunResults) -> Statement:
    hosts = tuple(sorted(results.hosts, key=lambda h: _column_order(results, h)))
    notes: dict[tuple[str, str], list[str]] = {}
    entries = []
    for key, pair in sorted(results.pairs.items()):
        tier = _tier(pair)
        numbers = []
        if tier == Tier.KNOWN_ISSUES:
            for cell in sorted(results.cells.values(), key=lambda c: c.key):
                if (cell.host, cell.image) == (pair.host, pair.image) and cell.outcome == Outcome.KNOWN_ISSUE:
                    note = cell.message.removeprefix(f"known issue {cell.bug}: ")
                    if (verdict := results.verdict_of(cell.key)) is not None:
                        note += f" (which layer: {verdict.summary}{', confirmed' if verdict.confirmed else ''})"
                    notes.setdefault((cell.bug, note), []).append(cell.key)
                    numbers.append(list(notes).index((cell.bug, note)) + 1)
        record = results.hosts[pair.host]
        entries.append(Entry(pair.image, pair.host, record.release, record.arch, record.engine, tier, tuple(sorted(set(numbers)))))
    footnotes = tuple(Footnote(i, bug, note, tuple(cells)) for i, ((bug, note), cells) in enumerate(notes.items(), 1))
    tested = f"{results.started_at} to {results.finished_at}" if results.finished_at else results.started_at
    return Statement(results.run_id, tested, hosts, tuple(results.images), tuple(entries), footnotes)


def as_csv(found: Statement) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["image", "host", "release", "arch", "engine", "tier", "known issues"])
    by_number = {f.number: f for f in found.footnotes}
    for e in found.entries:
        writer.writerow([e.image, e.host, e.release, e.arch, e.engine, e.tier.value, " ".join(by_number[n].bug for n in e.footnotes)])
    return out.getvalue()


def as_json(found: Statement) -> str:
    return json.dumps(asdict(found), indent=1) + "\n"


def publish(results: RunResults, out: Path) -> list[Path]:
    """Write support.html, support.csv and support.json into `out`; the caller checks blockers first."""
    out.mkdir(parents=True, exist_ok=True)
    found = statement(results)
    html = environment().get_template("support.html.j2").render(results=results, statement=found, Tier=Tier)
    paths = [out / "support.html", out / "support.csv", out / "support.json"]
    for path, text in zip(paths, (html, as_csv(found), as_json(found))):
        path.write_text(text)
    return paths
