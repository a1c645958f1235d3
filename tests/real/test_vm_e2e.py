"""End to end, for real: build and boot a libvirt VM host, load a real image with the host's own
podman, run the useradd scenario and a failing one, and read the rendered report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cache import BuildCache, default_root
from harness.config.model import PROBE_IMAGE
from harness.images.build import build_image
from harness.registry.push import RegistryClient
from harness.registry.server import RegistryServer, registry_root
from harness.results import store
from tests.conftest import BOOKWORM_IMAGE, add_scenario, free_port, project_copy, run_harness, write_matrix

pytestmark = pytest.mark.vm
RUN_ID = f"e2e-{os.getpid()}"

# A registry of this module's own: its log holds this run's pulls alone, whatever else runs on the
# machine (another run on the default port would serve this one from its own storage and log).
PORT = free_port()
# Same host recipe as the default matrix's bookworm-amd64, so the build cache serves both.
MATRIX = f"""
version: 1
registry_port: {PORT}
hosts:
  - name: bookworm-amd64
    release: bookworm
    arch: amd64
    engine: podman
    runtime: crun
images:{BOOKWORM_IMAGE}  - {{name: bookworm-python3, base: debian-bookworm, packages: [python3]}}
scenarios:
  - useradd
  - exits-3
  - hangs
  - python-runtime
  - exits-137
  - oom
  - service-dies
