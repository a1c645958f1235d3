"""The report in a real browser: headless Chromium (Debian's) loads it, a filter is applied, a pair's
drill-down is opened, and a screenshot is kept as a test artifact."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.config.model import Policy
from harness.report.render import render_report
from harness.results.model import CellResult, HostFacts, HostRecord, ImageRecord, RunResults
from harness.supportability import classify

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("HARNESS_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "reports" / "test-artifacts"))

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()), reason="needs Debian's chromium and chromium-driver (./setup-machine installs them)"
)


def sample_results() -> RunResults:
    results = RunResults(run_id="browser", matrix="matrix.yaml", started_at="t", harness_version="0", finished_at="t2")
    results.hosts = {
        "bookworm-amd64": HostRecord("bookworm-amd64", "bookworm", "amd64", "podman", "crun", facts=HostFacts(kernel="6.1.0-cloud-amd64", raw={"kernel": "6.1.0-cloud-amd64"})),
        "trixie-arm64": HostRecord("trixie-arm64", "trixie", "arm64", "podman", "crun", facts=HostFacts(kernel="6.12.0-cloud-arm64", raw={"kernel": "6.12.0-cloud-arm64"})),
    }
    results.images = {"debian-bookworm": ImageRecord("debian-bookworm", "bookworm"), "debian-bullseye": ImageRecord("debian-bullseye", "bullseye")}
    outcomes = {("bookworm-amd64", "debian-bookworm"): "pass", ("trixie-arm64", "debian-bookworm"): "fail",
                ("bookworm-amd64", "debian-bullseye"): "pass", ("trixie-arm64", "debian-bullseye"): "pass"}
    for (host, image), outcome in outcomes.items():
        cell = CellResult(host, image, "useradd", outcome, 1.0, stdout=f"output of {host}/{image} <b>not bold</b>", reproduce=["podman run x"])
        results.cells[cell.key] = cell
        results.pairs[f"{host}/{image}"] = classify(Policy(), results.hosts[host], results.images[image], [cell], None)
    return results


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_filter_and_drill_down(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page = render_report(sample_results(), tmp_path)
    browser.get(page.as_uri())
    assert "Container supportability matrix" in browser.find_element(By.TAG_NAME, "h1").text
    regression = browser.find_element(By.ID, "pair-trixie-arm64--debian-bookworm")
    assert regression.get_attribute("data-class") == "supported-fail"
    assert "supported, FAILING" in regression.text

    Select(browser.find_element(By.ID, "filter-arch")).select_by_visible_text("amd64")
    assert not browser.find_element(By.ID, "host-trixie-arm64").is_displayed()
    assert browser.find_element(By.ID, "host-bookworm-amd64").is_displayed()
    Select(browser.find_element(By.ID, "filter-arch")).select_by_visible_text("all")
    assert browser.find_element(By.ID, "host-trixie-arm64").is_displayed()

    Select(browser.find_element(By.ID, "filter-class")).select_by_value("supported-fail")
    assert not browser.find_element(By.ID, "pair-bookworm-amd64--debian-bookworm").is_displayed()
    assert regression.is_displayed()

    regression.find_element(By.TAG_NAME, "a").click()
    assert browser.current_url.endswith("#cell-trixie-arm64--debian-bookworm")
    detail = browser.find_element(By.ID, "cell-trixie-arm64--debian-bookworm")
    assert "output of trixie-arm64/debian-bookworm <b>not bold</b>" in detail.text  # escaped, shown as text
    assert "podman run x" in detail.find_element(By.CSS_SELECTOR, "pre.reproduce").text

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-drill-down.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_the_published_statement_in_a_browser(browser, tmp_path):
    """The vendor's page: tiers in words, a known issue's footnote that its link reaches, no failing pair."""
    from selenium.webdriver.common.by import By

    from harness.report.publish import blockers, publish

    results = sample_results()
    known = CellResult("trixie-arm64", "debian-bookworm", "useradd", "known-issue", 1.0, message="known issue https://bugs.example/9: useradd vs SELinux", bug="https://bugs.example/9")
    results.cells[known.key] = known
    results.pairs["trixie-arm64/debian-bookworm"] = classify(Policy(), results.hosts["trixie-arm64"], results.images["debian-bookworm"], [known], None)
    assert blockers(results) == []
    publish(results, tmp_path)
    browser.get((tmp_path / "support.html").as_uri())
    table = browser.find_element(By.ID, "support")
    assert [th.text for th in table.find_elements(By.CSS_SELECTOR, "th.release")] == ["bookworm", "trixie"]
    cell = table.find_element(By.CSS_SELECTOR, "td[data-tier='supported with known issues']")
    assert cell.text == "supported with known issues1"
    cell.find_element(By.TAG_NAME, "a").click()
    assert browser.execute_script("return location.hash") == "#note-1"
    assert "useradd vs SELinux" in browser.find_element(By.ID, "note-1").text
    assert "FAILING" not in browser.page_source
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "support-statement.png"))
    shutil.copyfile(tmp_path / "support.html", ARTIFACTS / "support.html")
