"""The CRI path (`via: cri`): a cell as the CRI API's pod sandbox and container, run by the host
release's containerd through its CRI plugin, as a kubelet would ask for it (there is none: Debian
packages no kubelet). The client runs in the guest (vms/guest/cri.py); this module says what it is
asked and how its answer becomes the cell's execution. An option the CRI has no field for is not
applicable on this path, never dropped.
"""

from __future__ import annotations

import json
import shlex

from harness.config.model import ScenarioOptions
from harness.results.model import ExecRecord

CLIENT = "/usr/lib/harness-cri/cri.py"  # installed at host build (hosts/build.py)
VERSION = ["python3", CLIENT, "version"]
RUN = ["python3", CLIENT, "run"]  # the cell as JSON on stdin
PAUSE_IMAGE = "localhost/harness-pause:1"  # containerd's sandbox_image (hosts/build.py)
UNSUPPORTED = {
    "pids_limit": "the CRI sets no per-container pids limit (kubelet sets one per pod or node)",
    "systemd": "the CRI has no --systemd mode",
    "security_opt": "the CRI takes no engine security options",
    "runtime": "a runtime handler is containerd's configuration, not the cell's",
    "rootless": "the CRI path runs as root",
}
UNITS = {"k": 2**10, "m": 2**20, "g": 2**30}


def pause() -> list[str]:
    return ["python3", CLIENT, "pause", PAUSE_IMAGE]


def pull(reference: str, tls_verify: bool, ca_file: str = "", user_file: str = "") -> list[str]:
    """Into containerd's k8s.io namespace, where the CRI plugin finds images (this host's platform).
    A private registry's CA is the file the engine trusts; its credentials ("user:password") are
    read from `user_file` by the guest's shell, so the command the harness records never holds them."""
    argv = ["ctr", "--namespace", "k8s.io", "images", "pull", *([] if tls_verify else ["--plain-http"]), *(["--tlscacert", ca_file] if ca_file else [])]
    if not user_file:
        return [*argv, reference]
    return ["sh", "-c", 'f=$1; shift; exec "$@" --user "$(cat "$f")" "$0"', reference, user_file, *argv]


def pull_by_hand(reference: str, tls_verify: bool, credentials: str) -> str:
    """The pull into containerd's store as a person runs it: ctr asks for the password of --user."""
    argv = pull(reference, tls_verify)
    if not credentials:
        return shlex.join(argv)
    return f"{shlex.join([*argv[:-1], '--user', 'USER', argv[-1]])}  # USER and its password as in {credentials}"


def load(archive: str) -> list[str]:
    """An OCI archive into the k8s.io namespace, named in full (localhost/...: the CRI plugin
    normalises a bare name to docker.io/library/..., and then cannot find ctr's own, seen)."""
    return ["ctr", "--namespace", "k8s.io", "images", "import", "--base-name", "localhost/harness-import", "--digests", archive]


def unsupported(options: ScenarioOptions) -> str:
    """'' when the CRI can say every option the scenario sets, else why not (the first)."""
    return next((f"{name}: {why}" for name, why in UNSUPPORTED.items() if getattr(options, name)), "")


def cell(name: str, image_id: str, mount: tuple[str, str], command: list[str], options: ScenarioOptions, timeout: float) -> dict:
    """What the client is asked: the container's fields as the CRI names them."""
    asked: dict = {"name": name, "image": image_id, "mount": list(mount), "command": command, "timeout": timeout,
                   "env": [list(kv) for kv in options.env], "read_only": options.read_only, "cap_add": [c.removeprefix("CAP_") for c in options.cap_add]}
    if options.memory:
        asked["memory_bytes"] = int(options.memory[:-1]) * UNITS[options.memory[-1]]
    if options.user:
        user, _, group = options.user.partition(":")
        asked |= {"uid": int(user)} if user.isdigit() else {"username": user}
        if group.isdigit():
            asked["gid"] = int(group)
    return asked


def execution(done: ExecRecord, asked: dict) -> ExecRecord:
    """The cell's execution from the client's answer. A call the CRI refused (no sandbox, no
    container) is the engine's failure (exit 125), never the image's."""
    argv = [*done.argv, json.dumps(asked)]
    try:
        said = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return ExecRecord(argv, done.exit_code if done.timed_out else 125, done.stdout, done.stderr or "the CRI client said nothing", done.duration, done.timed_out)
    if said.get("error"):
        return ExecRecord(argv, 125, "", f"CRI {said['error']}\n{done.stderr}", done.duration)
    stderr = said["stderr"] + (f"\n[harness] CRI cleanup: {said['cleanup_error']}\n" if said.get("cleanup_error") else "")
    code = said["exit_code"]
    return ExecRecord(argv, code, said["stdout"], stderr, done.duration, timed_out=said["timed_out"],
                      oom_killed=code == 137 and said.get("reason") == "OOMKilled")
