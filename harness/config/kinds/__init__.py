"""Host kinds, their matrix half: each kind's typed spec, its part of the matrix schema, and how an
entry of matrix.yaml becomes that spec. Registering a kind is one line in KINDS below, plus its
driver in harness/hosts/kinds/ (which the config layer must not import: imports run one way).
"""

from __future__ import annotations

import json
from importlib import resources

from harness.config.kinds.disk import DiskHostSpec
from harness.config.kinds.engine import EngineHostSpec
from harness.config.kinds.vm import VmHostSpec
from harness.config.model import HostKind, HostSpec, Machine

# The registration point: kind -> its spec class (which parses its entries and names its schema).
KINDS: dict[HostKind, type[HostSpec]] = {HostKind.VM: VmHostSpec, HostKind.DISK: DiskHostSpec, HostKind.ENGINE: EngineHostSpec}
# An entry without `kind:` is a VM host, built by the harness; or, when it names a disk `image:`,
# a VM booted from that disk.
DEFAULT_KIND = HostKind.VM
IMPLIED_BY = {HostKind.DISK: "image"}


def kind_of(entry: dict) -> HostKind:
    if "kind" in entry:
        return HostKind(entry["kind"])
    return next((kind for kind, key in IMPLIED_BY.items() if key in entry), DEFAULT_KIND)


def schema_part(kind: HostKind) -> dict:
    return json.loads(resources.files("harness.config.kinds").joinpath(f"{kind.value}.schema.json").read_text())


def host_schema() -> dict:
    """The schema of one host entry: the part of the entry's kind (if/then chain, so a mistake is
    reported against that kind's keys, not as "matches none of")."""
    schema: dict = {"$ref": f"#/$defs/{DEFAULT_KIND.value}_host"}
    for kind in reversed([k for k in KINDS if k != DEFAULT_KIND]):
        named = {"type": "object", "required": ["kind"], "properties": {"kind": {"const": kind.value}}}
        implied = [{"type": "object", "required": [IMPLIED_BY[kind]], "not": {"required": ["kind"]}}] if kind in IMPLIED_BY else []
        schema = {
            "if": {"anyOf": [named, *implied]} if implied else named,
            "then": {"$ref": f"#/$defs/{kind.value}_host"},
            "else": schema,
        }
    return schema


def with_host_kinds(schema: dict) -> dict:
    """The matrix schema with every registered kind's part in it."""
    defs = schema["$defs"]
    for kind in KINDS:
        defs[f"{kind.value}_host"] = schema_part(kind)
    defs["host"] = host_schema()
    return schema


def parse_host(entry: dict, defaults: Machine) -> HostSpec:
    kind = kind_of(entry)
    return KINDS[kind].from_entry(entry, defaults.merged(entry.get("machine", {})))
