"""`harness run` is pytest with the harness's own plugins only: a pytest plugin installed in the
same environment for other work (one that reorders, reruns or reports tests) must not change a run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.scale import generate


@pytest.mark.parametrize("workers", [1, 2])
def test_harness_run_loads_no_other_installed_pytest_plugin(tmp_path, repo_root, workers):
    site = tmp_path / "site"
    info = site / "intruder-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: intruder\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pytest11]\nintruder = intruder_plugin\n")
    loaded = tmp_path / "intruder-was-loaded"
    (site / "intruder_plugin.py").write_text(f"def pytest_configure(config):\n    open({str(loaded)!r}, 'a').write('loaded\\n')\n")
    matrix = generate(tmp_path / "m", 1, 1, 2)
    reports = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(matrix), "--reports", str(reports), "--quiet", "--workers", str(workers),
         f"--cache-dir={tmp_path / 'cache'}", "-p", "bench.stub_provider"],
        capture_output=True, text=True, timeout=300, cwd=repo_root, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": f"{site}:{repo_root}"},
    )
    cells = json.loads((reports / "results.json").read_text())["cells"] if (reports / "results.json").exists() else {}
    assert len(cells) == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not loaded.exists(), f"harness run loaded an installed pytest plugin ({loaded.read_text().count('loaded')} process(es))"


def test_counting_the_cells_with_collect_only_starts_no_registry(tmp_path, repo_root):
    """bench/matrix_time.py counts a chunk's cells with --collect-only, beside a run that serves the
    registry: the count must neither start one nor claim the running one."""
    from harness.registry.server import registry_root
    from tests.conftest import free_port

    matrix = generate(tmp_path / "m", 1, 1, 2)
    port = free_port()
    matrix.write_text(matrix.read_text() + f"registry_port: {port}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(matrix), "--reports", str(tmp_path / "reports"), "--workers", "1",
         f"--cache-dir={tmp_path / 'cache'}", "--collect-only", "-q"],
        capture_output=True, text=True, timeout=300, cwd=repo_root,
    )
    assert "2 tests collected" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not registry_root(tmp_path / "cache", port).exists(), "a --collect-only run started the registry"
