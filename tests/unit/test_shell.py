"""`harness reproduce --shell`'s line loop, on a host whose "guest" is this machine's own /bin/sh
(the real VM case is in tests/real/test_vm_blame.py)."""

from __future__ import annotations

import io
import subprocess
import time

from harness.reproduce import _shell
from harness.results.model import ExecRecord


class LocalHost:
    name = "here"
    cell_timeout = 5.0

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> ExecRecord:
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return ExecRecord(argv, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def test_lines_run_in_the_directory_the_last_one_left_and_say_how_they_ended(tmp_path):
    (tmp_path / "marker").write_text("found\n")
    out = io.StringIO()
    _shell(LocalHost(), "sha256:abc", ["podman", "run", "x"], io.StringIO(f"cd {tmp_path}\ncat marker\n\nls nothing-here\nprintf 'no newline'\nexit\necho never\n"), out)
    said = out.getvalue()
    assert "the image is there as sha256:abc; the cell ran as: podman run x" in said
    assert f"here:{tmp_path}# found\n" in said
    assert "No such file or directory" in said and "[exit 2]" in said
    assert "no newline" in said and "never" not in said


def test_the_end_of_input_ends_it():
    out = io.StringIO()
    _shell(LocalHost(), "sha256:abc", [], io.StringIO("echo one"), out)
    assert out.getvalue().endswith("here:/# one\nhere:/# \n")
