"""Render the HTML supportability matrix from results (and nothing else) with jinja2, autoescaped."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from harness.results.model import CellResult, RunResults

# Worst first: a cell shows the worst outcome among its scenarios.
SEVERITY = {"error": 4, "timeout": 3, "fail": 2, "pass": 1}


def _environment() -> Environment:
    # autoescape=True for every template: container output is untrusted and ends up in this page.
    return Environment(loader=PackageLoader("harness.report", "templates"), autoescape=True, undefined=StrictUndefined)


def cell_outcome(cells: list[CellResult]) -> str:
    if not cells:
        return "pending"
    return max((c.outcome for c in cells), key=lambda o: SEVERITY.get(o, 0))


def anchor(*parts: str) -> str:
    return "cell-" + "--".join(parts)


def matrix_view(results: RunResults) -> dict:
    """The grid the template draws: images as rows, hosts as columns, scenarios inside each cell."""
    by_pair: dict[tuple[str, str], list[CellResult]] = {}
    for cell in results.cells.values():
        by_pair.setdefault((cell.host, cell.image), []).append(cell)
    images = results.images or sorted({c.image for c in results.cells.values()})
    hosts = list(results.hosts)
    rows = []
    for image in images:
        row = []
        for host in hosts:
            cells = sorted(by_pair.get((host, image), []), key=lambda c: c.scenario)
            delivery = results.deliveries.get(f"{host}/{image}")
            row.append({"host": host, "image": image, "cells": cells, "outcome": cell_outcome(cells), "anchor": anchor(host, image), "delivery": delivery})
        rows.append({"image": image, "cells": row})
    counts: dict[str, int] = {}
    for cell in results.cells.values():
        counts[cell.outcome] = counts.get(cell.outcome, 0) + 1
    return {"hosts": [results.hosts[h] for h in hosts], "rows": rows, "counts": counts}


def render_report(results: RunResults, reports: Path) -> Path:
    reports.mkdir(parents=True, exist_ok=True)
    template = _environment().get_template("matrix.html.j2")
    out = reports / "matrix.html"
    out.write_text(template.render(results=results, view=matrix_view(results)))
    return out
