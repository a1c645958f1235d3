"""The `harness` command: validate a matrix, run it (through pytest), re-render a report, check the machine."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.config.load import MatrixError, load_matrix
from harness.config.model import Matrix


def _load(path: str) -> Matrix:
    """The matrix (its warnings printed), or its mistakes printed (a line each) and exit 2."""
    try:
        matrix = load_matrix(path)
    except MatrixError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(2)
    for warning in matrix.warnings:
        print(warning, file=sys.stderr)
    from harness.images.imported import ArchiveError, archive_arches

    for image in matrix.images:
        if image.archive:
            try:
                archive_arches(Path(image.archive), image.archive_kind)
            except ArchiveError as exc:
                print(f"{path}: image {image.name}: {exc}", file=sys.stderr)
                sys.exit(2)
    return matrix


def _validate(matrix: str) -> int:
    m = _load(matrix)
    cells = len(m.hosts) * len(m.images) * len(m.scenarios)
    print(f"{matrix}: ok ({len(m.hosts)} hosts x {len(m.images)} images x {len(m.scenarios)} scenarios = {cells} cells)")
    return 0


def _run(args: argparse.Namespace, pytest_args: list[str]) -> int:
    matrix = _load(args.matrix)
    missing = _doctor(matrix, args.hypervisor)
    if missing:
        print("harness: this machine cannot run the matrix yet:", file=sys.stderr)
        for line in missing:
            print(f"  - {line}", file=sys.stderr)
        return 3
    if refused := _refused_credentials(matrix):
        print(f"harness: {refused}", file=sys.stderr)
        return 2
    import pytest

    try:
        workers = _workers(args.workers, matrix, args.hypervisor)
    except ValueError:
        print(f"harness: --workers takes a number or auto, not {args.workers!r}", file=sys.stderr)
        return 2
    reports = Path(args.reports)
    argv = [
        str(matrix.path),
        f"--reports={reports}",
        *[f"--hypervisor={uri}" for uri in args.hypervisor or ()],
        f"--junitxml={reports / 'junit.xml'}",
        "-o",
        "junit_logging=system-out",  # a flaky cell's failed attempts, which it prints
        # Only the harness's own plugins: one installed for other work (a reorderer, a rerunner)
        # must not change a run. xdist is loaded by hand too, workers included.
        "--disable-plugin-autoload",
        "-p",
        "harness.pytest_plugin",
        *(["-p", "xdist.plugin"] if workers > 1 else []),
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(matrix.path.parent),
        "-o",
        "testpaths=",
        "-rfE",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        *(["--harness-debug", "--tb=long"] if args.debug else ["--tb=short"]),
        *(["--progress=quiet", "-q"] if args.quiet else []),
        # A host per worker, in collection order (slowest first): loadscope's default reorder by
        # cells per host would put a slow host with few cells left (a --resume, a -k) last.
        *(["-n", str(workers), "--dist", "loadscope", "--no-loadscope-reorder"] if workers > 1 else []),
        # Live progress is printed while pytest captures fd 1 around each cell: give it the terminal.
        f"--progress-fd={os.dup(1)}",
        *pytest_args,
    ]
    return int(pytest.main(argv))


def _refused_credentials(matrix: Matrix) -> str:
    """Why a private registry refused the matrix's credentials for one of its images ("" if none
    did): wrong credentials are the matrix's mistake, said before any host boots."""
    from harness.registry.inspect import describe

    for image in matrix.images:
        access = matrix.access_for(image.reference) if image.reference else None
        if access is not None and access.auth_file is not None:
            _, _, why = describe(image.reference, image.tls_verify, access)
            if "were refused" in why or " gave 403" in why:
                return f"image {image.name}: {why.strip().splitlines()[0]}"
    return ""


def _doctor(matrix: Matrix, hypervisors: list[str] | None) -> list[str]:
    """What this machine lacks for the matrix's hosts, each kind's driver asked about its own."""
    from harness.hosts.kinds import DRIVERS

    pool = matrix.pool(hypervisors)
    return [line for kind, driver in DRIVERS.items() for line in driver.doctor([h for h in matrix.hosts if h.kind == kind], pool)]


