"""Covering arrays for matrices too big to run whole: a subset of cells in which every pair (or
triple) of values of the matrix's axes that occurs in the matrix occurs at least once.

The axes are the host's settings (release, arch, engine, runtime, cgroup, LSM, kernel, CPU model),
the image and the scenario. allpairspy generates the rows, with a filter that keeps only settings
some host of the matrix has together (a row is a real host's, not an invented one). Cells of the
pairs named by `must` are always added. The coverage is measured, not assumed.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from fnmatch import fnmatchcase
from itertools import combinations

from allpairspy import AllPairs

from harness.config.model import HostSpec, Matrix

HOST_AXES = ("release", "arch", "engine", "runtime", "cgroup", "lsm", "kernel", "cpu")
AXES = (*HOST_AXES, "image", "scenario")

Cell = tuple[str, str, str]


def host_values(spec: HostSpec) -> tuple[str, ...]:
    """A host's values on the host axes (an engine host's unknown settings are "")."""
    return tuple(str(getattr(spec, "kernel_release" if axis == "kernel" else axis, "") or "") for axis in HOST_AXES)


def values(matrix: Matrix, cell: Cell) -> tuple[str, ...]:
    host, image, scenario = cell
    return (*host_values(matrix.host(host)), image, scenario)


@dataclass(frozen=True)
class Coverage:
    strength: int
    chosen: frozenset[Cell]
    covered: int  # value combinations of `strength` axes that the chosen cells cover
    total: int  # ... that occur in the matrix's cells at all

    def summary(self, cells: int) -> str:
        return f"{len(self.chosen)} of {cells} cells sampled, covering {self.covered} of {self.total} value {('pairs', 'triples')[self.strength - 2]} of the axes"


def combos(rows: list[tuple[str, ...]], strength: int) -> set[tuple]:
    """Every (axes, values) combination of `strength` axes the rows hold."""
    return {(axes, tuple(row[a] for a in axes)) for row in rows for axes in combinations(range(len(AXES)), strength)}


def cover(matrix: Matrix, cells: list[Cell], strength: int, must: tuple[str, ...] = ()) -> Coverage:
    """The cells to run of `cells` (the selected ones). `must`: HOST/IMAGE glob patterns whose
    cells are all run, or "supported" for the pairs the policy supports (computed by the caller)."""
    hosts: dict[tuple[str, ...], str] = {}
    for name in sorted({c[0] for c in cells}):
        hosts.setdefault(host_values(matrix.host(name)), name)
    images = sorted({c[1] for c in cells})
    scenarios = sorted({c[2] for c in cells})
    present = set(cells)
    parameters = [sorted({v[i] for v in hosts}) for i in range(len(HOST_AXES))] + [images, scenarios]

    def possible(row: list[str]) -> bool:
        settings = row[: len(HOST_AXES)]
        return any(list(v[: len(settings)]) == settings for v in hosts)

    chosen: set[Cell] = set()
    for row in AllPairs(parameters, filter_func=possible, n=strength):
        host = hosts.get(tuple(row[: len(HOST_AXES)]))
        cell = (host, row[-2], row[-1]) if host else None
        if cell in present:
            chosen.add(cell)
    chosen |= {c for c in cells if any(fnmatchcase(f"{c[0]}/{c[1]}", p) for p in must)}
    # What allpairspy left out (its rows are not constrained to the matrix's cells, and at strength
    # 3 under a filter it stops early): the cell that adds the most uncovered combinations, again
    # and again (lazy greedy), so the coverage is complete by construction.
    own = {c: combos([values(matrix, c)], strength) for c in cells}
    wanted = set().union(*own.values()) if own else set()
    have = set().union(*(own[c] for c in chosen)) if chosen else set()
    heap = [(-len(own[c] - have), c) for c in sorted(cells) if c not in chosen]
    heapq.heapify(heap)
    while heap and have < wanted:
        _, cell = heapq.heappop(heap)
        gain = len(own[cell] - have)
        if gain and (not heap or gain >= -heap[0][0]):
            chosen.add(cell)
            have |= own[cell]
        elif gain:
            heapq.heappush(heap, (-gain, cell))
    return Coverage(strength, frozenset(chosen), len(have & wanted), len(wanted))
