"""The pod paths for real: cells as generated Pod specs played by trixie's podman (`via: pod`), and
as CRI pod sandboxes run by trixie's containerd through the CRI API (`via: cri`), beside the engine
path (bookworm's podman cannot play pods on these hosts: a validation error). What is checked is read from the guests:
a pod's container has the pod's name as its hostname; a read-only root and a non-root user asked
for in the spec hold on both paths; an option the Pod spec cannot say is not applicable there."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import BOOKWORM_IMAGE, add_scenario

pytestmark = [pytest.mark.vm, pytest.mark.slow]  # CI leaves it out for its time (cold): see the README

HOSTS = {
    "pod-trixie": "release: trixie, arch: amd64, engine: podman, runtime: crun, via: pod",
    "cri-trixie": "release: trixie, arch: amd64, engine: podman, runtime: crun, via: cri",
    "engine-bookworm": "release: bookworm, arch: amd64, engine: podman, runtime: crun",
}
OWN = {
    "hostname": ("#!/bin/sh\nhostname\n", ""),
    "readonly-nonroot": (
        "#!/bin/sh\n[ \"$(id -u):$(id -g)\" = 1000:1000 ] || { echo \"runs as $(id -u):$(id -g)\"; exit 1; }\n"
        "case \",$(awk '$2 == \"/\" {o = $4} END {print o}' /proc/mounts),\" in *,ro,*) echo held ;; *) echo 'the root file system is writable'; exit 1 ;; esac\n",
        "options: {read_only: true, user: '1000:1000'}\n",
    ),
    "pids-limit": ("#!/bin/sh\ncat /sys/fs/cgroup/pids.max\n", "options: {pids_limit: 64}\n"),
    # Fails only as a pod (its container is named for the pod): blame's one swap there says so.
    "not-in-a-pod": ("#!/bin/sh\ncase $(hostname) in harness-*) echo \"in pod $(hostname)\"; exit 1 ;; esac\n", ""),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pods")
    for name, (script, options) in OWN.items():
        add_scenario(directory / "scenarios", name, script, f"purpose: the pod path's {name}\ndimension: engine\n{options}")
    hosts = "".join(f"  - {{name: {name}, {spec}}}\n" for name, spec in HOSTS.items())
    (directory / "matrix.yaml").write_text(f"""
version: 1
retries: 0
hosts:
{hosts}images:{BOOKWORM_IMAGE}scenarios: [useradd, threads, hostname, readonly-nonroot, pids-limit, not-in-a-pod]
""")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "matrix.yaml", f"--run-id=pods-{os.getpid()}", "--quiet"],
                          cwd=directory, capture_output=True, text=True)
    print(proc.stdout[-5000:], proc.stderr[-3000:])
    return proc, json.loads((directory / "reports" / "results.json").read_text())


def cell(data: dict, host: str, scenario: str) -> dict:
    return data["cells"][f"{host}/debian-bookworm/{scenario}"]


PATHS = {"pod-trixie": (["podman", "kube", "play"], "pod"), "cri-trixie": (["python3", "/usr/lib/harness-cri/cri.py", "run"], "cri (containerd's CRI plugin; no kubelet)")}


@pytest.mark.parametrize("host", list(PATHS))
def test_useradd_and_threads_pass_as_pods_whose_container_is_named_for_its_pod(run, host):
    _, data = run
    command, said = PATHS[host]
    assert data["hosts"][host]["error"] == "" and data["hosts"][host]["settings"]["via"] == said, data["hosts"][host]
    for scenario in ("useradd", "threads"):
        result = cell(data, host, scenario)
        assert result["outcome"] == "pass", (scenario, result["message"], result["stdout"][-500:], result["stderr"][-500:])
        assert result["command"][:len(command)] == command
    assert cell(data, host, "hostname")["stdout"].strip().startswith("harness-hostname-")  # the pod's name, read in the container


def test_a_cri_host_reports_containerd_and_the_cri_api_version_its_plugin_answers(run):
    _, data = run
    raw = data["hosts"]["cri-trixie"]["facts"]["raw"]
    assert raw["cri_runtime"].startswith("containerd ") and raw["cri_api_version"] == "v1" and raw["containerd_version"], raw


def test_the_engine_path_beside_them_runs_no_pod(run):
    _, data = run
    assert "via" not in data["hosts"]["engine-bookworm"]["settings"]
    assert not cell(data, "engine-bookworm", "hostname")["stdout"].startswith("harness-")  # podman run: the container's ID
    assert cell(data, "engine-bookworm", "pids-limit")["stdout"].strip() == "64"


@pytest.mark.parametrize("host", list(HOSTS))
def test_a_read_only_root_and_a_non_root_user_hold_on_each_path(run, host):
    _, data = run
    result = cell(data, host, "readonly-nonroot")
    assert result["outcome"] == "pass" and result["stdout"].strip() == "held", (result["message"], result["stdout"], result["stderr"])


@pytest.mark.parametrize("host", list(PATHS))
def test_an_option_the_pod_spec_cannot_say_is_not_applicable_there_never_dropped(run, host):
    _, data = run
    result = cell(data, host, "pids-limit")
    assert result["outcome"] == "not-applicable" and "pids_limit" in result["message"], result


@pytest.mark.parametrize("host", list(PATHS))
def test_a_failure_only_the_pod_causes_is_blamed_on_orchestration_by_rerunning_it_without_the_pod(run, host):
    _, data = run
    assert cell(data, host, "not-in-a-pod")["outcome"] == "fail" and cell(data, "engine-bookworm", "not-in-a-pod")["outcome"] == "pass"
    verdict = next(v for v in data["verdicts"].values() if f"{host}/debian-bookworm/not-in-a-pod" in v["cells"])
    assert verdict["layer"] == "orchestration" and verdict["confirmed"] is True, verdict
    swapped = [e for e in verdict["experiments"] if e["layer"] == "orchestration"]
    assert swapped and swapped[0]["outcome"] == "pass" and swapped[0]["command"][:2] == ["podman", "run"], swapped
