#!/usr/bin/python3
"""The harness's CRI client, run in the guest by the release's own python3-grpcio, against the
release's containerd and its CRI plugin, with stubs generated at host build time from the CRI
API's own proto (golang-github-kubernetes-cri-api-dev: k8s.io/cri-api/.../runtime/v1/api.proto).
No kubelet: this is the part of one that the CRI sees.

  cri.py version      prints cri_runtime= and cri_api_version= lines (the host's facts)
  cri.py pause NAME   builds the pod sandbox's pause image from the host's busybox, into k8s.io
  cri.py run          reads a cell (JSON) on stdin; RunPodSandbox, CreateContainer,
                      StartContainer, ContainerStatus until it exits, its log, then
                      StopPodSandbox and RemovePodSandbox; prints the outcome as JSON
"""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, "/usr/lib/harness-cri")
import grpc  # noqa: E402
import api_pb2 as cri  # noqa: E402
import api_pb2_grpc as rpc  # noqa: E402

SOCKET = "unix:///run/containerd/containerd.sock"
LOGS = "/var/log/harness-cri"


def runtime():
    return rpc.RuntimeServiceStub(grpc.insecure_channel(SOCKET))


def version():
    """As key=value lines for the host's facts."""
    said = runtime().Version(cri.VersionRequest(version="v1"), timeout=30)
    print(f"cri_runtime={said.runtime_name} {said.runtime_version}\ncri_api_version={said.runtime_api_version}")


def pause(name):
    """A pause image of the host's own static busybox (registry.k8s.io cannot be reached), as a
    docker archive imported into containerd's k8s.io namespace."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
    layer = layer.getvalue()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}[os.uname().machine]
    config = json.dumps({"architecture": arch, "os": "linux", "config": {"Entrypoint": ["/bin/busybox", "sleep", "2147483647"]},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for member, data in (("layer.tar", layer), ("config.json", config),
                             ("manifest.json", json.dumps([{"Config": "config.json", "RepoTags": [name], "Layers": ["layer.tar"]}]).encode())):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    done = subprocess.run(["ctr", "--namespace", "k8s.io", "images", "import", "-"], input=archive.getvalue(), capture_output=True)
    sys.stderr.write(done.stderr.decode(errors="replace"))
    sys.exit(done.returncode)


def read_log(path):
    """The container's stdout and stderr from its CRI log ("TIME STREAM P|F TEXT" lines)."""
    out = {"stdout": [], "stderr": []}
    try:
        with open(path, errors="replace") as fh:
            for line in fh:
                parts = line.rstrip("\n").split(" ", 3)
                if len(parts) == 4 and parts[1] in out:
                    out[parts[1]].append(parts[3] + ("\n" if parts[2] == "F" else ""))
    except OSError:
        pass
    return "".join(out["stdout"]), "".join(out["stderr"])


def run():
    cell = json.load(sys.stdin)
    rt = runtime()
    name = cell["name"]
    sandbox = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="harness", uid=name),
        hostname=name,
        log_directory=f"{LOGS}/{name}",
        linux=cri.LinuxPodSandboxConfig(),
    )
    security = cri.LinuxContainerSecurityContext(readonly_rootfs=cell.get("read_only", False))
    if "uid" in cell:
        security.run_as_user.value = cell["uid"]
    if "username" in cell:
        security.run_as_username = cell["username"]
    if "gid" in cell:
        security.run_as_group.value = cell["gid"]
    if cell.get("cap_add"):
        security.capabilities.add_capabilities.extend(cell["cap_add"])
    resources = cri.LinuxContainerResources(memory_limit_in_bytes=cell.get("memory_bytes", 0))
    container = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name="cell"),
        image=cri.ImageSpec(image=cell["image"]),
        command=cell["command"],
        envs=[cri.KeyValue(key=k, value=v) for k, v in cell.get("env", [])],
        mounts=[cri.Mount(container_path=cell["mount"][1], host_path=cell["mount"][0], readonly=True)],
        log_path="cell.log",
        linux=cri.LinuxContainerConfig(resources=resources, security_context=security),
    )
    result = {"exit_code": None, "stdout": "", "stderr": "", "timed_out": False, "stage": "RunPodSandbox"}
    sandbox_id = None
    try:
        sandbox_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=sandbox), timeout=120).pod_sandbox_id
        result["stage"] = "CreateContainer"
        container_id = rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=container, sandbox_config=sandbox), timeout=120).container_id
        result["stage"] = "StartContainer"
        rt.StartContainer(cri.StartContainerRequest(container_id=container_id), timeout=120)
        result["stage"] = "ContainerStatus"
        deadline = time.monotonic() + cell["timeout"]
        while True:
            status = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=container_id), timeout=60).status
            if status.state == cri.CONTAINER_EXITED:
                result["exit_code"], result["reason"] = status.exit_code, status.reason
                break
            if time.monotonic() > deadline:
                result["timed_out"] = True
                rt.StopContainer(cri.StopContainerRequest(container_id=container_id, timeout=0), timeout=60)
                break
            time.sleep(0.5)
        result["stage"] = "done"
        result["stdout"], result["stderr"] = read_log(f"{LOGS}/{name}/cell.log")
    except grpc.RpcError as exc:
        result["error"] = f"{result['stage']}: {exc.code().name}: {exc.details()}"
    finally:
        if sandbox_id:
            try:
                rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=120)
                rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=120)
            except grpc.RpcError as exc:
                result["cleanup_error"] = f"{exc.code().name}: {exc.details()}"
        subprocess.run(["rm", "-rf", f"{LOGS}/{name}"])
    print(json.dumps(result))


if __name__ == "__main__":
    {"version": lambda: version(), "pause": lambda: pause(sys.argv[2]), "run": lambda: run()}[sys.argv[1]]()
