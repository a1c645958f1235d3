"""Compare two runs: which host x image pairs changed class (a regression is supported-pass -> anything else)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.report.render import CLASS_LABELS, _environment
from harness.results.model import RunResults

# Classes from best to worst for a vendor; moving right is a regression.
RANK = {"supported-pass": 0, "unsupported-works": 1, "pending": 2, "error": 3, "unsupported-broken": 4, "not-portable": 5, "supported-fail": 6}


@dataclass(frozen=True)
class Change:
    pair: str
    old: str
    new: str

    @property
    def kind(self) -> str:
        if self.old == "absent" or self.new == "absent":
            return "added" if self.old == "absent" else "removed"
        return "regression" if RANK.get(self.new, 0) > RANK.get(self.old, 0) else "improvement"


def changes(old: RunResults, new: RunResults) -> list[Change]:
    out = []
    for key in sorted(set(old.pairs) | set(new.pairs)):
        before = old.pairs[key].klass if key in old.pairs else "absent"
        after = new.pairs[key].klass if key in new.pairs else "absent"
        if before != after:
            out.append(Change(key, before, after))
    return sorted(out, key=lambda c: (c.kind != "regression", c.pair))


def as_text(found: list[Change]) -> str:
    if not found:
        return "no pair changed class"
    label = lambda k: CLASS_LABELS.get(k, k)  # noqa: E731
    return "\n".join(f"{c.kind:12} {c.pair}: {label(c.old)} -> {label(c.new)}" for c in found)


def render_diff(old: RunResults, new: RunResults, out: Path) -> Path:
    out.write_text(_environment().get_template("diff.html.j2").render(results=new, old=old, changes=changes(old, new)))
    return out
