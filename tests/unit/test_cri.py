"""The CRI path's side in the harness: what the in-guest client is asked, and how its answer is
judged (a refused call is the engine's, a container's exit is the cell's)."""

from __future__ import annotations

import json
import os
import subprocess

from harness.config.model import ScenarioOptions
from harness.engines import cri
from harness.results.model import ExecRecord


def test_options_become_the_cri_containers_fields():
    asked = cri.cell("harness-x-1", "sha256:abc", ("/var/lib/harness/scenarios/x", "/harness/scenarios/x"), ["/harness/scenarios/x/run"],
                     ScenarioOptions(memory="128m", user="1000:1001", read_only=True, env=(("A", "b"),), cap_add=("CAP_NET_RAW",)), 60.0)
    assert asked == {"name": "harness-x-1", "image": "sha256:abc", "mount": ["/var/lib/harness/scenarios/x", "/harness/scenarios/x"],
                     "command": ["/harness/scenarios/x/run"], "timeout": 60.0, "env": [["A", "b"]], "read_only": True, "cap_add": ["NET_RAW"],
                     "memory_bytes": 128 * 2**20, "uid": 1000, "gid": 1001}
    assert cri.cell("n", "i", ("a", "b"), ["c"], ScenarioOptions(user="nobody"), 1.0)["username"] == "nobody"  # the CRI takes a name too


def test_what_the_cri_cannot_say_is_named():
    assert cri.unsupported(ScenarioOptions(memory="1g", user="nobody", read_only=True)) == ""
    assert cri.unsupported(ScenarioOptions(pids_limit=64)).startswith("pids_limit: ")
    assert cri.unsupported(ScenarioOptions(security_opt=("seccomp=unconfined",))).startswith("security_opt: ")


def test_a_private_registrys_pull_trusts_its_ca_and_reads_the_credentials_from_a_file_no_record_holds(tmp_path):
    (tmp_path / "user").write_text("qe:pa ss$(x)")
    (tmp_path / "ctr").write_text('#!/bin/sh\nfor a; do echo "$a"; done\n')
    (tmp_path / "ctr").chmod(0o755)
    argv = cri.pull("10.0.2.2:5000/vendor/app:1", True, "/etc/containers/certs.d/10.0.2.2:5000/ca.crt", str(tmp_path / "user"))
    assert "pa ss" not in " ".join(argv)
    said = subprocess.run(argv, capture_output=True, text=True, check=True, env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert said.stdout.splitlines() == ["--namespace", "k8s.io", "images", "pull", "--tlscacert", "/etc/containers/certs.d/10.0.2.2:5000/ca.crt",
                                        "--user", "qe:pa ss$(x)", "10.0.2.2:5000/vendor/app:1"]
    assert cri.pull("10.0.2.2:5000/h:1", False) == ["ctr", "--namespace", "k8s.io", "images", "pull", "--plain-http", "10.0.2.2:5000/h:1"]


def answer(**said) -> ExecRecord:
    base = {"exit_code": None, "stdout": "", "stderr": "", "timed_out": False}
    return ExecRecord(cri.RUN, 0, json.dumps(base | said) + "\n", "", 3.0)


def test_the_containers_exit_and_log_are_the_cells():
    done = cri.execution(answer(exit_code=3, stdout="out\n", stderr="err\n"), {"name": "n"})
    assert (done.exit_code, done.stdout, done.stderr, done.argv[-1]) == (3, "out\n", "err\n", '{"name": "n"}')
    assert cri.execution(answer(exit_code=137, reason="OOMKilled"), {}).oom_killed
    assert cri.execution(answer(timed_out=True), {}).timed_out


def test_a_call_the_cri_refused_or_a_client_that_said_nothing_is_the_engines_failure():
    refused = cri.execution(answer(error="RunPodSandbox: UNKNOWN: failed to get sandbox image"), {})
    assert refused.exit_code == 125 and "RunPodSandbox: UNKNOWN" in refused.stderr
    assert cri.execution(ExecRecord(cri.RUN, 1, "", "Traceback ...", 1.0), {}).exit_code == 125


def test_the_cri_protos_gogo_options_are_dropped_and_nothing_else():
    from harness.hosts.build import without_gogo

    proto = ('syntax = "proto3";\npackage runtime.v1;\nimport "github.com/gogo/protobuf/gogoproto/gogo.proto";\n\n'
             'option (gogoproto.stringer_all) =  true;\noption go_package = "k8s.io/cri-api/pkg/apis/runtime/v1";\n'
             'message A { string b = 1 [(gogoproto.customname) = "B", (gogoproto.nullable) = false]; int64 c = 2; }\n')
    assert without_gogo(proto) == ('syntax = "proto3";\npackage runtime.v1;\n\noption go_package = "k8s.io/cri-api/pkg/apis/runtime/v1";\n'
                                   'message A { string b = 1; int64 c = 2; }\n')


def test_a_private_registrys_pull_by_hand_keeps_tls_and_asks_for_the_credentials_whose_per_pull_file_is_gone():
    from pathlib import Path

    from harness.config.model import ScenarioSpec
    from harness.hosts.cell_paths import CriPath
    from harness.results.model import DeliveryMethod, DeliveryRecord

    scenario = ScenarioSpec("s", Path("s"), Path("s/run"), "p", None)
    ran = ["sh", "-c", "...", "10.0.2.2:5000/vendor/app:1", "/run/harness-auth/0123/user", "ctr"]
    private = DeliveryRecord("h", "app", "sha256:ab", True, 1.0, ran, method=DeliveryMethod.PULL, reference="10.0.2.2:5000/vendor/app:1",
                             tls_verify=True, credentials="/qe/auth.json")
    pull, _ = CriPath(guest=None).by_hand(private, scenario, "n", 60.0)
    assert pull == "ctr --namespace k8s.io images pull --user USER 10.0.2.2:5000/vendor/app:1  # USER and its password as in /qe/auth.json"
    ours = DeliveryRecord("h", "app", "sha256:ab", True, 1.0, [], method=DeliveryMethod.PULL, reference="10.0.2.2:8008/harness/app:x")
    assert CriPath(guest=None).by_hand(ours, scenario, "n", 60.0)[0] == "ctr --namespace k8s.io images pull --plain-http 10.0.2.2:8008/harness/app:x"
