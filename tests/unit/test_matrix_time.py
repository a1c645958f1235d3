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


def test_the_summary_adds_up_chunks_and_shows_a_whole_matrix_pass_apart(tmp_path, capsys):
    import argparse
    import json

    from bench.matrix_time import summary

    matrix = generate(tmp_path / "m", 2, 1, 3)
    record = tmp_path / "record.json"
    chunk = {"pass": "cold", "started": "t", "wall_seconds": 100.0, "cells": 3, "outcomes": {"pass": 3}, "busy_seconds": 0, "cores": 2}
    record.write_text(json.dumps([{**chunk, "hosts": ["host-000"]}, {**chunk, "hosts": ["host-001"]},
                                  {**chunk, "hosts": ["host-000", "host-001"], "wall_seconds": 150.0, "cells": 6, "outcomes": {"pass": 6}}]))
    summary(argparse.Namespace(matrix=str(matrix), record=str(record)))
    out = capsys.readouterr().out
    assert "total: 200 s (0.06 h), 6 cells (pass 6); every host of the matrix" in out, out
    assert "the whole matrix in one pass: 150 s (0.04 h), 6 cells (pass 6)" in out, out


def test_a_whole_matrix_pass_whose_slice_left_a_host_out_is_still_the_whole_matrix(tmp_path, capsys):
    """A reuse pass of every host with -k leaving out one host's cells (all errors) ran on the
    others only: it is the whole matrix's pass all the same, not a chunk added to the chunks'."""
    import argparse
    import json

    from bench.matrix_time import summary

    matrix = generate(tmp_path / "m", 2, 1, 3)
    record = tmp_path / "record.json"
    chunk = {"pass": "reuse", "started": "t", "wall_seconds": 4.0, "cells": 3, "outcomes": {"pass": 3}, "busy_seconds": 0, "cores": 2}
    record.write_text(json.dumps([{**chunk, "hosts": ["host-000"]}, {**chunk, "chunk": ["host-000", "host-001"], "hosts": {"host-000": {}}, "wall_seconds": 7.0}]))
    summary(argparse.Namespace(matrix=str(matrix), record=str(record)))
    out = capsys.readouterr().out
    assert "total: 4 s (0.00 h), 3 cells (pass 3); not run yet: host-001" in out, out
    assert "the whole matrix in one pass: 7 s (0.00 h), 3 cells (pass 3)" in out, out


def test_a_pass_stopped_before_its_last_cell_is_not_recorded_and_is_continued_by_the_same_command(tmp_path):
    """A run stopped midway (here by -x at the first failing cell; by Ctrl-C or SIGTERM in a sitting)
    leaves its sittings for the same command to continue, and no record of a pass that did not end."""
    import argparse
    import json

    import pytest

    from bench.matrix_time import chunk, sittings_of

    matrix = generate(tmp_path / "m", 1, 1, 20)  # scenario-009-fails, the tenth cell, fails
    record = tmp_path / "record.json"
    args = argparse.Namespace(matrix=str(matrix), record=str(record), state=str(tmp_path / "state"), pass_="cold", hosts=["host-000"],
                              workers="1", note="", pytest_args=["-p", "bench.stub_provider", "-x"])
    with pytest.raises(SystemExit, match="stopped with 10 of the 20 cells recorded: continue it with the same command"):
        chunk(args)
    assert not record.exists()
    assert json.loads(sittings_of(tmp_path / "state", "cold").read_text())["hosts"] == ["host-000"]
    args.pytest_args = ["-p", "bench.stub_provider"]
    chunk(args)
    done = json.loads(record.read_text())
    assert len(done) == 1 and done[0]["cells"] == 20 and "in 2 sittings" in done[0]["note"]
    assert not sittings_of(tmp_path / "state", "cold").exists()
