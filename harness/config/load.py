"""Read matrix.yaml, validate it with JSON Schema, and report mistakes as `file:line: path: message`."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from harness.config.kinds import parse_host, with_host_kinds
from harness.config.kinds.disk import DiskHostSpec, disk_problem
from harness.config.kinds.vm import VmHostSpec
from harness.config.model import (
    DEFAULT_MIRROR,
    CellPattern,
    HypervisorSpec,
    LOCAL_HYPERVISOR,
    ImageSpec,
    KnownIssue,
    Machine,
    Matrix,
    Policy,
    ScenarioOptions,
    ScenarioSpec,
)
from harness.config.registries import AuthFileError, RegistryAccess
from harness.config.suites import load_suite


# Where the harness's own vms/ and scenarios/ are (a source checkout, or an editable install of one),
# used by a matrix that has none of its own beside it.
HARNESS_HOME = Path(__file__).resolve().parents[2]


class MatrixError(Exception):
    """A mistake in the user's matrix; str() is one line per problem, ready to print."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def schema(name: str = "schema.json") -> dict:
    """A schema of the config package; the matrix's with every host kind's part in it."""
    loaded = json.loads(resources.files("harness.config").joinpath(name).read_text())
    return with_host_kinds(loaded) if name == "schema.json" else loaded


