#!/usr/bin/env python3
"""Whole-matrix time: a matrix (default: the default one) run for real through the CLI, warm (the
build caches as they are) or cold (a fresh, empty cache directory: every host and image built).
Prints the wall time, the cells by outcome, the time per cell, the utilisation (the guests' CPU
time over cores x wall time), and the hosts' own figures (boot, deliveries, cells), so a slice of a
matrix can be measured by itself with pytest's -k.

    python bench/matrix_time.py [--matrix matrix.yaml] [--cold] [--workers auto] [-- -k "bookworm-amd64 and not docker"]

A matrix too big for one sitting is measured in chunks of hosts kept in a state directory: each
pass (cold, then warm, then an unchanged rerun with --reuse) uses the directory's own build cache,
so a chunk's cold pass builds its hosts from nothing and its warm pass runs on what that built;
each pass continues its own reports with --resume. Every chunk's figures are appended to the record
(default bench/matrix_time.json, kept in the repository: a machine, and its state directory, may not
outlive the sitting), with the commit and the machine; --summary adds them up and names the hosts no
chunk has run yet. A pass stopped before it ends (a chunk of emulated hosts can outlast a sitting
on the machine, or one stopped with Ctrl-C: it recorded fewer cells than it selected) is continued
by the same command: its sittings' wall times, each kept up to its
last half minute, are added up and named in the record. Every cell's key has the harness's own
digest in it, so harness/ must not change between a pass and the --reuse pass after it: each record
keeps the digest its pass started with, a reuse pass after a change is refused, and a pass during
which harness/ changed says so.

    python bench/matrix_time.py --state /var/tmp/matrix-time --pass cold --hosts bullseye-amd64 bookworm-amd64
    python bench/matrix_time.py --state /var/tmp/matrix-time --pass warm --hosts bullseye-amd64 bookworm-amd64
    python bench/matrix_time.py --state /var/tmp/matrix-time --pass reuse --hosts bullseye-amd64 bookworm-amd64
    python bench/matrix_time.py --summary
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
PASSES = ("cold", "warm", "reuse")
RECORD = ROOT / "bench" / "matrix_time.json"


def hosts_expression(chosen: list[str], every: list[str]) -> str:
    """A pytest -k expression selecting exactly these hosts' cells: -k matches substrings, so each
    host excludes the other hosts whose names contain its own (bookworm-amd64 vs bookworm-amd64-docker)."""
    terms = []
    for name in chosen:
        longer = [other for other in every if other != name and name in other]
        terms.append("(" + " and ".join([name, *(f"not {other}" for other in longer)]) + ")")
    return " or ".join(terms)


def run(matrix: str, reports: Path, workers: str, extra: list[str], alive: Callable[[float], None] = lambda _: None) -> tuple[float, dict, str]:
    """One `harness run`: its wall seconds, its results and its last output. `alive` is told the
    seconds so far every half minute while it runs."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", matrix, "--reports", str(reports), "--quiet", "--workers", workers, *extra],
                                stdout=out, stderr=subprocess.STDOUT, text=True)
        while True:
            try:
                proc.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                alive(time.monotonic() - started)
        seconds = time.monotonic() - started
        out.seek(0)
        output = out.read()
    try:
        results = json.loads((reports / "results.json").read_text())
    except OSError:
        raise SystemExit(f"the run left no results:\n{output[-6000:]}") from None
    return seconds, results, output[-2000:]


def collected(matrix: str, selection: list[str]) -> int:
    """How many cells the run selects (`harness run --collect-only`), to hold the recorded ones
    against: a cell the harness failed to record would otherwise just be missing from the figures."""
    with tempfile.TemporaryDirectory(prefix="matrix-time-collect-") as tmp:
        done = subprocess.run([sys.executable, "-m", "harness.cli", "run", matrix, "--reports", tmp, "--workers", "1", "--collect-only", "-q", *selection],
                              capture_output=True, text=True)
    found = re.search(r"(\d+)(?:/\d+)? tests? collected", done.stdout)
    if found is None:
        raise SystemExit(f"matrix_time: could not count the cells of {matrix}:\n{(done.stdout + done.stderr)[-2000:]}")
    return int(found.group(1))


