"""Compare two runs: which host x image pairs changed class, and how (Transition)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from harness.report.render import environment
from harness.results.model import PairClass, RunResults


class Transition(StrEnum):
    """How a pair's class moved from one run to the next (the README's table); only a regression
    makes `harness diff` exit 1. Declared in the order the changes are listed."""

    REGRESSION = "regression"
    NOT_RUN = "not run this time"
    IMPROVEMENT = "improvement"
    CHANGED = "changed"
    ADDED = "added"
    REMOVED = "removed"


# What a supported pair that passed may not become: it fails, errors, is not portable, or passes
# only because a failure is listed as a known issue.
REGRESSED = {PairClass.SUPPORTED_FAIL, PairClass.ERROR, PairClass.NOT_PORTABLE, PairClass.SUPPORTED_KNOWN_ISSUES}
WORKING = {PairClass.SUPPORTED_PASS, PairClass.UNSUPPORTED_WORKS}


def transition(old: PairClass | None, new: PairClass | None) -> Transition:
    if old is None:
        return Transition.ADDED
    if new is None:
        return Transition.REMOVED
    if new == PairClass.PENDING:  # in the matrix, but no cell of it ran this time (-k, -x)
        return Transition.NOT_RUN
    if old == PairClass.SUPPORTED_PASS and new in REGRESSED:
        return Transition.REGRESSION
    if new in WORKING and old not in WORKING | {PairClass.PENDING}:
        return Transition.IMPROVEMENT
    return Transition.CHANGED


@dataclass(frozen=True)
class Change:
    pair: str
    old: PairClass | None  # None: the pair is not in that run
    new: PairClass | None

    @property
    def kind(self) -> Transition:
        return transition(self.old, self.new)

    @property
    def old_label(self) -> str:
        return self.old.label if self.old else "absent"

    @property
    def new_label(self) -> str:
        return self.new.label if self.new else "absent"


def changes(old: RunResults, new: RunResults) -> list[Change]:
    out = []
    for key in sorted(set(old.pairs) | set(new.pairs)):
        before = old.pairs[key].klass if key in old.pairs else None
        after = new.pairs[key].klass if key in new.pairs else None
        if before != after:
            out.append(Change(key, before, after))
    order = list(Transition)
    return sorted(out, key=lambda c: (order.index(c.kind), c.pair))


def why(new: RunResults, change: Change) -> str:
    """The blame verdicts of the pair's failing cells in the later run, for a regression's line."""
    host, image = change.pair.split("/")
    verdicts = {v.summary for v in new.verdicts.values() for key in v.cells if key.startswith(f"{host}/{image}/")}
    return "; ".join(sorted(verdicts))


def as_text(found: list[Change], new: RunResults | None = None) -> str:
    if not found:
        return "no pair changed class"
    lines = []
    for c in found:
        reason = why(new, c) if new is not None else ""
        lines.append(f"{c.kind.value:<18}{c.pair}: {c.old_label} -> {c.new_label}" + (f" (why: {reason})" if reason else ""))
    return "\n".join(lines)


def render_diff(old: RunResults, new: RunResults, out: Path) -> Path:
    out.write_text(environment().get_template("diff.html.j2").render(results=new, old=old, changes=changes(old, new), why=why))
    return out
