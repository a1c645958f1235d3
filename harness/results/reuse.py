"""The result cache: a cell's verdict keyed by everything that could change it.

The key is the digest of the host's recipe and machine settings, the image's recipe, every file of
the scenario, and the harness version. `harness run --reuse` takes unchanged cells from here, so a
run in which nothing changed boots no VM at all. Errors are never cached (they said nothing about
the image); known issues are applied after lookup, so editing that list needs no re-run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from harness import __version__
from harness.cache import digest_of
from harness.config.model import HostSpec, ImageSpec, ScenarioSpec
from harness.hosts.build import host_recipe
from harness.images.build import image_recipe
from harness.results.model import CellResult, DeliveryRecord, HostRecord
from harness.results.store import write_atomically


def _scenario_digest(scenario: ScenarioSpec) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in scenario.path.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(scenario.path)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def cell_key(host: HostSpec, image: ImageSpec, scenario: ScenarioSpec, vms_dir: Path, mirror: str, base: ImageSpec | None = None) -> str:
    """base: the image `image` is layered on, whose recipe is part of its own."""
    if host.kind == "vm":
        host_part = {"recipe": digest_of(host_recipe(host, vms_dir)), "cpu": host.cpu, "cmdline": host.kernel_cmdline, "machine": asdict(host.machine)}
    else:
        host_part = {"endpoint": host.endpoint, "local": host.local, "runtime": host.runtime, "ulimits": host.ulimits}
    return digest_of(
        {
            "harness": __version__,
            "host": host_part,
            "image": image_recipe(image, host.arch or "native", mirror),
            "base": image_recipe(base, host.arch or "native", mirror) if base else None,
            "scenario": _scenario_digest(scenario),
            "scenario_meta": asdict(scenario.options) | {"needs": list(scenario.needs), "mode": scenario.mode, "timeout": scenario.timeout},
        }
    )


class ResultCache:
    def __init__(self, root: Path):
        self.dir = root / "results"

    def get(self, key: str) -> tuple[CellResult, HostRecord, DeliveryRecord | None] | None:
        try:
            data = json.loads((self.dir / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        delivery = DeliveryRecord(**data["delivery"]) if data.get("delivery") else None
        return CellResult.from_json(data["cell"]), HostRecord(**data["host"]), delivery

    def put(self, key: str, cell: CellResult, host: HostRecord, delivery: DeliveryRecord | None) -> None:
        if cell.outcome == "error":
            return
        data = {"cell": asdict(cell), "host": asdict(host), "delivery": asdict(delivery) if delivery else None}
        write_atomically(self.dir / f"{key}.json", json.dumps(data))