def unrecorded(fig: dict, expected: int) -> str:
    """What the record must say when the run recorded another number of cells than it selected."""
    if fig["cells"] == expected:
        return ""
    return f"{fig['cells']} cells recorded of the {expected} selected: {abs(expected - fig['cells'])} {'missing' if fig['cells'] < expected else 'more'}"


def figures(results: dict, seconds: float, hosts: set[str] | None) -> dict:
    """What a run (or a chunk of one: `hosts`) did in `seconds`."""
    cells = [c for c in results["cells"].values() if hosts is None or c["host"] in hosts]
    ran = {h: r for h, r in results["hosts"].items() if any(c["host"] == h for c in cells)}
    # How busy the guests kept the machine: their CPU time (from libvirt, when each stopped) over
    # all the cores for the whole wall time.
    busy = sum(h.get("cpu_seconds") or 0 for h in ran.values())
    by_host = collections.defaultdict(float)
    for c in cells:
        by_host[c["host"]] += c["duration"]
    per_host = {}
    for name, host in sorted(ran.items()):
        deliveries = [d for d in results.get("deliveries", {}).values() if d["host"] == name and not d.get("reused")]
        per_host[name] = {
            "boot_seconds": host.get("boot_seconds"), "accel": host.get("accel"), "reused": bool(host.get("reused")),
            "deliveries": len(deliveries), "delivery_seconds": round(sum(d["duration"] for d in deliveries), 1),
            "cell_seconds": round(by_host[name], 1), "error": (host.get("error") or "")[:200],
        }
    return {
        "wall_seconds": round(seconds, 1), "cells": len(cells),
        "outcomes": dict(sorted(collections.Counter(c["outcome"] for c in cells).items())),
        "busy_seconds": round(busy, 1), "cores": os.cpu_count(), "hosts": per_host,
    }


def show(title: str, fig: dict) -> None:
    seconds, cells = fig["wall_seconds"], fig["cells"]
    print(f"{title}: {seconds:.0f} s wall ({seconds / 60:.1f} min), {cells} cells, {seconds / max(cells, 1):.2f} s per cell")
    print("  outcomes: " + ", ".join(f"{k} {v}" for k, v in fig["outcomes"].items()))
    print(f"  utilisation: guests busy {fig['busy_seconds']:.0f} s of {fig['cores']} cores x {seconds:.0f} s = "
          f"{fig['busy_seconds'] / (fig['cores'] * max(seconds, 1)):.2f}")
    for name, h in fig["hosts"].items():
        booted = "not booted (cells reused)" if h.get("reused") else f"ready in {h['boot_seconds']} s ({h['accel']})"
        print(f"  {name}: {booted}, {h['deliveries']} deliveries {h['delivery_seconds']:.0f} s, "
              f"cells {h['cell_seconds']:.0f} s{'; error: ' + h['error'] if h['error'] else ''}")


def matrix_hosts(matrix: str) -> list[str]:
    from harness.config.load import MatrixError, load_matrix

    try:
        return [h.name for h in load_matrix(matrix).hosts]
    except MatrixError as exc:
        raise SystemExit(f"matrix_time: {exc}") from None


def ran_in(state: Path, pass_: str) -> set[str]:
    """The hosts with a cell in this state directory's reports of that pass."""
    try:
        return {c["host"] for c in json.loads((state / pass_ / "results.json").read_text())["cells"].values()}
    except (OSError, ValueError, KeyError):
        return set()


