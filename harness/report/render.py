"""Render the HTML supportability matrix from results (and nothing else) with jinja2, autoescaped.

matrix.html is the QE view: every pair, its class, scenarios, evidence, filters. The vendor-facing
statement (support.html, .csv, .json) is written by `harness publish` (report/publish.py).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from harness.results.model import CellResult, Outcome, PairClass, RunResults
from harness.results.store import write_atomically


@cache
def environment() -> Environment:
    """One per process: a live report renders again every few seconds, and a new environment
    compiles the templates again each time (0.1 s)."""
    # autoescape=True for every template: container output is untrusted and ends up in these pages.
    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=True, undefined=StrictUndefined)
    env.globals["CLASSES"] = list(PairClass)  # in the legend's and filter's order
    env.globals["age_days"] = age_days
    env.filters["mib"] = size_mib
    # Lines as one plain string, escaped once where it is output: Jinja's join filter escapes each
    # item and wraps the result, which cost 0.6 s of 100,000 cells' render.
    env.filters["lines"] = "\n".join
    return env


def age_days(created: str, now: str) -> int | None:
    """Whole days from an image's build date to the run's start (None when either is unknown)."""
    try:
        return (datetime.fromisoformat(now) - datetime.fromisoformat(created)).days
    except ValueError:
        return None


def size_mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def anchor(*parts: str) -> str:
    return "cell-" + "--".join(parts)


def matrix_view(results: RunResults) -> dict:
    """The grid the templates draw: images as rows, hosts as columns, scenarios inside each pair."""
    by_pair: dict[tuple[str, str], list[CellResult]] = {}
    for cell in results.cells.values():
        by_pair.setdefault((cell.host, cell.image), []).append(cell)
    rows = []
    for image in results.images.values():
        row = []
        for host in results.hosts.values():
            key = f"{host.name}/{image.name}"
            pair = results.pairs.get(key)
            row.append(
                {
                    "host": host,
                    "image": image,
                    "cells": sorted(by_pair.get((host.name, image.name), []), key=lambda c: c.scenario),
                    "klass": pair.klass if pair else PairClass.PENDING,
                    "pair": pair,
                    "anchor": anchor(host.name, image.name),
                    "delivery": results.deliveries.get(key),
                }
            )
        rows.append({"image": image, "cells": row})
    classes: dict[PairClass, int] = {}
    for pair in results.pairs.values():
        classes[pair.klass] = classes.get(pair.klass, 0) + 1
    outcomes: dict[Outcome, int] = {}
    for cell in results.cells.values():
        outcomes[cell.outcome] = outcomes.get(cell.outcome, 0) + 1
    hosts = list(results.hosts.values())
    return {
        "hosts": hosts,
        "rows": rows,
        "classes": classes,
        "outcomes": {o: outcomes[o] for o in Outcome if o in outcomes},  # the enum's order: most alarming first
        "filters": {
            "arch": sorted({h.arch for h in hosts if h.arch}),
            "release": sorted({h.release for h in hosts if h.release}),
            "engine": sorted({h.engine for h in hosts if h.engine}),
        },
    }


def render_report(results: RunResults, reports: Path, progress: str = "") -> Path:
    """Write matrix.html into `reports` (atomically: a reader never sees half a page, as the run
    renders it again while cells finish), and return its path. `progress`: how far a run in
    progress is ("120 of 2352 cells, ETA 14:05")."""
    reports.mkdir(parents=True, exist_ok=True)
    env = environment()
    view = matrix_view(results)
    out = reports / "matrix.html"
    # Each cell's verdict, looked up once (a search per cell cost 1.4 s of 100,000 cells' render).
    why = {cell: verdict for verdict in reversed(list(results.verdicts.values())) for cell in verdict.cells}  # the first that covers it
    write_atomically(out, env.get_template("matrix.html.j2").render(results=results, view=view, progress=progress, why=why))
    return out