def _workers(requested: str, matrix: Matrix, hypervisors: list[str] | None) -> int:
    """Workers for a run: each runs one host at a time, so no more than hosts, or the pool's
    slots (each hypervisor's: as many guests as its cores and memory allow)."""
    if requested != "auto":
        return max(1, int(requested))
    from harness.hosts.hypervisors import HypervisorPool
    from harness.hosts.libvirt import connect

    hypervisors = HypervisorPool.for_matrix(matrix, matrix.pool(hypervisors), Path("/nonexistent"), connect)
    try:
        slots = hypervisors.total_slots()
    finally:
        hypervisors.close()
    return max(1, min(len(matrix.hosts), slots or 1))


def _results(path: str, command: str):
    """A run's results, or what is wrong with the file printed in one line and exit 2."""
    from harness.results import store

    try:
        return store.load(Path(path))
    except store.ResultsError as exc:
        print(f"harness {command}: {exc}", file=sys.stderr)
        sys.exit(2)


def _report(args: argparse.Namespace) -> int:
    from harness.report.render import render_report

    results = _results(args.results, "report")
    out = render_report(results, Path(args.results).parent)
    print(out)
    return 0


def _hosts(args: argparse.Namespace) -> int:
    """Host disks are cached by recipe digest; `prune` keeps only those the matrix still uses, and
    their kept image stores."""
    from harness.cache import BuildCache, default_root, digest_of
    from harness.config.model import HostKind
    from harness.hosts.build import build_host, host_recipe
    from harness.hosts.store import prune_stores
    from harness.mmdebstrap import BuildError

    matrix = _load(args.matrix)
    cache = BuildCache(default_root(), "hosts")
    vm_hosts = [h for h in matrix.hosts if h.kind == HostKind.VM]  # a disk-image host is not built
    used = {digest_of(host_recipe(h, matrix.vms_dir)): h.name for h in vm_hosts}
    if args.action == "list":
        for digest, recipe, size in cache.entries():
            user = used.get(digest, "(not in the matrix)")
            print(f"{digest[:16]}  {recipe['release']:9} {recipe['arch']:8} {recipe['engine']}/{recipe['runtime']:5} {size / 2**20:8.0f} MiB  {user}")
        for digest, name in used.items():
            if not cache.has(digest):
                print(f"{digest[:16]}  {name}: not built yet")
        return 0
    if args.action == "build":
        unknown = set(args.names) - {h.name for h in vm_hosts}
        if unknown:
            print(f"{args.matrix}: no VM host named {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        for host in vm_hosts:
            if args.names and host.name not in args.names:
                continue
            try:
                build, built = build_host(host, matrix.vms_dir, matrix.mirror, cache)
            except BuildError as exc:
                print(f"harness: {exc}", file=sys.stderr)
                return 1
            print(f"{host.name}: {'built' if built else 'cached'} {build.directory}")
        return 0
    for digest, recipe, size in cache.entries():
        if digest not in used:
            cache.remove(digest)
            print(f"removed {digest[:16]} ({recipe['release']} {recipe['arch']}, {size / 2**20:.0f} MiB)")
    for partial in cache.remove_abandoned():
        print(f"removed {partial.name}: an interrupted build")
    for key, size in prune_stores(default_root() / "stores", keep=set(used)):
        print(f"removed the image store of {key[:16]} ({size / 2**20:.0f} MiB): no host of the matrix boots with it")
    return 0


def _cleanup(args: argparse.Namespace) -> int:
    from harness.cache import default_root
    from harness.cleanup import cleanup
    from harness.hosts.libvirt import connect
    from harness.hosts.provider import HostError

    try:  # the matrix's hypervisors, where one is at hand
        uris = [h.uri for h in load_matrix(args.matrix).pool(args.hypervisor)]
    except MatrixError:
        uris = args.hypervisor or ["qemu:///system"]
    conns = []
    for uri in uris:
        try:
            conns.append(connect(uri))
        except HostError as exc:
            print(f"harness cleanup: {exc}; nothing removed there", file=sys.stderr)
    print(cleanup(conns, default_root()))
    for conn in conns:
        conn.close()
    return 0


def _diff(args: argparse.Namespace) -> int:
    """Exit 1 when a pair regressed, so CI can gate on it."""
    from harness.report.diff import Transition, as_text, changes, render_diff

    old, new = _results(args.old, "diff"), _results(args.new, "diff")
    found = changes(old, new)
    print(as_text(found, new))
    page = render_diff(old, new, Path(args.html) if args.html else Path(args.new).parent / "diff.html")
    print(f"page: {page}")
    return 1 if any(c.kind == Transition.REGRESSION for c in found) else 0


def _publish(args: argparse.Namespace) -> int:
    """The support statement, only when every supported pair's verdict allows it (exit 1 otherwise)."""
    from harness.report.publish import blockers, publish

    results = _results(args.results, "publish")
    stopping = blockers(results)
    if stopping:
        print(f"harness publish: not published: {len(stopping)} supported pair(s) of run {results.run_id} stop it:", file=sys.stderr)
        for line in stopping:
            print(f"  {line}", file=sys.stderr)
        return 1
    for path in publish(results, Path(args.out) if args.out else Path(args.results).parent):
        print(path)
    return 0


STARTER = """\
# A starter matrix (harness init): one host, one image, one scenario. `harness validate` checks it,
# `harness run` runs it; the README's "Writing a matrix" says what else a matrix can say.
version: 1
hosts:
  - {name: bookworm-amd64, release: bookworm, arch: amd64, engine: podman}
images:
  - {name: debian-bookworm, release: bookworm, packages: [passwd]}
scenarios:
  - useradd          # from the harness's catalogue; a scenarios/useradd/ here would take its place
"""


def _init(args: argparse.Namespace) -> int:
    """A starter matrix in DIR, which validates as written (its scenario is the catalogue's)."""
    path = Path(args.directory) / "matrix.yaml"
    if path.exists():
        print(f"harness init: {path} exists; nothing written", file=sys.stderr)
        return 2
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER)
    print(f"{path}: written; next: harness validate {path} && harness run {path}")
    return 0