"""


REGISTRY_LOG = registry_root(default_root(), PORT) / "registry.log"


@pytest.fixture(scope="module")
def log_before() -> int:
    """Where the registry's log stood before this module's run (a port used before keeps its log)."""
    return REGISTRY_LOG.stat().st_size if REGISTRY_LOG.exists() else 0


@pytest.fixture(scope="module")
def run(tmp_path_factory, log_before):
    directory = tmp_path_factory.mktemp("e2e")
    project_copy(directory)
    add_scenario(directory / "scenarios", "hangs", "#!/bin/sh\nsleep infinity\n", "purpose: hangs\ndimension: engine\ntimeout: 2\n")
    add_scenario(directory / "scenarios", "exits-3", "#!/bin/sh\necho 'about to fail <b>loudly</b>'\necho oops >&2\nexit 3\n")
    # Exits 137 by itself, at once: not the harness's timeout.
    add_scenario(directory / "scenarios", "exits-137", "#!/bin/sh\nexit 137\n", "purpose: exits 137\ndimension: engine\ntimeout: 60\n")
    # Goes past its memory limit: the kernel's OOM killer ends it.
    add_scenario(directory / "scenarios", "oom", "#!/bin/sh\nhead -c 512M /dev/zero | tail -n 1 >/dev/null\nexit $?\n",
                 "purpose: exceeds its memory limit\ndimension: kernel\ntimeout: 120\noptions: {memory: 64m}\n")
    # A service whose init dies at once: the scenario never runs in it.
    add_scenario(directory / "scenarios", "service-dies", "#!/bin/sh\necho never\n",
                 "purpose: its init dies\ndimension: engine\nmode: service\ninit: [/bin/sh, -c, 'echo init dying; exit 3']\n")
    write_matrix(directory, MATRIX)
    # Blame is tested in test_vm_blame*.py; here it would only add 40 experiments (14 minutes).
    # A fresh image store: the pulls and the layer reuse within one run are what is tested here.
    return run_harness(directory, RUN_ID, "--no-blame", "--image-stores", "fresh")


def test_run_exits_with_pytest_status(run):
    proc, _ = run
    assert proc.returncode == 1, "one cell fails on purpose, so the run reports failure"
    assert "10 failed, 3 passed, 1 skipped" in proc.stdout


def test_exits_that_are_not_the_images_plain_failure_say_what_happened(run):
    _, reports = run
    cells = json.loads((reports / "results.json").read_text())["cells"]
    own = cells["bookworm-amd64/debian-bookworm/exits-137"]
    assert (own["outcome"], own["message"], own["exit_code"]) == ("fail", "the scenario exited with 137", 137)
    oom = cells["bookworm-amd64/debian-bookworm/oom"]
    assert (oom["outcome"], oom["message"]) == ("fail", "killed: out of memory (exit 137)"), oom
    dead = cells["bookworm-amd64/debian-bookworm/service-dies"]
    assert dead["outcome"] == "fail" and dead["message"].startswith("the container exited (status 3) before the scenario started"), dead
    assert "init dying" in dead["stdout"] and "never" not in dead["stdout"]


def test_results_record_real_host_and_cells(run):
    _, reports = run
    results = json.loads((reports / "results.json").read_text())
    host = results["hosts"]["bookworm-amd64"]
    assert host["facts"]["raw"]["os_codename"] == "bookworm"
    assert host["facts"]["machine"] == "x86_64"
    assert host["facts"]["kernel"].endswith("-cloud-amd64")
    assert host["facts"]["engine"] == "podman" and host["facts"]["engine_version"].startswith("4.")
    assert "crun" in host["facts"]["runtime_version"]
    assert host["boot_seconds"] > 0 and host["accel"] in ("kvm", "qemu")
    console = (reports / host["console_log"]).read_text()
    assert console.count("harness-stage1: delivery disk mounted") == 1 and console.count("harness-init: guest agent starting") == 1

    useradd = results["cells"]["bookworm-amd64/debian-bookworm/useradd"]
    assert useradd["outcome"] == "pass", useradd
    assert "matrixuser:x:" in useradd["stdout"]
    assert useradd["command"][:2] == ["podman", "run"] and "--runtime" in useradd["command"]

    failing = results["cells"]["bookworm-amd64/debian-bookworm/exits-3"]
    assert failing["outcome"] == "fail" and failing["exit_code"] == 3
    assert failing["stderr"].strip() == "oops"

    hung = results["cells"]["bookworm-amd64/debian-bookworm/hangs"]
    assert hung["outcome"] == "timeout" and hung["exit_code"] in (124, 137)  # the guest's `timeout`, scaled for TCG

    # debian-bookworm has no python3: one container per image listed what each lacks of every
    # scenario's needs, and the cell is judged from it without a container of its own.
    python = results["cells"]["bookworm-amd64/bookworm-python3/python-runtime"]
    assert python["outcome"] == "pass", python
    skipped = results["cells"]["bookworm-amd64/debian-bookworm/python-runtime"]
    assert skipped["outcome"] == "not-applicable" and skipped["message"] == "not applicable: the image has no python3"
    assert skipped["stdout"].startswith("missing: ") and skipped["command"][:2] == ["podman", "run"]

    delivery = results["deliveries"]["bookworm-amd64/debian-bookworm"]
    assert delivery["ok"] and delivery["image_id"].startswith("sha256:")
    assert delivery["method"] == "pull" and delivery["platform"] == "linux/amd64" and not delivery["mismatch"]


def test_a_layered_image_reuses_its_bases_layer_on_the_host(run, log_before):
    _, reports = run
    results = json.loads((reports / "results.json").read_text())
    base, app = results["images"]["debian-bookworm"], results["images"]["bookworm-python3"]
    assert base["builds"]["amd64"]["layers"] == 1 and app["builds"]["amd64"]["layers"] == 2
    assert app["builds"]["amd64"]["labels"]["org.opencontainers.image.base.digest"] == base["builds"]["amd64"]["manifest_digest"]
    # The host's podman pulled the base first, so of the application image it fetched its own layer
    # only: the registry's access log lists what the guest really downloaded.
    pull = results["deliveries"]["bookworm-amd64/bookworm-python3"]
    assert pull["ok"] and pull["reference"].startswith("10.0.2.2:")
    base_blobs = set(re.findall(r"Copying blob (sha256:[0-9a-f]{64})", results["deliveries"]["bookworm-amd64/debian-bookworm"]["output"]))
    with REGISTRY_LOG.open(errors="replace") as fh:
        fh.seek(log_before)
        log = fh.read()  # this run's own window of the log
    fetched = set(re.findall(r'"GET /v2/harness/bookworm-python3/blobs/(sha256:[0-9a-f]{64})', log)) - {app["builds"]["amd64"]["image_id"]}
    assert len(base_blobs) == 1 and len(fetched) == 1 and not fetched & base_blobs, (base_blobs, fetched)
    assert results["cells"]["bookworm-amd64/bookworm-python3/useradd"]["outcome"] == "pass"


def test_report_shows_the_matrix_and_escapes_output(run):
    _, reports = run
    html = (reports / "matrix.html").read_text()
    assert 'id="host-bookworm-amd64"' in html
    assert 'id="pair-bookworm-amd64--debian-bookworm"' in html
    assert 'data-class="supported-fail"' in html  # a bookworm image on a bookworm host, one scenario failing
    assert "about to fail &lt;b&gt;loudly&lt;/b&gt;" in html
    assert "matrixuser:x:" in html
    assert (reports / "junit.xml").exists()


def test_no_domain_is_left_running(run):
    import libvirt

    conn = libvirt.open("qemu:///system")
    try:
        names = [d.name() for d in conn.listAllDomains()]
    finally:
        conn.close()
    assert not [n for n in names if n.startswith(f"harness-{RUN_ID}-")], names


def test_reuse_boots_no_vm_when_nothing_changed(run):
    proc, reports = run
    console = reports / "hosts" / "bookworm-amd64" / "console.log"
    before = console.stat().st_mtime_ns
    matrix = reports.parent / "matrix.yaml"
    again = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(matrix), "--reports", str(reports), "--reuse"], capture_output=True, text=True
    )
    assert "10 failed, 3 passed, 1 skipped" in again.stdout
    assert console.stat().st_mtime_ns == before, "a host was booted (its console log was copied again)"
    cells = json.loads((reports / "results.json").read_text())["cells"]
    assert all(c["message"].startswith("reused from the result cache") for c in cells.values())


def test_no_host_boots_for_cells_whose_image_cannot_be_built(tmp_path):
    """The host's only image fails to build (a package no archive has): its cells are errors naming
    the build, and libvirt never started the host's domain (QEMU's log of it, which libvirt writes
    at every start of a domain, does not exist)."""
    project_copy(tmp_path)
    bad = BOOKWORM_IMAGE.replace("debian-bookworm", "broken").replace("[passwd]", "[no-such-package-xyz]")
    run_id = f"unbuilt-{os.getpid()}"
    write_matrix(tmp_path, MATRIX.split("images:")[0] + f"images:{bad}scenarios: [useradd, exits-3]\n")
    add_scenario(tmp_path / "scenarios", "exits-3", "#!/bin/sh\nexit 3\n")
    proc, reports = run_harness(tmp_path, run_id)
    assert proc.returncode == 1 and "2 errors" in proc.stdout
    cells = json.loads((reports / "results.json").read_text())["cells"]
    assert {c["outcome"] for c in cells.values()} == {"error"}
    assert all(c["message"].startswith("image broken for amd64: mmdebstrap failed") for c in cells.values()), cells
    started = list(Path("/var/log/libvirt/qemu").glob(f"harness-{run_id}-*.log"))
    assert started == [], f"the host was booted for cells that could not run: {started}"


def test_a_not_portable_image_is_reused_without_booting_its_host(tmp_path):
    """An image whose index has no build for the host's platform (arm64 only, for an amd64 host): the
    host's podman refuses it, the cell is an error saying it is not portable and the pair is
    not-portable; a --reuse rerun takes that from the result cache, and libvirt never starts the host."""
    port = free_port()
    server = RegistryServer(registry_root(default_root(), port), f"127.0.0.1:{port}")
    client = RegistryClient(server.start())
    try:
        probe, _ = build_image(PROBE_IMAGE, "arm64", "http://deb.debian.org/debian", BuildCache(default_root(), "images"))
        client.push_index("vendor/arm-only", "1", [client.push_archive("vendor/arm-only", probe.archive, "arm64")])
        project_copy(tmp_path)
        image = f'\n  - {{name: arm-only, reference: "127.0.0.1:{port}/vendor/arm-only:1", tls_verify: false, release: bookworm}}\n'
        write_matrix(tmp_path, MATRIX.replace(f"registry_port: {PORT}", f"registry_port: {port}").split("images:")[0] + f"images:{image}scenarios: [useradd]\n")
        first, reports = run_harness(tmp_path, f"refused-{os.getpid()}")
        data = json.loads((reports / "results.json").read_text())
        cell = data["cells"]["bookworm-amd64/arm-only/useradd"]
        assert cell["outcome"] == "error" and "not portable to bookworm-amd64" in cell["message"], cell
        assert data["pairs"]["bookworm-amd64/arm-only"]["klass"] == "not-portable"
        assert "no image found in image index for architecture amd64" in data["deliveries"]["bookworm-amd64/arm-only"]["output"]  # podman's own words
        again, reports = run_harness(tmp_path, f"refused-again-{os.getpid()}", "--reuse")
    finally:
        server.stop()
    data = json.loads((reports / "results.json").read_text())
    cell = data["cells"]["bookworm-amd64/arm-only/useradd"]
    assert cell["message"].startswith("reused from the result cache") and "not portable" in cell["message"], cell
    assert data["pairs"]["bookworm-amd64/arm-only"]["klass"] == "not-portable"
    started = list(Path("/var/log/libvirt/qemu").glob(f"harness-refused-again-{os.getpid()}-*.log"))
    assert started == [], f"the host was booted to be refused again: {started}"


def test_sigterm_to_a_run_with_workers_leaves_no_vm_running(tmp_path):
    """CI cancelling a job: SIGTERM to `harness run` while two workers each have a VM host in a
    cell. Every VM of the run is gone afterwards (libvirt lists none), and the cells finished before
    are kept."""
    import signal
    import time

    import libvirt

    project_copy(tmp_path)
    add_scenario(tmp_path / "scenarios", "hangs", "#!/bin/sh\nsleep infinity\n", "purpose: hangs\ndimension: engine\ntimeout: 300\n")
    hosts = MATRIX.split("hosts:")[1].split("images:")[0]
    second = hosts.replace("name: bookworm-amd64", "name: bookworm-amd64-again")  # the same build, a second VM
    write_matrix(tmp_path, MATRIX.split("hosts:")[0] + f"hosts:{hosts}{second}images:{BOOKWORM_IMAGE}scenarios: [useradd, hangs]\n")
    run_id = f"sigterm-{os.getpid()}"
    reports = tmp_path / "reports"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(tmp_path / "matrix.yaml"), "--reports", str(reports), f"--run-id={run_id}",
         "--workers", "2", "--no-blame", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )

    def domains() -> list[str]:
        conn = libvirt.open("qemu:///system")
        try:
            return [d.name() for d in conn.listAllDomains() if d.name().startswith(f"harness-{run_id}-") and d.isActive()]
        finally:
            conn.close()

    try:
        deadline = time.monotonic() + 900
        while not (reports / "results.json").exists() or len(store.load(reports / "results.json").cells) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before both useradd cells"
            time.sleep(1)
        time.sleep(5)  # both hosts are in their hanging cell
        assert len(domains()) == 2
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    left = domains()
    assert left == [], f"VMs left running after SIGTERM: {left}\n{out[-3000:]}"
    cells = store.load(reports / "results.json").cells
    assert {k: c.outcome for k, c in cells.items()} == {"bookworm-amd64/debian-bookworm/useradd": "pass", "bookworm-amd64-again/debian-bookworm/useradd": "pass"}
    assert proc.returncode != 0 and "Traceback" not in out, out[-3000:]
