"""The HTML matrix: hosts as columns, images as rows, evidence reachable, container output escaped."""

from __future__ import annotations

from harness.report.render import cell_outcome, matrix_view, render_report
from harness.results.model import CellResult, HostRecord, RunResults


def results_with(*cells: CellResult) -> RunResults:
    results = RunResults(run_id="r1", matrix="m.yaml", started_at="t", harness_version="0", images=["img-a", "img-b"])
    for host in ("h1", "h2"):
        results.hosts[host] = HostRecord(host, "bookworm", "amd64", "podman", "crun", facts={"kernel": "6.1.0-test"}, console_log=f"hosts/{host}/console.log")
    for cell in cells:
        results.cells[cell.key] = cell
    return results


def test_worst_outcome_wins():
    cells = [CellResult("h", "i", s, o, 0) for s, o in (("a", "pass"), ("b", "fail"), ("c", "timeout"))]
    assert cell_outcome(cells) == "timeout"
    assert cell_outcome([]) == "pending"


def test_grid_shape():
    view = matrix_view(results_with(CellResult("h2", "img-b", "useradd", "fail", 1)))
    assert [h.name for h in view["hosts"]] == ["h1", "h2"]
    assert [r["image"] for r in view["rows"]] == ["img-a", "img-b"]
    assert view["rows"][1]["cells"][1]["outcome"] == "fail"
    assert view["rows"][0]["cells"][0]["outcome"] == "pending"


def test_rendered_page_links_cells_to_evidence(tmp_path):
    out = render_report(results_with(CellResult("h1", "img-a", "useradd", "pass", 1, command=["podman", "run", "x"], stdout="matrixuser:x:1000")), tmp_path)
    html = out.read_text()
    assert out == tmp_path / "matrix.html"
    assert 'href="#cell-h1--img-a"' in html and 'id="cell-h1--img-a"' in html
    assert "matrixuser:x:1000" in html
    assert "podman run x" in html
    assert 'href="hosts/h1/console.log"' in html
    assert "6.1.0-test" in html


def test_container_output_cannot_inject_markup(tmp_path):
    evil = '<script>alert(1)</script></pre></details><img src=x onerror=alert(2)>'
    html = render_report(results_with(CellResult("h1", "img-a", "s", "fail", 1, stdout=evil, stderr=evil, message=evil)), tmp_path).read_text()
    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
