"""A reference image behind a password-protected TLS registry, for real: Debian's docker-registry
with htpasswd (bcrypt) and a certificate from a CA made here, the image pushed there by the
harness's client with the same credentials, then pulled by a VM host's own podman with the
matrix's auth file and CA, and by a CRI host's containerd too (ctr, into the CRI plugin's store);
the password appears in nothing the run writes. Wrong credentials stop the run before any host
boots, in one line."""

from __future__ import annotations

import base64
import crypt  # noqa: deprecated in 3.11, still the standard library's bcrypt (libxcrypt's)
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from harness.cache import BuildCache, default_root
from harness.config.load import load_matrix
from harness.config.registries import RegistryAccess
from harness.images.build import build_image
from harness.registry.push import RegistryClient
from tests.conftest import BOOKWORM_IMAGE, add_scenario, free_port, project_copy, run_harness, write_matrix

pytestmark = pytest.mark.vm

PASSWORD = "Pw-7f3a-never-in-reports"


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    directory = project_copy(tmp_path_factory.mktemp("private"))
    tls = directory / "tls"
    tls.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=harness test CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=tls)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=registry", "-keyout", "server.key", "-out", "server.csr", cwd=tls)
    (tls / "san.ext").write_text("subjectAltName=IP:127.0.0.1,IP:10.0.2.2\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=tls)
    (tls / "htpasswd").write_text(f"qe:{crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
    port = free_port()
    (tls / "config.yml").write_text(
        f"version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {tls / 'store'}}}}}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  tls: {{certificate: {tls / 'server.crt'}, key: {tls / 'server.key'}}}\n"
        f"auth:\n  htpasswd: {{realm: harness-test, path: {tls / 'htpasswd'}}}\n")
    server = subprocess.Popen(["docker-registry", "serve", str(tls / "config.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=1)
        except OSError as exc:
            if "wrong version number" in str(exc) or "Bad Request" in str(exc) or getattr(exc, "code", 0) == 400:
                break  # it speaks TLS
            time.sleep(0.1)
    auth = {"auths": {host: {"auth": base64.b64encode(f"qe:{PASSWORD}".encode()).decode()}}}
    (directory / "auth.json").write_text(json.dumps(auth))
    (directory / "wrong.json").write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(b"qe:not-it").decode()}}}))
    # The catalogue's debian-bookworm, pushed by the harness's client with the same credentials.
    write_matrix(directory, f"version: 1\nhosts:\n  - {{name: h, release: bookworm, arch: amd64, engine: podman}}\nimages:{BOOKWORM_IMAGE}scenarios: [useradd]\n", "base.yaml")
    build, _ = build_image(load_matrix(directory / "base.yaml").image("debian-bookworm"), "amd64", "http://deb.debian.org/debian", BuildCache(default_root(), "images"))
    client = RegistryClient(f"https://{host}", access=RegistryAccess(host, directory / "auth.json", tls / "ca.crt"))
    client.tag_manifest("vendor/app", "1", pushed := client.push_archive("vendor/app", build.archive, "amd64"))
    add_scenario(directory / "scenarios", "which-debian", "#!/bin/sh\necho \"debian $(cat /etc/debian_version)\"\n")
    yield directory, host, build, pushed
    server.terminate()
    server.wait()


def matrix(host: str, auth: str, extra_host: str = "") -> str:
    return f"""
version: 1
retries: 0
registries:
  - {{host: "{host}", auth_file: {auth}, ca_file: tls/ca.crt}}
hosts:
  - {{name: bookworm-amd64, release: bookworm, arch: amd64, engine: podman, runtime: crun}}
{extra_host}images:
  - {{name: vendor-app, reference: "{host}/vendor/app:1", release: bookworm}}
scenarios: [which-debian]
"""


def test_the_host_pulls_it_with_the_matrix_credentials_and_ca_which_no_report_shows(private):
    directory, host, build, pushed = private
    write_matrix(directory, matrix(host, "auth.json"))
    proc, reports = run_harness(directory, f"private-{os.getpid()}", "--quiet")
    data = json.loads((reports / "results.json").read_text())
    cell = data["cells"]["bookworm-amd64/vendor-app/which-debian"]
    assert cell["outcome"] == "pass" and f"debian {build.debian_version}" in cell["stdout"], (cell, proc.stdout[-2000:])
    delivery = data["deliveries"]["bookworm-amd64/vendor-app"]
    assert delivery["image_id"] == build.image_id and delivery["reference"] == f"10.0.2.2:{host.split(':')[1]}/vendor/app:1"
    assert "--authfile" in delivery["command"] and "--tls-verify=true" in delivery["command"], delivery
    # By hand: a login (the per-pull auth file the harness used is gone) and the same pull.
    login, pull = cell["reproduce"][:2]
    guest_host = delivery["reference"].partition("/")[0]
    assert login == f"podman login --tls-verify=true {guest_host}  # the credentials in {directory / 'auth.json'}", cell["reproduce"]
    assert pull == f"podman pull --tls-verify=true {delivery['reference']}", cell["reproduce"]
    facts = data["images"]["vendor-app"]["builds"]["amd64"]
    assert facts["manifest_digest"] == pushed.manifest_digest and data["images"]["vendor-app"]["facts_error"] == ""
    token = base64.b64encode(f"qe:{PASSWORD}".encode()).decode()
    for path in reports.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert PASSWORD.encode() not in text and token.encode() not in text, path


@pytest.mark.slow  # trixie's CRI host, built cold, is test_vm_pods.py's (also slow): CI leaves it out for its time
def test_a_cri_hosts_containerd_pulls_it_with_the_same_ca_and_credentials(private):
    directory, host, build, _ = private
    write_matrix(directory, matrix(host, "auth.json", "  - {name: cri-trixie, release: trixie, arch: amd64, engine: podman, runtime: crun, via: cri}\n"))
    proc, reports = run_harness(directory, f"private-cri-{os.getpid()}", "--quiet", "-k", "cri-trixie")
    data = json.loads((reports / "results.json").read_text())
    # containerd's own store (k8s.io) had it, or the CRI could not have made the container.
    cri = data["cells"]["cri-trixie/vendor-app/which-debian"]
    assert cri["outcome"] == "pass" and f"debian {build.debian_version}" in cri["stdout"], (cri["message"], cri["stderr"][-1000:], proc.stdout[-2000:])
    assert cri["command"][:3] == ["python3", "/usr/lib/harness-cri/cri.py", "run"], cri["command"]
    token = base64.b64encode(f"qe:{PASSWORD}".encode()).decode()
    for path in reports.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert PASSWORD.encode() not in text and token.encode() not in text, path


def test_wrong_credentials_stop_the_run_in_one_line_without_the_secret(private):
    directory, host, _, _ = private
    write_matrix(directory, matrix(host, "wrong.json"))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(directory / "matrix.yaml"), "--reports", str(directory / "wrong-reports")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"(the credentials from {directory / 'wrong.json'} were refused)" in proc.stderr and "not-it" not in proc.stderr, proc.stderr
    assert not (directory / "wrong-reports" / "results.json").exists()
