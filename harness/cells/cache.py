"""The result cache: a cell's verdict keyed by everything that could change it.

The key is the digest of the host's part (its kind's driver says what that is: a VM's recipe and
machine settings, an engine's endpoint and options), the image's recipe, every file of the
scenario, and the harness version. `harness run --reuse` takes unchanged cells from here, so a run
in which nothing changed boots no VM at all. Errors are never cached (they said nothing about the
image); the verdict is stored as judged, before known issues, which are applied on reuse, so
editing that list needs no re-run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from harness import __version__
from harness.cache import digest_of
from harness.config.model import Matrix, ScenarioSpec
from harness.images.build import image_recipe
from harness.results.model import CellResult, DeliveryRecord, HostRecord, Outcome
from harness.results.store import write_atomically


def _scenario_digest(scenario: ScenarioSpec) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in scenario.path.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(scenario.path)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def cell_key(matrix: Matrix, host_part: dict, host_name: str, image_name: str, scenario_name: str) -> str:
    """host_part: what the host's kind driver says of it (HostKindDriver.cache_key)."""
    host, image, scenario = matrix.host(host_name), matrix.image(image_name), matrix.scenario(scenario_name)
    base = matrix.image(image.base) if image.base else None
    return digest_of(
        {
            "harness": __version__,
            "host": host_part,
            "image": image_recipe(image, host.arch or "native", matrix.mirror),
            "base": image_recipe(base, host.arch or "native", matrix.mirror) if base else None,
            "scenario": _scenario_digest(scenario),
            "scenario_name": scenario.name,  # where it is mounted in the container
            "scenario_meta": asdict(scenario.options) | {"needs": list(scenario.needs), "mode": scenario.mode, "timeout": scenario.timeout},
        }
    )


class ResultCache:
    def __init__(self, root: Path):
        self.dir = root / "results"

    def get(self, key: str) -> tuple[CellResult, HostRecord, DeliveryRecord | None] | None:
        try:
            data = json.loads((self.dir / f"{key}.json").read_text())
            delivery = DeliveryRecord.from_json(data["delivery"]) if data.get("delivery") else None
            return CellResult.from_json(data["cell"]), HostRecord.from_json(data["host"]), delivery
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent, or written by another version of the harness: run the cell

    def put(self, key: str, cell: CellResult, host: HostRecord, delivery: DeliveryRecord | None) -> None:
        if cell.outcome == Outcome.ERROR:
            return
        data = {"cell": asdict(cell), "host": asdict(host), "delivery": asdict(delivery) if delivery else None}
        write_atomically(self.dir / f"{key}.json", json.dumps(data))