def _history(args: argparse.Namespace) -> int:
    """The timeline of every run under DIR, and each pair's first bad run with what changed."""
    from harness.report.history import render_history

    directory = Path(args.directory)
    if not directory.is_dir():
        print(f"harness history: {directory} is not a directory", file=sys.stderr)
        return 2
    page, found = render_history(directory, directory / "history.html")
    if not found.runs:
        print(f"harness history: no readable results.json under {directory}", file=sys.stderr)
        return 2
    for pair, (run_id, changed) in sorted(found.first_bad.items()):
        print(f"{pair}: first bad in run {run_id}: {'; '.join(changed)}")
    print(f"page: {page}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    """One cell by hand: its host booted from the cache, its image delivered, its scenario run."""
    from harness.cache import default_root
    from harness.reproduce import SWAPS, ReproduceError, reproduce

    matrix = _load(args.matrix)
    cells = {f"{h.name}/{i.name}/{s.name}" for h in matrix.hosts for i in matrix.images for s in matrix.scenarios}
    if args.cell not in cells:
        print(f"harness reproduce: {args.matrix} has no cell {args.cell!r} (HOST/IMAGE/SCENARIO)", file=sys.stderr)
        return 2
    if args.swap is not None and args.swap not in SWAPS:
        print(f"harness reproduce: --swap takes one of {', '.join(SWAPS)}, not {args.swap!r}", file=sys.stderr)
        return 2
    try:
        return reproduce(matrix, args.cell, default_root(), sys.stdout, args.swap, sys.stdin if args.shell else None)
    except ReproduceError as exc:
        print(f"harness reproduce: {exc}", file=sys.stderr)
        return 2


def _engine_serve(args: argparse.Namespace) -> int:
    """Serve podman's Docker-compatible API until interrupted (hosts with `endpoint:` pointing at it)."""
    from harness.engines.service import PodmanService

    service = PodmanService(Path(args.socket) if args.socket else None)
    try:
        endpoint = service.start()
    except RuntimeError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 3
    if service.process is None:
        print(f"already served at {endpoint}")
        return 0
    print(f"serving the podman API at {endpoint} (Ctrl-C stops it)", flush=True)
    try:
        service.process.wait()
    except KeyboardInterrupt:
        service.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_validate = sub.add_parser("validate", help="check a matrix file against the schema")
    p_validate.add_argument("matrix", nargs="?", default="matrix.yaml")

    p_run = sub.add_parser("run", help="run a matrix; extra arguments go to pytest (-k, -x, -n ...)")
    p_run.add_argument("matrix", nargs="?", default="matrix.yaml")
    p_run.add_argument("--reports", default="reports")
    p_run.add_argument("--hypervisor", action="append", metavar="URI", help="libvirt URI of a hypervisor to place hosts on (repeatable; default: the matrix's hypervisors, else qemu:///system)")
    p_run.add_argument("--debug", action="store_true", help="show tracebacks of the harness's own failures")
    p_run.add_argument("--quiet", action="store_true", help="no live progress lines and pytest's terse output: for CI logs")
    p_run.add_argument("--workers", default="auto", help="hosts run at once: a number, or auto (the default: as many as cores and memory allow)")

    p_report = sub.add_parser("report", help="render matrix.html again from a results.json")
    p_report.add_argument("results", nargs="?", default="reports/results.json")

    p_publish = sub.add_parser("publish", help="write the support statement (support.html, .csv, .json) when no supported pair fails")
    p_publish.add_argument("results", nargs="?", default="reports/results.json")
    p_publish.add_argument("--out", default=None, help="directory to write it to (default: beside RESULTS)")

    p_doctor = sub.add_parser("doctor", help="say what this machine lacks to run a matrix's hosts")
    p_doctor.add_argument("matrix", nargs="?", default="matrix.yaml")
    p_doctor.add_argument("--hypervisor", action="append", metavar="URI", help="libvirt URI of a hypervisor to check (repeatable; default: the matrix's)")

    p_hosts = sub.add_parser("hosts", help="the build cache of host disks: list, build, prune")
    p_hosts.add_argument("action", choices=["list", "build", "prune"])
    p_hosts.add_argument("names", nargs="*", help="hosts of the matrix to build (default: all VM hosts)")
    p_hosts.add_argument("--matrix", default="matrix.yaml")

    p_clean = sub.add_parser("cleanup", help="remove domains and work files that interrupted runs left behind")
    p_clean.add_argument("--hypervisor", action="append", metavar="URI", help="libvirt URI to clean (repeatable; default: the matrix's hypervisors, else qemu:///system)")
    p_clean.add_argument("--matrix", default="matrix.yaml", help="whose hypervisors to clean when no --hypervisor is given")

    p_diff = sub.add_parser("diff", help="list the host x image pairs whose class changed between two runs")
    p_diff.add_argument("old", help="results.json of the earlier run")
    p_diff.add_argument("new", help="results.json of the later run")
    p_diff.add_argument("--html", default=None, help="also render the changes as a page (default: diff.html beside NEW)")

    p_init = sub.add_parser("init", help="write a starter matrix.yaml (one host, one image, one scenario) into DIR")
    p_init.add_argument("directory", nargs="?", default=".")

    p_history = sub.add_parser("history", help="each pair's class run by run, from every results.json under DIR, and what changed when it turned bad")
    p_history.add_argument("directory", nargs="?", default="reports")

    p_repro = sub.add_parser("reproduce", help="run one cell by hand (HOST/IMAGE/SCENARIO), optionally with one layer swapped, or open a shell on its host")
    p_repro.add_argument("cell", help="HOST/IMAGE/SCENARIO")
    p_repro.add_argument("--matrix", default="matrix.yaml")
    p_repro.add_argument("--swap", default=None, help="one blame swap: seccomp=unconfined, apparmor=unconfined, label=disable, runtime=crun, runtime=runc, rootless")
    p_repro.add_argument("--shell", action="store_true", help="then a shell on the host (through its guest agent), with the image there; the host goes when it ends")

    p_engine = sub.add_parser("engine", help="the local engine's API service, for `kind: engine` hosts")
    p_engine.add_argument("action", choices=["serve"])
    p_engine.add_argument("--socket", default=None, help="unix socket path (default: /run/container-matrix-harness/podman.sock)")

    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "validate":
        return _validate(args.matrix)
    if args.command == "run":
        return _run(args, rest)
    if args.command == "report":
        return _report(args)
    if args.command == "engine":
        return _engine_serve(args)
    if args.command == "diff":
        return _diff(args)
    if args.command == "publish":
        return _publish(args)
    if args.command == "reproduce":
        return _reproduce(args)
    if args.command == "history":
        return _history(args)
    if args.command == "init":
        return _init(args)
    if args.command == "cleanup":
        return _cleanup(args)
    if args.command == "hosts":
        return _hosts(args)
    return _doctor_command(args)


def _doctor_command(args: argparse.Namespace) -> int:
    """What this machine lacks for the matrix's hosts, on the pool a run of it would use."""
    matrix = _load(args.matrix)
    missing = _doctor(matrix, args.hypervisor)
    if not missing:
        print(f"{args.matrix}: this machine can run its hosts")
    for line in missing:
        print(line)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
