"""bench/matrix_time.py holds the cells a chunk recorded against those it selected: a cell the
harness failed to record (chunk D's 21, lost to a crash) must show in the figures, not vanish."""

from __future__ import annotations

from bench.matrix_time import collected, hosts_expression, unrecorded
from bench.scale import generate


def test_a_chunk_that_recorded_fewer_cells_than_it_selected_says_how_many_are_missing(tmp_path):
    matrix = generate(tmp_path / "m", 2, 1, 3)
    assert collected(str(matrix), ["-k", hosts_expression(["host-000"], ["host-000", "host-001"])]) == 3
    assert unrecorded({"cells": 2}, 3) == "2 cells recorded of the 3 selected: 1 missing"
    assert unrecorded({"cells": 3}, 3) == ""
