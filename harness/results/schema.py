"""results.json's JSON Schema, with the value lists of its enums taken from the enums themselves
(harness/results/model.py), so an outcome or a class is defined in one place."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from harness.results.model import ENUMS, Layer


@cache
def results_schema() -> dict:
    schema = json.loads(resources.files("harness.results").joinpath("results.schema.json").read_text())
    for name, enum in {**ENUMS, "layer": Layer}.items():
        schema["$defs"][name] = {"enum": [member.value for member in enum], "description": " ".join(enum.__doc__.split()).split(". ")[0]}
    return schema
