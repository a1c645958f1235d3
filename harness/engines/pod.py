"""The pod path (`via: pod`): a cell as a generated Kubernetes Pod spec, played by podman.

An image can run under `podman run` and still fail as a pod: the spec goes through podman's kube
translation (its own defaults for capabilities, user, read-only root, the infra container), not
the CLI's. A scenario option the Pod spec has no field for is never silently dropped: the cell is
not applicable on this path, saying which option (see `unsupported`).
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from harness.config.model import ScenarioOptions

CONTAINER = "cell"  # the container's name in the spec; podman names it "<pod>-cell"
# Options the Pod spec cannot say, and why (a blame experiment's swaps among them).
UNSUPPORTED = {
    "pids_limit": "a Pod spec has no per-container pids limit (kubelet sets one per node)",
    "systemd": "a Pod spec has no --systemd mode",
    "security_opt": "a Pod spec takes no engine security options",
    "runtime": "a Pod spec names no OCI runtime (a RuntimeClass needs a kubelet)",
    "rootless": "the pod path runs as root",
}


def unsupported(options: ScenarioOptions) -> str:
    """'' when the Pod spec can say every option the scenario sets, else why not (the first)."""
    for name, why in UNSUPPORTED.items():
        if getattr(options, name):
            return f"{name}: {why}"
    if options.user and not all(part.isdigit() for part in options.user.split(":")):
        return f"user {options.user!r}: a Pod spec's runAsUser and runAsGroup take numeric IDs only"
    return ""


def pod_spec(name: str, image_id: str, mount: tuple[str, str], command: list[str], options: ScenarioOptions) -> str:
    """The Pod: the scenario as the container's command, the scenario's directory a read-only
    hostPath volume, its options as the spec's fields (resources, env, securityContext)."""
    security: dict = {}
    if options.user:
        uid, _, gid = options.user.partition(":")
        security |= {"runAsUser": int(uid), **({"runAsGroup": int(gid)} if gid else {}), "runAsNonRoot": int(uid) != 0}
    if options.read_only:
        security["readOnlyRootFilesystem"] = True
    if options.cap_add:
        security["capabilities"] = {"add": [c.removeprefix("CAP_") for c in options.cap_add]}
    container: dict = {
        "name": CONTAINER,
        "image": image_id.removeprefix("sha256:"),  # podman finds a local image by its ID
        "imagePullPolicy": "Never",
        "command": command,
        "volumeMounts": [{"name": "scenario", "mountPath": mount[1], "readOnly": True}],
    }
    if options.env:
        container["env"] = [{"name": k, "value": v} for k, v in options.env]
    if options.memory:
        container["resources"] = {"limits": {"memory": options.memory.upper().replace("K", "Ki").replace("M", "Mi").replace("G", "Gi")}}
    if security:
        container["securityContext"] = security
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [{"name": "scenario", "hostPath": {"path": mount[0], "type": "Directory"}}],
        },
    }
    return yaml.safe_dump(pod, sort_keys=False)


@dataclass(frozen=True)
class KubePlay:
    """podman's commands for one pod."""

    binary: str = "podman"
    directory: str = "/run/harness-pods"  # where the specs are written on the host

    def spec_path(self, name: str) -> str:
        return f"{self.directory}/{name}.yaml"

    def write(self, name: str) -> list[str]:
        """Reads the spec on stdin."""
        return ["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "write-pod", self.spec_path(name)]

    def play(self, name: str) -> list[str]:
        return [self.binary, "kube", "play", "--network", "none", self.spec_path(name)]

    def wait(self, name: str) -> list[str]:
        """Prints the container's exit status once it has stopped."""
        return [self.binary, "wait", f"{name}-{CONTAINER}"]

    def logs(self, name: str) -> list[str]:
        return [self.binary, "logs", f"{name}-{CONTAINER}"]

    def remove(self, name: str) -> list[str]:
        return ["sh", "-c", f'{self.binary} pod rm --force "$1" >/dev/null; rm -f "$2"', "remove-pod", name, self.spec_path(name)]
