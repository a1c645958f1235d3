"""Covering arrays over the default matrix: every value pair (or triple) of its axes covered, with
far fewer cells; the coverage is measured from the cells chosen."""

from __future__ import annotations

from harness.cells.cover import AXES, combos, cover, values
from harness.config.load import load_matrix


def test_every_pair_of_the_default_matrix_is_covered_by_a_fraction_of_its_cells(repo_root):
    matrix = load_matrix(repo_root / "matrix.yaml")
    cells = [(h.name, i.name, s.name) for h in matrix.hosts for i in matrix.images for s in matrix.scenarios]
    found = cover(matrix, cells, 2)
    assert found.covered == found.total and len(found.chosen) < len(cells) / 4
    chosen_combos = combos([values(matrix, c) for c in found.chosen], 2)
    assert chosen_combos >= combos([values(matrix, c) for c in cells], 2)  # measured again, independently
    assert len(AXES) == 10
    supported = cover(matrix, cells, 2, ("bookworm-amd64/debian-bookworm",))
    assert {c for c in cells if c[:2] == ("bookworm-amd64", "debian-bookworm")} <= supported.chosen