def machine() -> str:
    """What the figures were measured on."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    return f"{os.uname().nodename}: {os.cpu_count()} cores ({model}), {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB"


def commit() -> str:
    proc = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or "?"


def harness_tree() -> str:
    """The digest of harness/ as the result cache keys it (cells/cache.harness_digest), short."""
    from harness.cache import tree_digest

    return tree_digest(ROOT / "harness")[:12]


def sittings_of(state: Path, pass_: str) -> Path:
    """Where a pass not finished yet keeps the sittings it ran in: a chunk of emulated hosts may
    take longer than a sitting on the machine, and is continued (--resume) in the next one."""
    return state / f"{pass_}.sittings.json"


def chunk(args: argparse.Namespace) -> None:
    """One chunk of hosts through one pass, continued in the state directory."""
    from harness.results.store import write_atomically

    state = Path(args.state)
    every = matrix_hosts(args.matrix)
    unknown = sorted(set(args.hosts) - set(every))
    if unknown:
        raise SystemExit(f"matrix_time: {args.matrix} has no host named {', '.join(unknown)}")
    log = Path(args.record)
    chunks = json.loads(log.read_text()) if log.exists() else []
    sittings_file = sittings_of(state, args.pass_)
    unfinished = json.loads(sittings_file.read_text()) if sittings_file.exists() else None
    if unfinished is not None and sorted(unfinished["hosts"]) != sorted(args.hosts):
        raise SystemExit(f"matrix_time: the {args.pass_} pass of {' '.join(unfinished['hosts'])} in {state} did not finish: continue it with --hosts {' '.join(unfinished['hosts'])}")
    if args.pass_ != "cold" and sittings_of(state, "cold").exists():
        raise SystemExit(f"matrix_time: the cold pass in {state} did not finish: continue it first (--pass cold)")
    if args.pass_ == "cold" and unfinished is None and (again := sorted(set(args.hosts) & (ran_in(state, "cold") | ran_in(state, "warm")))):
        raise SystemExit(f"matrix_time: {', '.join(again)} already ran in {state}: a cold pass of them would not be cold")
    if args.pass_ != "cold" and (missing := sorted(set(args.hosts) - ran_in(state, "cold"))):
        raise SystemExit(f"matrix_time: {', '.join(missing)} had no cold pass in {state} yet: run --pass cold first")
    earlier = [c for c in chunks if set(asked(c)) == set(args.hosts) and c.get("harness")]
    if args.pass_ == "reuse" and earlier and earlier[-1]["harness"] != harness_tree():
        raise SystemExit(f"matrix_time: harness/ changed since the {earlier[-1]['pass']} pass of these hosts "
                         f"({earlier[-1]['harness']}, now {harness_tree()}): every cell's key has the harness's digest in it, "
                         "so a --reuse pass would reuse nothing; run --pass warm again first")
    reports = state / args.pass_
    selection = ["-k", hosts_expression(args.hosts, every), *args.pytest_args]
    expected = collected(args.matrix, selection)
    extra = [f"--cache-dir={state / 'cache'}", "--resume", *(["--reuse"] if args.pass_ == "reuse" else []), *selection]
    started, code = datetime.now(timezone.utc).isoformat(timespec="seconds"), commit()  # HEAD may move while a pass runs
    sittings = [*(unfinished or {}).get("sittings", []), {"started": started, "commit": code, "seconds": 0.0}]

    def alive(seconds: float) -> None:  # a sitting stopped mid-pass still counts up to its last half minute
        sittings[-1]["seconds"] = round(seconds, 1)
        write_atomically(sittings_file, json.dumps({"hosts": args.hosts, "sittings": sittings}, indent=1))

    alive(0.0)
    tree = harness_tree()  # the cells are keyed with the tree as it is at the pass's first cell
    seconds, results, tail = run(args.matrix, reports, args.workers, extra, alive)
    sittings[-1]["seconds"] = round(seconds, 1)
    fig = figures(results, sum(s["seconds"] for s in sittings), set(args.hosts))
    if not fig["cells"]:
        raise SystemExit(f"matrix_time: the chunk recorded no cell:\n{tail}")
    if fig["cells"] < expected:  # stopped midway (Ctrl-C, SIGTERM, -x): its sittings stay for the next one
        alive(seconds)
        raise SystemExit(f"matrix_time: the {args.pass_} pass stopped with {fig['cells']} of the {expected} cells recorded: "
                         "continue it with the same command")
    note = args.note
    if missing := unrecorded(fig, expected):
        note += f"{'; ' if note else ''}{missing}"
        print(f"matrix_time: {missing}", file=sys.stderr)
    if harness_tree() != tree:
        note += f"{'; ' if note else ''}harness/ changed while this pass ran ({tree} -> {harness_tree()}): a --reuse pass after it reuses nothing"
        print(f"matrix_time: harness/ changed while this pass ran ({tree} -> {harness_tree()}): a --reuse pass after it would reuse none of its cells", file=sys.stderr)
    if len(sittings) > 1:
        note += f"{'; ' if note else ''}in {len(sittings)} sittings (stopped and continued with --resume: " + ", ".join(f"{s['seconds']:.0f} s from {s['started']}" for s in sittings) + ")"
    chunks.append({"pass": args.pass_, "chunk": args.hosts, "started": sittings[0]["started"], "workers": args.workers,
                   "commit": sittings[0]["commit"], "harness": tree, "machine": machine(), "note": note, **fig})
    log.write_text(json.dumps(chunks, indent=1) + "\n")
    sittings_file.unlink()
    show(f"{args.pass_} pass of {', '.join(args.hosts)} with --workers {args.workers}", fig)


def asked(chunk: dict) -> list[str]:
    """The hosts a chunk was run for; its "hosts" are those that ran a cell (a -k may leave one out).
    Records before 2026-12-05 22:20 kept only the latter."""
    return chunk.get("chunk", chunk["hosts"])


def utilisation(chunk: dict) -> float:
    """The guests' busy time over cores x wall time (as recorded, for a chunk whose own figures were lost)."""
    if "busy_seconds" not in chunk:
        return chunk["utilisation"]
    return chunk["busy_seconds"] / (chunk["cores"] * max(chunk["wall_seconds"], 1))


