"""The result cache: a cell's verdict keyed by everything that could change it.

The key is the digest of everything that ran: the host's part (its kind's driver says what that is:
a VM's recipe, boot files, guest scripts, kernel command line and machine; an engine's endpoint and
options), the image (its recipe and its base's; for an image given by reference, the manifest its
registry serves for the host's platform now), every file of the scenario and its settings, the
matrix's retries, and a digest of the harness's own source, so that a change in how cells are run
or judged invalidates every verdict. `harness run --reuse` takes unchanged cells from here, so a run
in which nothing changed boots no VM at all. Errors and engine errors are never cached (they said
nothing about the image), but for a delivery the host's engine refused as not portable; the verdict is stored as judged, before known issues, which are applied on reuse, so
editing that list needs no re-run.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Callable

from harness import __version__
from harness.cache import digest_of, tree_digest
from harness.config.model import HostSpec, Matrix
from harness.images.build import image_recipe
from harness.results.model import CellResult, DeliveryRecord, HostRecord
from harness.results.store import write_atomically


@cache
def harness_digest() -> str:
    """The harness's own source (code, schemas, templates), read once per process."""
    return tree_digest(Path(__file__).resolve().parents[1])


class CellKeys:
    """One run's cell keys: each host's, image's and scenario's part is read once per run. Read per
    cell, a VM host's part parsed recipes.yaml (8.5 ms): 20 s of the default matrix's 2,352 cells,
    against 0.29 s for all their keys now (measured 2026-12-05)."""

    def __init__(self, matrix: Matrix, host_part: Callable[[HostSpec], dict]):
        self.matrix = matrix
        self._host_part = host_part  # the host's kind driver's cache_key
        self._parts: dict[tuple[str, ...], dict] = {}

    def _once(self, what: tuple[str, ...], read: Callable[[], dict]) -> dict:
        if what not in self._parts:
            self._parts[what] = read()
        return self._parts[what]

    def key(self, host_name: str, image_name: str, scenario_name: str, image_digest: str = "") -> str:
        """image_digest: the manifest the host gets: for an image given by reference, what its
        registry serves for the host's platform (the caller asks no key at all when that cannot be
        read); for a built one, its cached build's ("" before it is built, so a verdict of another
        build is never taken)."""
        host = self.matrix.host(host_name)
        arch = host.arch or "native"
        return digest_of(
            {
                "harness": [__version__, harness_digest()],
                "host": self._once(("host", host_name), lambda: self._host_part(host)),
                **self._once(("image", image_name, arch), lambda: self._image_part(image_name, arch)),
                "manifest": image_digest,
                "retries": self.matrix.retries,
                **self._once(("scenario", scenario_name), lambda: self._scenario_part(scenario_name)),
            }
        )

    def _image_part(self, name: str, arch: str) -> dict:
        image = self.matrix.image(name)
        base = self.matrix.image(image.base) if image.base else None
        return {
            "image": image_recipe(image, arch, self.matrix.mirror),
            "base": image_recipe(base, arch, self.matrix.mirror) if base else None,
            "reference": [image.reference, image.tls_verify] if image.reference else None,
        }

    def _scenario_part(self, name: str) -> dict:
        scenario = self.matrix.scenario(name)
        return {
            "scenario": tree_digest(scenario.suite_root or scenario.path),  # a suite's test calls its helpers
            "expected_stdout": scenario.expected_stdout,
            "scenario_name": scenario.name,  # where it is mounted in the container
            "scenario_meta": asdict(scenario.options) | {"needs": list(scenario.needs), "mode": scenario.mode, "timeout": scenario.timeout},
        }


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
        # The host's, the engine's or the harness's trouble is run again; an image the host's engine
        # refused as not portable to it (no build for its platform) is the image's, and as lasting
        # as a verdict: the key holds what the host was offered.
        if cell.outcome.infrastructure and not (delivery is not None and delivery.not_portable):
            return
        data = {"cell": asdict(cell), "host": asdict(host), "delivery": asdict(delivery) if delivery else None}
        write_atomically(self.dir / f"{key}.json", json.dumps(data))
