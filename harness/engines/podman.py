"""Command lines of the podman engine, as run on a host (never on the harness machine)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.model import ScenarioOptions


def option_flags(options: ScenarioOptions) -> list[str]:
    """A scenario's engine options as podman/docker CLI flags (they spell these the same)."""
    flags: list[str] = []
    if options.memory:
        flags += ["--memory", options.memory]
    if options.pids_limit:
        flags += ["--pids-limit", str(options.pids_limit)]
    if options.user:
        flags += ["--user", options.user]
    for key, value in options.env:
        flags += ["--env", f"{key}={value}"]
    if options.read_only:
        flags += ["--read-only"]
    for capability in options.cap_add:
        flags += ["--cap-add", capability]
    for opt in options.security_opt:
        flags += ["--security-opt", opt]
    return flags


# The unprivileged user of every podman host the harness builds (hosts/build.py), with its
# subordinate IDs: a blame experiment runs a failing cell as this user, rootless.
ROOTLESS_USER, ROOTLESS_UID = "harness-rootless", 1500


def as_rootless(argv: list[str]) -> list[str]:
    """A podman command as the host's unprivileged user. No login session runs there (no systemd
    user manager, no D-Bus), so its runtime directory is given and cgroups are managed directly."""
    return ["runuser", "-u", ROOTLESS_USER, "--", "env", f"HOME=/home/{ROOTLESS_USER}", f"XDG_RUNTIME_DIR=/run/user/{ROOTLESS_UID}",
            argv[0], "--cgroup-manager=cgroupfs", *argv[1:]]


@dataclass(frozen=True)
class Podman:
    runtime: str
    binary: str = "podman"

    def load(self, archive: str) -> list[str]:
        return [self.binary, "load", "--input", archive]

    # Where the engine looks for a registry's CA (a directory per host:port, with ca.crt), and the
    # name its credentials file must have in the directory a pull is given.
    certs_dir: str = "/etc/containers/certs.d"
    auth_name: str = "auth.json"

    def pull(self, reference: str, tls_verify: bool = False, auth_dir: str | None = None) -> list[str]:
        """tls_verify: False for the harness's registry, which speaks plain HTTP as a lab's may;
        auth_dir: where this pull's credentials file is."""
        auth = ["--authfile", f"{auth_dir}/{self.auth_name}"] if auth_dir else []
        return [self.binary, "pull", f"--tls-verify={str(tls_verify).lower()}", *auth, reference]

    def login(self, registry: str, tls_verify: bool) -> list[str]:
        """Logging in by hand (it asks for the user and password), where a pull needs credentials."""
        return [self.binary, "login", f"--tls-verify={str(tls_verify).lower()}", registry]

    def platform(self, reference: str) -> list[str]:
        """Prints "ID OS/ARCH" of a pulled image."""
        return [self.binary, "image", "inspect", "--format", "{{.Id}} {{.Os}}/{{.Architecture}}", reference]

    def ready(self) -> list[str] | None:
        """A command that succeeds once the engine can take work; None: daemonless, always ready."""
        return None

    # Where the engine keeps its images: a kept image store (hosts/store.py) is mounted there.
    store_dir: str = "/var/lib/containers"

    def image_ids(self) -> list[str]:
        """Prints the full ID of every image in the store, one a line."""
        return [self.binary, "images", "--quiet", "--no-trunc"]

    def remove_images(self, image_ids: list[str]) -> list[str]:
        return [self.binary, "rmi", "--force", *image_ids]

    def tag(self, image_id: str, reference: str) -> list[str]:
        return [self.binary, "tag", image_id, reference]

    def quiesce(self) -> list[str] | None:
        """A command that leaves nothing of the engine using its store (so it can be unmounted);
        None: daemonless, nothing to stop."""
        return None

    def image_exists(self, image_id: str) -> list[str]:
        return ["podman", "image", "exists", image_id]

    def _common(self, mount: tuple[str, str], options: ScenarioOptions) -> list[str]:
        return ["--runtime", options.runtime or self.runtime, "--network", "none", "--volume", f"{mount[0]}:{mount[1]}:ro", *option_flags(options), *self._systemd(options)]

    def _systemd(self, options: ScenarioOptions) -> list[str]:
        return ["--systemd", "always"] if options.systemd else []

    def run(self, name: str, image_id: str, mount: tuple[str, str], command: list[str], options: ScenarioOptions) -> list[str]:
        """The exact command a cell runs; it is recorded so the cell can be reproduced by hand."""
        argv = [self.binary, "run", "--rm", "--name", name, *self._common(mount, options), image_id, *command]
        return as_rootless(argv) if options.rootless else argv

    def start_service(self, name: str, image_id: str, mount: tuple[str, str], init: list[str], options: ScenarioOptions) -> list[str]:
        return [self.binary, "run", "--detach", "--name", name, *self._common(mount, options), image_id, *init]

    def exec(self, name: str, command: list[str]) -> list[str]:
        return [self.binary, "exec", name, *command]

    def remove(self, name: str) -> list[str]:
        return ["podman", "rm", "--force", "--time", "5", name]

    def state(self, name: str) -> list[str]:
        """Prints "RUNNING EXITCODE" of a container (true/false)."""
        return [self.binary, "inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", name]

    def logs(self, name: str, lines: int = 100) -> list[str]:
        return [self.binary, "logs", "--tail", str(lines), name]