def totals(records: list[dict]) -> str:
    """Wall time, cells and outcomes of these records added up."""
    wall, cells = sum(c["wall_seconds"] for c in records), sum(c["cells"] for c in records)
    outcomes = collections.Counter()
    for c in records:
        outcomes.update(c["outcomes"])
    return f"{wall:.0f} s ({wall / 3600:.2f} h), {cells} cells ({', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))})"


def summary(args: argparse.Namespace) -> None:
    """Every chunk so far, each pass's totals, and the hosts no chunk of a pass has run; a pass
    of the whole matrix at once is shown apart, not added to the chunks'."""
    every = matrix_hosts(args.matrix)
    log = Path(args.record)
    chunks = json.loads(log.read_text()) if log.exists() else []
    for p in PASSES:
        mine = [c for c in chunks if c["pass"] == p]
        if not mine:
            continue
        print(f"{p} pass:")
        for c in mine:
            print(f"  {c['started']}  {c['wall_seconds']:6.0f} s  {c['cells']:5} cells  utilisation "
                  f"{utilisation(c):.2f}  {' '.join(c['hosts'])}" + (f"  ({c['note']})" if c.get("note") else ""))
        whole_matrix = [c for c in mine if set(asked(c)) == set(every)]
        parts = [c for c in mine if c not in whole_matrix]
        if parts:
            left = [h for h in every if not any(h in c["hosts"] for c in parts)]
            print(f"  total: {totals(parts)}" + (f"; not run yet: {', '.join(left)}" if left else "; every host of the matrix"))
        for c in whole_matrix:
            print(f"  the whole matrix in one pass: {totals([c])}")


def whole(args: argparse.Namespace) -> None:
    """One run in one go, in a temporary reports directory (and, --cold, a temporary cache)."""
    with tempfile.TemporaryDirectory(prefix="matrix-time-") as tmp:
        extra = [f"--cache-dir={Path(tmp) / 'cache'}"] if args.cold else []
        seconds, results, _ = run(args.matrix, Path(tmp) / "reports", args.workers, [*extra, *args.pytest_args])
    fig = figures(results, seconds, None)
    show(f"{'cold' if args.cold else 'warm'} run of {args.matrix} {' '.join(args.pytest_args)} with --workers {args.workers}", fig)
    if missing := unrecorded(fig, collected(args.matrix, args.pytest_args)):
        print(f"matrix_time: {missing}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", default=str(ROOT / "matrix.yaml"))
    parser.add_argument("--cold", action="store_true", help="build everything into a fresh cache directory")
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--state", default=None, help="a directory keeping a chunked measurement across invocations")
    parser.add_argument("--pass", dest="pass_", choices=PASSES, help="with --state: which pass this chunk is")
    parser.add_argument("--hosts", nargs="+", default=[], help="with --state: the chunk's hosts")
    parser.add_argument("--summary", action="store_true", help="every chunk in the record and the totals")
    parser.add_argument("--record", default=str(RECORD), help=f"where chunks' figures are kept (default {RECORD.relative_to(ROOT)})")
    parser.add_argument("--note", default="", help="with --pass: said with the chunk's figures (what else the machine did meanwhile)")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest (-k to take a slice)")
    args = parser.parse_args()
    if args.summary:
        summary(args)
    elif args.state is None:
        whole(args)
    elif args.pass_ and args.hosts:
        Path(args.state).mkdir(parents=True, exist_ok=True)
        chunk(args)
    else:
        parser.error("--state takes --pass and --hosts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
