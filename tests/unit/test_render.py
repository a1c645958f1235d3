"""The HTML matrix: hosts as columns, images as rows, classes, evidence reachable, output escaped."""

from __future__ import annotations

from harness.config.model import Policy
from harness.report.render import matrix_view, render_report
from harness.results.model import (
    HostFacts,
    CellResult,
    DeliveryRecord,
    HostRecord,
    ImageRecord,
    RunResults,
)
from harness.supportability import classify


def results_with(*cells: CellResult, deliveries: tuple[DeliveryRecord, ...] = ()) -> RunResults:
    results = RunResults(run_id="r1", matrix="m.yaml", started_at="t", harness_version="0")
    results.images = {"img-a": ImageRecord("img-a", "bookworm"), "img-b": ImageRecord("img-b", "sid")}
    for host in ("h1", "h2"):
        results.hosts[host] = HostRecord(host, "bookworm", "amd64", "podman", "crun", facts=HostFacts(kernel="6.1.0-test", raw={"kernel": "6.1.0-test"}), console_log=f"hosts/{host}/console.log")
    for cell in cells:
        results.cells[cell.key] = cell
    for d in deliveries:
        results.deliveries[f"{d.host}/{d.image}"] = d
    for host in results.hosts.values():
        for image in results.images.values():
            mine = [c for c in cells if c.host == host.name and c.image == image.name]
            results.pairs[f"{host.name}/{image.name}"] = classify(Policy(), host, image, mine, results.deliveries.get(f"{host.name}/{image.name}"))
    return results


def test_grid_shape_and_classes():
    view = matrix_view(results_with(CellResult("h2", "img-a", "useradd", "fail", 1), CellResult("h1", "img-b", "useradd", "pass", 1)))
    assert [h.name for h in view["hosts"]] == ["h1", "h2"]
    assert [r["image"].name for r in view["rows"]] == ["img-a", "img-b"]
    assert view["rows"][0]["cells"][1]["klass"] == "supported-fail"  # bookworm image on a bookworm host
    assert view["rows"][1]["cells"][0]["klass"] == "unsupported-works"  # a sid image on bookworm
    assert view["rows"][0]["cells"][0]["klass"] == "pending"
    assert view["classes"]["supported-fail"] == 1


def test_rendered_page_links_cells_to_evidence(tmp_path):
    cell = CellResult("h1", "img-a", "useradd", "pass", 1, command=["podman", "run", "x"], stdout="matrixuser:x:1000", reproduce=["podman load --input /a", "podman run x"])
    out = render_report(results_with(cell), tmp_path)
    html = out.read_text()
    assert out == tmp_path / "matrix.html"
    assert 'href="#cell-h1--img-a"' in html and 'id="cell-h1--img-a"' in html
    assert "matrixuser:x:1000" in html
    assert "podman load --input /a\npodman run x" in html
    assert 'href="hosts/h1/console.log"' in html
    assert "6.1.0-test" in html
    assert 'id="filter-arch"' in html and 'id="filter-class"' in html
    assert not (tmp_path / "support.html").exists()  # the statement is `harness publish`'s


def test_not_portable_pair(tmp_path):
    results = results_with(deliveries=(DeliveryRecord("h1", "img-a", "sha256:x", False, 1.0, ["podman", "load"], "Error: unsupported image format", not_portable="the host's engine refuses the image's format"),))
    assert results.pairs["h1/img-a"].klass == "not-portable"
    html = render_report(results, tmp_path).read_text()
    assert "Error: unsupported image format" in html and "<strong>Not portable:</strong> the host&#39;s engine refuses the image&#39;s format" in html


