"""Compare two runs: which host x image pairs changed class (a regression is supported-pass -> anything else)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.report.render import _environment
from harness.results.model import PairClass, RunResults


@dataclass(frozen=True)
class Change:
    pair: str
    old: PairClass | None  # None: the pair is not in that run
    new: PairClass | None

    @property
    def kind(self) -> str:
        if self.old is None or self.new is None:
            return "added" if self.old is None else "removed"
        return "regression" if self.new.rank > self.old.rank else "improvement"

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
    return sorted(out, key=lambda c: (c.kind != "regression", c.pair))


def as_text(found: list[Change]) -> str:
    if not found:
        return "no pair changed class"
    return "\n".join(f"{c.kind:12} {c.pair}: {c.old_label} -> {c.new_label}" for c in found)


def render_diff(old: RunResults, new: RunResults, out: Path) -> Path:
    out.write_text(_environment().get_template("diff.html.j2").render(results=new, old=old, changes=changes(old, new)))
    return out
