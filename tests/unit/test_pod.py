"""The pod path's spec: a scenario's options as a Pod's fields, and never silently dropped."""

from __future__ import annotations

import yaml

from harness.config.model import ScenarioOptions
from harness.engines.pod import pod_spec, unsupported


def spec(**options) -> dict:
    return yaml.safe_load(pod_spec("harness-x-1", "sha256:" + "a" * 64, ("/var/lib/harness/scenarios/x", "/harness/scenarios/x"), ["/harness/scenarios/x/run"], ScenarioOptions(**options)))


def test_the_scenario_is_the_containers_command_from_a_read_only_host_path():
    pod = spec()
    container = pod["spec"]["containers"][0]
    assert pod["kind"] == "Pod" and pod["metadata"]["name"] == "harness-x-1" and pod["spec"]["restartPolicy"] == "Never"
    assert container["image"] == "a" * 64 and container["imagePullPolicy"] == "Never" and container["command"] == ["/harness/scenarios/x/run"]
    assert container["volumeMounts"] == [{"name": "scenario", "mountPath": "/harness/scenarios/x", "readOnly": True}]
    assert pod["spec"]["volumes"][0]["hostPath"] == {"path": "/var/lib/harness/scenarios/x", "type": "Directory"}
    assert "securityContext" not in container and "resources" not in container


def test_options_become_the_specs_fields():
    container = spec(memory="128m", user="1000:1001", read_only=True, env=(("A", "b c"),), cap_add=("CAP_SYS_ADMIN", "NET_RAW"))["spec"]["containers"][0]
    assert container["resources"] == {"limits": {"memory": "128Mi"}}
    assert container["env"] == [{"name": "A", "value": "b c"}]
    assert container["securityContext"] == {"runAsUser": 1000, "runAsGroup": 1001, "runAsNonRoot": True, "readOnlyRootFilesystem": True,
                                            "capabilities": {"add": ["SYS_ADMIN", "NET_RAW"]}}


def test_what_a_pod_spec_cannot_say_is_named():
    assert unsupported(ScenarioOptions(memory="1g", user="65534:65534")) == ""
    assert unsupported(ScenarioOptions(pids_limit=64)).startswith("pids_limit: ")
    assert unsupported(ScenarioOptions(systemd=True)).startswith("systemd: ")
    assert unsupported(ScenarioOptions(security_opt=("seccomp=unconfined",))).startswith("security_opt: ")
    assert "numeric IDs only" in unsupported(ScenarioOptions(user="nobody"))
