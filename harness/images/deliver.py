"""The payload a VM host receives at boot, on a read-only disk: image archives for its architecture and the scenarios."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness.config.model import ScenarioSpec
from harness.images.build import ImageBuild


def assemble_payload(directory: Path, images: list[ImageBuild], scenarios: list[ScenarioSpec], files: dict[str, str] | None = None) -> Path:
    """Lay out images/ and scenarios/ in `directory` (hard links where possible: archives are large),
    and `files` (path in the payload -> text: the engine's configuration of this boot)."""
    shutil.rmtree(directory, ignore_errors=True)
    (directory / "images").mkdir(parents=True)
    for image in images:
        dest = directory / "images" / f"{image.name}.oci.tar"
        try:
            os.link(image.archive, dest)
        except OSError:
            shutil.copyfile(image.archive, dest)
    for scenario in scenarios:
        if scenario.suite_root is None:
            shutil.copytree(scenario.path, directory / scenario.payload_dir, symlinks=False)
        else:  # the suite's whole directory, once: its tests call its helpers
            suite = directory / scenario.payload_dir.removesuffix(f"/{scenario.path.relative_to(scenario.suite_root)}")
            if not suite.exists():
                shutil.copytree(scenario.suite_root, suite, symlinks=False)
    for relative, text in (files or {}).items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_text(text)
    return directory