def test_container_output_cannot_inject_markup(tmp_path):
    evil = '<script>alert(1)</script></pre></details></textarea><img src=x onerror=alert(2)>'
    html = render_report(results_with(CellResult("h1", "img-a", "s", "fail", 1, stdout=evil, stderr=evil, message=evil)), tmp_path).read_text()
    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_image_facts_and_freshness_are_shown(tmp_path):
    from harness.results.model import Freshness, ImageBuildRecord

    results = results_with(CellResult("h1", "img-a", "useradd", "pass", 1))
    results.started_at = "2026-11-23T10:00:00+00:00"
    fresh = Freshness("D", 7, 118, "http://deb.debian.org/debian-security bookworm-security", "2026-11-23T10:00:01+00:00", ["libc6 2.36-9+deb12u4 -> 2.36-9+deb12u14"])
    results.images["img-a"].base = "img-b"
    results.images["img-a"].reference = "127.0.0.1:8008/harness/img-a:c-1"
    results.images["img-a"].builds["arm64"] = ImageBuildRecord(
        "arm64", "linux/arm64", "sha256:" + "c" * 64, "sha256:" + "m" * 64, 169254400, 2, "2026-11-13T02:09:05+00:00", "12.15", "2.36-9+deb12u4", 118, "d",
        {"org.opencontainers.image.version": "python3 3.11.2-1+b1"}, fresh,
    )
    html = render_report(results, tmp_path).read_text()
    row = html.split('id="build-img-a-arm64"')[1].split("</tr>")[0]
    for text in ("linux/arm64", "161.4 MiB", "<td>2</td>", "12.15", "2.36-9+deb12u4", "<td>118</td>", "2026-11-13", "10 days", "7 of 118 outdated"):
        assert text in row, text
    assert "libc6 2.36-9+deb12u4 -&gt; 2.36-9+deb12u14" in html
    assert "python3 3.11.2-1+b1" in html and '<a href="#image-img-b">img-b</a>' in html
    assert 'class="badge grade-D"' in html.split("<tbody>")[1].split("</tbody>")[0]  # in the matrix's row header


def test_why_a_references_facts_are_missing_is_shown(tmp_path):
    results = results_with()
    results.images["vendor"] = ImageRecord("vendor", "bookworm", reference="registry.example.com/vendor/app:2.1", source="reference",
                                           facts_error="registry https://registry.example.com: GET /v2/vendor/app/manifests/2.1 gave 401: {} (the registry wants credentials; the harness reads anonymously)")
    html = render_report(results, tmp_path).read_text()
    assert "gave 401" in html and "the registry wants credentials" in html


def test_a_disk_image_host_shows_its_own_settings(tmp_path):
    from harness.config.model import HostKind

    results = results_with(CellResult("h1", "img-a", "useradd", "pass", 1))
    results.hosts["h1"] = HostRecord("h1", "rhel-9.4", "amd64", "podman", "crun", kind=HostKind.DISK, settings={"disk": "rhel-9.4.qcow2"}, facts=HostFacts(raw={"firmware": "uefi"}))
    results.hosts["h2"].settings = {"kernel": "trixie", "cgroup": "v1", "lsm": "apparmor"}
    html = render_report(results, tmp_path).read_text()
    assert "VM from a disk image · rhel-9.4" in html and "disk rhel-9.4.qcow2" in html
    assert "kernel trixie · cgroup v1 · lsm apparmor" in html


def test_a_live_render_that_fails_warns_and_the_run_goes_on(tmp_path, monkeypatch):
    import types

    import pytest

    from harness.plugin import recorder as recorder_module

    recorder = recorder_module.ResultsRecorder(types.SimpleNamespace(option=types.SimpleNamespace(reports=str(tmp_path))))
    recorder.results = results_with(CellResult("h1", "img-a", "useradd", "pass", 1))

    def broken(*_args, **_kwargs):
        raise ValueError("a template bug")

    monkeypatch.setattr(recorder_module, "render_report", broken)
    with pytest.warns(UserWarning, match="not updated until the run ends: ValueError: a template bug"):
        recorder._render_live()
    recorder._render_live()  # not tried again: no second warning, no exception