def _format_path(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _node_at(root: yaml.Node, path: Iterable[Any]) -> tuple[yaml.Node, yaml.Node | None]:
    """The YAML node at a JSON path, and the key node that names it (for mapping members)."""
    node, key_node = root, None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    node, key_node = v, k
                    break
            else:
                return node, key_node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node, key_node = node.value[part], None
        else:
            return node, key_node
    return node, key_node


class _Located:
    """Turns a JSON path into `file:line` using the composed YAML node tree."""

    def __init__(self, display: str, root: yaml.Node):
        self.display, self.root = display, root

    def line(self, path: list[Any]) -> int:
        node, key = _node_at(self.root, path)
        return (key or node).start_mark.line + 1

    def problem(self, path: list[Any], message: str) -> str:
        where = _format_path(path)
        return f"{self.display}:{self.line(path)}: {where + ': ' if where else ''}{message}"


def _schema_problem(loc: _Located, error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return loc.problem(path, f"{error.instance!r} is not one of {allowed}")
    if error.validator == "additionalProperties":
        cannot = error.schema.get("x-cannot-apply", {})  # a kind's settings that make no sense on it, and why
        if said := sorted(set(error.instance) & set(cannot)):
            return loc.problem(path + said[:1], f"{said[0]}: {cannot[said[0]]}")
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        return loc.problem(path + extra[:1], f"unknown key (allowed: {', '.join(known)})")
    if error.validator == "required":
        missing = [r for r in error.validator_value if r not in error.instance]
        return loc.problem(path, f"missing required key {missing[0]!r}")
    if error.validator == "anyOf" and all(set(branch) == {"required"} for branch in error.validator_value):
        keys = " or ".join(repr(b["required"][0]) for b in error.validator_value)
        return loc.problem(path, f"needs {keys}")
    if error.validator == "uniqueItems":
        return loc.problem(path, f"{error.instance!r} repeats a value")
    if error.validator == "minimum":
        return loc.problem(path, f"{error.instance!r} is negative")
    if error.validator == "pattern" and path and path[-1] == "bug":
        return loc.problem(path, f"{error.instance!r} is not an http(s) link")
    if error.validator == "const" and path == ["version"]:
        return loc.problem(path, f"unsupported matrix version {error.instance!r} (this harness reads version 1)")
    return loc.problem(path, error.message)


def _display_name(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def load_matrix(path: str | os.PathLike) -> Matrix:
    """Load and validate a matrix file; raise MatrixError naming file, line and key on any mistake."""
    path = Path(path).resolve()
    display = _display_name(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise MatrixError([f"{display}: cannot read matrix: {exc.strerror}"]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise MatrixError([f"{display}:{line}: YAML syntax error: {exc.problem or exc.context}"]) from None
    if root is None:
        raise MatrixError([f"{display}:1: the matrix is empty"])
    loc = _Located(display, root)
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (loc.line(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        raise MatrixError([_schema_problem(loc, e) for e in errors])
    return _build(path, data, loc)


def _duplicates(items: list[dict], kind: str, loc: _Located) -> list[str]:
    seen: set[str] = set()
    problems = []
    for i, item in enumerate(items):
        if item["name"] in seen:
            problems.append(loc.problem([f"{kind}s", i, "name"], f"duplicate {kind} name {item['name']!r}"))
        seen.add(item["name"])
    return problems


def _load_scenario(directory: Path, name: str, index: int, loc: _Located) -> ScenarioSpec | str:
    scenario_dir = directory / name
    script = scenario_dir / "run"
    meta_file = scenario_dir / "scenario.yaml"
    where = ["scenarios", index]
    if not scenario_dir.is_dir():
        return loc.problem(where, f"scenario {name!r} not found: no directory {_display_name(scenario_dir)}")
    if not script.is_file() or not os.access(script, os.X_OK):
        return loc.problem(where, f"scenario {name!r} has no executable {_display_name(script)}")
    if not meta_file.is_file():
        return loc.problem(where, f"scenario {name!r} has no {_display_name(meta_file)} (purpose, dimension, needs, timeout)")
    try:
        meta = yaml.safe_load(meta_file.read_text()) or {}
    except yaml.YAMLError as exc:
        return loc.problem(where, f"scenario {name!r}: {_display_name(meta_file)} is not valid YAML: {exc}")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema("scenario.schema.json")).iter_errors(meta))
    if error is not None:
        key = _format_path(error.absolute_path) or "(top)"
        return loc.problem(where, f"scenario {name!r}: {_display_name(meta_file)}: {key}: {error.message}")
    options = meta.get("options", {})
    return ScenarioSpec(
        name=name,
        path=scenario_dir,
        script=script,
        purpose=meta["purpose"],
        timeout=float(meta["timeout"]) if "timeout" in meta else None,
        dimension=meta["dimension"],
        needs=tuple(meta.get("needs", ())),
        mode=meta.get("mode", "run"),
        init=tuple(meta.get("init", ())),
        options=ScenarioOptions(
            memory=options.get("memory"),
            pids_limit=options.get("pids_limit"),
            user=options.get("user"),
            env=tuple(sorted(options.get("env", {}).items())),
            systemd=options.get("systemd", False),
            cap_add=tuple(options.get("cap_add", ())),
            read_only=options.get("read_only", False),
        ),
    )


def _pattern(data: dict) -> CellPattern:
    return CellPattern(data.get("host", "*"), data.get("image", "*"), data.get("scenario", "*"))


def _policy(data: dict) -> Policy:
    default = Policy()
    return Policy(
        release_order=tuple(data.get("release_order", default.release_order)),
        host_newer_by=tuple(data.get("host_newer_by", default.host_newer_by)),
        architectures=tuple(data.get("architectures", default.architectures)),
        include=tuple(_pattern(p) for p in data.get("include", ())),
        exclude=tuple(_pattern(p) for p in data.get("exclude", ())),
    )


def _images(entries: list[dict], loc: _Located, directory: Path) -> tuple[tuple[ImageSpec, ...], list[str]]:
    """The candidate images; a layered one takes its base's release, command and architectures;
    archives are found relative to the matrix's directory."""
    by_name = {i["name"]: i for i in entries}
    problems, images = [], []
    for index, i in enumerate(entries):
        base = by_name.get(i.get("base", ""), {})
        if "base" in i:
            where = ["images", index, "base"]
            if not base:
                problems.append(loc.problem(where, f"image {i['name']!r}: base {i['base']!r} is not an image of this matrix"))
            elif "base" in base:
                problems.append(loc.problem(where, f"image {i['name']!r}: base {i['base']!r} is itself layered; layer on a base image"))
            elif i.get("release", base["release"]) != base["release"]:
                problems.append(loc.problem(where, f"image {i['name']!r}: release {i['release']!r} differs from its base's ({base['release']!r})"))
        given = [k for k in ("reference", "oci-archive", "docker-archive") if k in i]
        if len(given) > 1:
            problems.append(loc.problem(["images", index, given[1]], f"image {i['name']!r}: give one of reference, oci-archive, docker-archive, not {' and '.join(given)}"))
        if given and {"base", "packages", "updates", "arches", "cmd"} & set(i):
            extra = sorted({"base", "packages", "updates", "arches", "cmd"} & set(i))[0]
            how = "given by reference (it is pulled as it is)" if given[0] == "reference" else f"taken from a file ({given[0]}: it is published as it is)"
            problems.append(loc.problem(["images", index, extra], f"image {i['name']!r}: {extra!r} does not apply to an image {how}"))
        kind = next((k for k in ("oci-archive", "docker-archive") if k in i), "")
        archive = (directory / i[kind]).resolve() if kind else None
        if archive is not None and not archive.is_file():
            problems.append(loc.problem(["images", index, kind], f"image {i['name']!r}: {archive} is not a file"))
        images.append(
            ImageSpec(
                name=i["name"],
                release=i.get("release") or base.get("release", ""),
                packages=tuple(i.get("packages", ())),
                cmd=tuple(i.get("cmd", base.get("cmd", ("/bin/bash",)))),
                arches=tuple(i.get("arches", base.get("arches", ()))),
                base=i.get("base", ""),
                updates=i.get("updates", base.get("updates", True)),
                reference=i.get("reference", ""),
                tls_verify=i.get("tls_verify", True),
                archive=str(archive) if archive else "",
                archive_kind=kind,
            )
        )
    return tuple(images), problems


def _registries(entries: list[dict], loc: _Located, directory: Path) -> tuple[tuple[RegistryAccess, ...], list[str]]:
    """Private registries' credentials and CAs; an auth file is REGISTRY_AUTH_FILE's where the
    entry names none, as podman and skopeo do. Each file must exist, and the auth file must hold
    credentials for that registry, or the matrix says so now rather than a pull later."""
    problems, found = [], []
    for index, entry in enumerate(entries):
        auth = entry.get("auth_file") or os.environ.get("REGISTRY_AUTH_FILE")
        access = RegistryAccess(entry["host"], (directory / os.path.expanduser(auth)).resolve() if auth else None,
                                (directory / os.path.expanduser(entry["ca_file"])).resolve() if "ca_file" in entry else None)
        for key, path in (("auth_file", access.auth_file), ("ca_file", access.ca_file)):
            if path is not None and not path.is_file():
                problems.append(loc.problem(["registries", index, key] if key in entry else ["registries", index], f"registry {access.host}: {key} {path} is not a file"))
        if access.auth_file is not None and access.auth_file.is_file():
            try:
                access.credentials()
            except AuthFileError as exc:
                problems.append(loc.problem(["registries", index], f"registry {access.host}: {exc}"))
        found.append(access)
    return tuple(found), problems


def _unmatched(data: dict, loc: _Located, hosts, images, scenarios) -> tuple[str, ...]:
    """A known issue, include or exclude whose pattern matches no cell of the matrix: most likely a
    typo, which would silently change nothing (a warning, not an error: a matrix may be cut down)."""
    cells = [(h.name, i.name, s.name) for h in hosts for i in images for s in scenarios]
    found = []
    for index, entry in enumerate(data.get("known_issues", ())):
        pattern = _pattern(entry)
        if not any(pattern.matches(*cell) for cell in cells):
            found.append(loc.problem(["known_issues", index], f"warning: known issue {entry['bug']} matches no cell ({pattern.host} x {pattern.image} x {pattern.scenario})"))
    for key in ("include", "exclude"):
        for index, entry in enumerate(data.get("policy", {}).get(key, ())):
            pattern = _pattern(entry)
            if not any(pattern.matches(h, i) for h, i, _ in cells):
                found.append(loc.problem(["policy", key, index], f"warning: {key} pattern matches no host x image pair ({pattern.host} x {pattern.image})"))
    return tuple(found)


def _disk_resolved(entry: dict, base: Path) -> dict:
    """A disk-image host's entry with its disk's path made absolute (it is relative to the matrix)."""
    if "image" not in entry:
        return entry
    return {**entry, "image": str((base / os.path.expanduser(entry["image"])).resolve())}


def _build(path: Path, data: dict, loc: _Located) -> Matrix:
    base = path.parent
    problems = _duplicates(data["hosts"], "host", loc) + _duplicates(data["images"], "image", loc)
    defaults = Machine().merged(data.get("defaults", {}))
    hosts = tuple(parse_host(_disk_resolved(h, base), defaults) for h in data["hosts"])
    problems += [loc.problem(["hosts", i, "image"], f"host {h.name!r}: {why}") for i, h in enumerate(hosts)
                 if isinstance(h, DiskHostSpec) and (why := disk_problem(Path(h.image)))]
    problems += [loc.problem(["hosts", i, "via"], f"host {h.name!r}: {why}") for i, h in enumerate(hosts) if (why := h.via_problem())]
    images, image_problems = _images(data["images"], loc, base)
    problems += image_problems
    scenarios_dir = (base / data.get("scenarios_dir", "scenarios")).resolve()
    scenarios = []
    for index, name in enumerate(data.get("scenarios", ())):
        # The matrix's own scenarios first, then the harness's catalogue: a matrix anywhere works.
        catalogue = HARNESS_HOME / "scenarios"
        mine = (scenarios_dir / name).is_dir() or "scenarios_dir" in data or not (catalogue / name).is_dir()
        loaded = _load_scenario(scenarios_dir if mine else catalogue, name, index, loc)
        if isinstance(loaded, str):
            problems.append(loaded)
        else:
            scenarios.append(loaded)
    for index, entry in enumerate(data.get("suites", ())):
        tests, suite_problems = load_suite(entry, index, base, loc.problem)
        problems += suite_problems
        taken = {s.name: s for s in scenarios}
        problems += [loc.problem(["suites", index], f"suite test {t.name!r} has the name of another scenario ({_display_name(taken[t.name].path)})")
                     for t in tests if t.name in taken]
        scenarios += [t for t in tests if t.name not in taken]
    if not data.get("scenarios") and not data.get("suites"):
        problems.append(loc.problem([], "no scenarios: give `scenarios:`, `suites:`, or both"))
    if any(s.mode == "host" for s in scenarios):  # host-side scenarios call `docker`
        hosts = tuple(h.with_docker_cli() if isinstance(h, VmHostSpec) else h for h in hosts)
    hypervisors = tuple(HypervisorSpec(h["uri"], h.get("name", ""), h.get("slots"), h.get("harness_address")) for h in data.get("hypervisors", ()))
    problems += _duplicates([{"name": h.name} for h in hypervisors], "hypervisor", loc)
    vms_dir = (base / data.get("vms", "vms")).resolve()
    if "vms" not in data and not (vms_dir / "domain.xml").is_file():
        vms_dir = HARNESS_HOME / "vms"  # the harness's own recipes and guest files
    if not (vms_dir / "domain.xml").is_file():
        problems.append(loc.problem(["vms"] if "vms" in data else [], f"no domain template {_display_name(vms_dir / 'domain.xml')}"))
    registries, registry_problems = _registries(data.get("registries", ()), loc, base)
    problems += registry_problems
    if problems:
        raise MatrixError(problems)
    known_issues = tuple(KnownIssue(_pattern(k), k["bug"], k.get("note", "")) for k in data.get("known_issues", ()))
    policy = _policy(data.get("policy", {}))
    warnings = _unmatched(data, loc, hosts, images, tuple(scenarios))
    return Matrix(
        path=path,
        mirror=data.get("mirror", DEFAULT_MIRROR),
        vms_dir=vms_dir,
        scenarios_dir=scenarios_dir,
        hosts=hosts,
        images=images,
        scenarios=tuple(scenarios),
        defaults=defaults,
        policy=policy,
        known_issues=known_issues,
        warnings=warnings,
        retries=data.get("retries", 1),
        delivery=data.get("delivery", "registry"),
        registry_port=data.get("registry_port", 8008),
        hypervisors=hypervisors or (LOCAL_HYPERVISOR,),
        registries=registries,
    )
