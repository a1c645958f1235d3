"""The run's verdicts in its JUnit file: each blamed cell's testcase gets the verdict that covers
it as a property, so a CI system's test view says why a cell failed, not only that it did.

Verdicts are made after their host's last cell, when that cell's testcase is already written, so
the file is amended once junitxml has written it (the controller only). Testcases are matched by
the cell each one records (`harness_cell`), not by their names.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.results.model import Verdict

CELL_PROPERTY = "harness_cell"
BLAME_PROPERTY = "harness_blame"


def blame_line(verdict: Verdict) -> str:
    sure = {True: " (confirmed)", False: " (NOT confirmed)", None: ""}[verdict.confirmed]
    return verdict.summary + sure


def annotate(path: Path, verdicts: dict[str, Verdict]) -> int:
    """Add each covered cell's verdict to its testcase; returns how many testcases got one."""
    by_cell = {cell: verdict for verdict in verdicts.values() for cell in verdict.cells}
    if not by_cell or not path.is_file():
        return 0
    tree = ET.parse(path)
    done = 0
    for case in tree.iter("testcase"):
        properties = case.find("properties")
        if properties is None:
            continue
        cell = next((p.get("value", "") for p in properties.iter("property") if p.get("name") == CELL_PROPERTY), "")
        try:
            said = json.loads(cell)
            key = f"{said['host']}/{said['image']}/{said['scenario']}"
        except (ValueError, KeyError, TypeError):
            continue
        if key in by_cell and not any(p.get("name") == BLAME_PROPERTY for p in properties.iter("property")):
            ET.SubElement(properties, "property", name=BLAME_PROPERTY, value=blame_line(by_cell[key]))
            done += 1
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return done
