"""Existing container engines as hosts: any Docker-API endpoint, driven with testcontainers-python.

A local Docker daemon, a podman API service socket or a remote DOCKER_HOST: the image is loaded
through the API (no registry), each scenario runs in a fresh container with the scenario copied in
before start (so a remote engine works too), and the facts come from the engine's info and version.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import docker
from docker.errors import APIError, DockerException
from docker.types import Ulimit
from requests.exceptions import ConnectionError as RequestsConnectionError
from testcontainers.core.container import DockerContainer

from harness.config.kinds.engine import EngineHostSpec
from harness.config.model import HostKind, ScenarioSpec, debian_arch
from harness.engines.podman import option_flags
from harness.hosts.agent import limit_reached
from harness.hosts.provider import NOT_APPLICABLE, SCENARIOS_IN_CONTAINER, Host, HostError, needs_check, scenario_command, scenario_mount
from harness.images.build import ImageBuild
from harness.results.model import DeliveryRecord, ExecRecord, HostRecord, clip

API_ERRORS = (DockerException, RequestsConnectionError, OSError)

HOST_SIDE_NOT_HERE = "host-side tests run on VM hosts, never on the machine that runs the harness"


def _cli(endpoint: str, *args: str) -> list[str]:
    """The docker-CLI form of an API call, recorded so a cell can be reproduced by hand."""
    return ["docker", "-H", endpoint, *args]


class EngineHost(Host):
    spec: EngineHostSpec

    def __init__(self, spec: EngineHostSpec, endpoint: str):
        super().__init__(spec, HostRecord(spec.name, "", spec.arch or "", "", spec.runtime or "", kind=HostKind.ENGINE))
        self.record.accel = "engine"
        self.endpoint = endpoint
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.DockerClient(base_url=self.endpoint, timeout=600)
                self._client.ping()
            except API_ERRORS as exc:
                self._client = None
                raise HostError(f"host {self.name}: engine at {self.endpoint} does not answer: {exc}") from None
        return self._client

    @property
    def arch(self) -> str:
        if not self.record.arch:
            arch = self.client.version().get("Arch", "")
            self.record.arch = debian_arch(arch)
        return self.record.arch

    def start(self, images: list[ImageBuild], scenarios: list[ScenarioSpec], plain_http: list[str]) -> None:
        started = time.monotonic()
        self.client  # noqa: B018 - connecting is the start of an existing engine
        self.record.boot_seconds = round(time.monotonic() - started, 2)

    def load_image(self, image: ImageBuild, timeout: float) -> ExecRecord:
        started = time.monotonic()
        argv = _cli(self.endpoint, "load", "--input", str(image.archive))
        try:
            with open(image.archive, "rb") as fh:
                loaded = self.client.images.load(fh)
            self.client.images.get(image.image_id)
        except API_ERRORS as exc:
            return ExecRecord(argv, 1, "", clip(str(exc), 4096), time.monotonic() - started)
        names = ", ".join(t for i in loaded for t in (i.tags or [i.id]))
        return ExecRecord(argv, 0, f"Loaded image: {names}\n", "", time.monotonic() - started)

    def _container(self, image_id: str, scenario: ScenarioSpec, command: list[str]) -> "_Container":
        kwargs: dict = {"network_mode": "none"}
        options = scenario.options
        if options.runtime or self.spec.runtime:
            kwargs["runtime"] = options.runtime or self.spec.runtime
        if options.security_opt:
            kwargs["security_opt"] = list(options.security_opt)
        if self.spec.ulimits:
            kwargs["ulimits"] = [Ulimit(name=k, soft=v, hard=v) for k, v in sorted(self.spec.ulimits.items())]
        if options.memory:
            kwargs["mem_limit"] = options.memory
        if options.pids_limit:
            kwargs["pids_limit"] = options.pids_limit
        if options.user:
            kwargs["user"] = options.user
        if options.cap_add:
            kwargs["cap_add"] = list(options.cap_add)
        if options.read_only:
            kwargs["read_only"] = True
        return (
            _Container(image_id, docker_client_kw={"environment": {"DOCKER_HOST": self.endpoint}})
            .with_command(command)
            .with_envs(**dict(options.env))
            .with_copy_into_container(Path(scenario.path), SCENARIOS_IN_CONTAINER)
            .with_kwargs(**kwargs)
        )

    def reproduce(self, delivery: DeliveryRecord, scenario: ScenarioSpec) -> list[str]:
        flags = ["--network", "none"]
        if scenario.options.runtime or self.spec.runtime:
            flags += ["--runtime", scenario.options.runtime or self.spec.runtime]
        for name, value in sorted(self.spec.ulimits.items()):
            flags += ["--ulimit", f"{name}={value}:{value}"]
        flags += [*option_flags(scenario.options), "-v", f"{scenario.path}:{scenario_mount(scenario)}:ro"]
        load = shlex.join(delivery.command)
        if scenario.mode == "host":
            return [load, f"# {HOST_SIDE_NOT_HERE}"]
        if scenario.mode != "service":
            return [load, shlex.join(_cli(self.endpoint, "run", "--rm", *flags, delivery.image_id, *scenario_command(scenario)))]
        return [
            load,
            shlex.join(_cli(self.endpoint, "run", "--detach", "--name", "harness-cell", *flags, delivery.image_id, *scenario.init)),
            shlex.join(_cli(self.endpoint, "exec", "harness-cell", *scenario_command(scenario))),
            shlex.join(_cli(self.endpoint, "rm", "--force", "harness-cell")),
        ]

    def run_scenario(self, image_id: str, scenario: ScenarioSpec, timeout: float) -> ExecRecord:
        if scenario.mode == "host":  # its host would be the machine running the harness
            return ExecRecord([str(scenario.script), scenario.image_as], NOT_APPLICABLE, f"not applicable: {HOST_SIDE_NOT_HERE}\n", "", 0.0)
        if scenario.mode != "service":
            return self._run(image_id, scenario, scenario_command(scenario), timeout)
        if scenario.needs:
            checked = self.check_needs(image_id, scenario, timeout)
            if checked.exit_code != 0:
                return checked
        return self._run(image_id, scenario, list(scenario.init), timeout)

    def check_needs(self, image_id: str, scenario: ScenarioSpec, timeout: float) -> ExecRecord:
        return self._run(image_id, scenario, needs_check(scenario) or ["true"], timeout)

    def _run(self, image_id: str, scenario: ScenarioSpec, command: list[str], timeout: float) -> ExecRecord:
        """One container of the image running `command`; for a service scenario, the scenario is executed in it."""
        argv = ["docker", "-H", self.endpoint, "run", image_id, *command]
        container = self._container(image_id, scenario, command)
        started = time.monotonic()
        try:
            container.start()
        except API_ERRORS as exc:
            if not _started_anyway(container):
                return ExecRecord(argv, 125, "", clip(str(exc), 4096), time.monotonic() - started)
            # podman's API service can answer a start with "attach: connection reset by peer" when
            # the container's process ends at once: it ran, and how it ended is the finding.
        wrapped = container.get_wrapped_container()
        try:
            if scenario.mode == "service" and command == list(scenario.init):
                return self._exec_in(wrapped, scenario, argv, timeout, started)
            code = _wait_exit(wrapped, timeout)
            timed_out = code is None
            if timed_out:
                wrapped.kill()
            stdout = wrapped.logs(stdout=True, stderr=False).decode("utf-8", errors="replace")
            stderr = wrapped.logs(stdout=False, stderr=True).decode("utf-8", errors="replace")
            oom = bool(wrapped.attrs.get("State", {}).get("OOMKilled")) and not timed_out
            return ExecRecord(argv, code, stdout, stderr, time.monotonic() - started, timed_out, oom_killed=oom)
        except API_ERRORS as exc:
            raise HostError(f"host {self.name}: engine stopped answering: {exc}") from None
        finally:
            container.stop()

    @staticmethod
    def _init_died(wrapped, argv: list[str], command: list[str], said: str, started: float) -> ExecRecord:
        log = wrapped.logs(tail=100).decode("utf-8", errors="replace")
        exit_code = int(wrapped.attrs["State"]["ExitCode"])
        return ExecRecord(argv, 125, log, f"exec {shlex.join(command)}: {said}\n", time.monotonic() - started, container_exit=exit_code)

    def _exec_in(self, wrapped, scenario: ScenarioSpec, argv: list[str], timeout: float, started: float) -> ExecRecord:
        """Service mode: the image's init is PID 1; run the scenario in it with `timeout` if it has
        one. An init that died first means the scenario never ran: its exit status and the last
        100 lines of its log are the evidence."""
        limit = max(1, int(timeout))
        command = ["timeout", "-k", "5", str(limit), *scenario_command(scenario)]
        exec_started = time.monotonic()
        try:
            code, (stdout, stderr) = wrapped.exec_run(command, demux=True)
        except APIError as exc:
            wrapped.reload()
            if wrapped.status == "running":
                raise
            return self._init_died(wrapped, argv, command, str(exc), started)
        if code == 125:  # the engine's own failure: podman's API service says so when the init died under the exec
            wrapped.reload()
            if wrapped.status != "running":
                return self._init_died(wrapped, argv, command, (stderr or b"").decode("utf-8", errors="replace").strip(), started)
        return ExecRecord(
            argv,
            code,
            (stdout or b"").decode("utf-8", errors="replace"),
            (stderr or b"").decode("utf-8", errors="replace"),
            time.monotonic() - started,
            timed_out=limit_reached(code, time.monotonic() - exec_started, limit),
        )

    def runtimes(self) -> list[str]:
        try:
            return sorted(self.client.info().get("Runtimes", {})) or super().runtimes()
        except API_ERRORS:
            return super().runtimes()

    def read_facts(self) -> dict[str, str]:
        """From the engine's info and version endpoints (its Docker API)."""
        try:
            info, version = self.client.info(), self.client.version()
        except API_ERRORS as exc:
            raise HostError(f"host {self.name}: reading engine facts failed: {exc}") from None
        components = {c.get("Name", ""): c for c in version.get("Components", [])}
        engine = "podman" if any("Podman" in name for name in components) else "docker"
        runtime = self.spec.runtime or info.get("DefaultRuntime", "")
        facts = {
            "endpoint": self.endpoint,
            "machine_name": info.get("Name", ""),
            "os_pretty_name": info.get("OperatingSystem", ""),
            "kernel": info.get("KernelVersion", ""),
            "machine": info.get("Architecture", ""),
            "cpus": str(info.get("NCPU", "")),
            "memory_kib": str(int(info.get("MemTotal", 0)) // 1024),
            "cgroup": f"v{info.get('CgroupVersion', '')}",
            "lsm": ",".join(o.split(",")[0].removeprefix("name=") for o in info.get("SecurityOptions", [])),
            "engine": engine,
            "engine_version": version.get("Version", ""),
            "api_version": version.get("ApiVersion", ""),
            "runtime": runtime,
            "storage_driver": info.get("Driver", ""),
        }
        return facts

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class _Container(DockerContainer):
    """A testcontainers container started without its Ryuk reaper (which would have to be pulled;
    the harness removes its own containers), and without changing testcontainers' library-wide
    settings: DockerContainer.start() (testcontainers 4.14, 4.15) minus the reaper, networks, ports
    and wait strategies, which a scenario container has none of."""

    def start(self) -> "_Container":
        client = self.get_docker_client()
        self._container = client.create(self.image, command=self._command, environment=self.env, name=self._name, **self._kwargs)
        for spec in self._transferable_specs:
            self._transfer_into_container(*spec)
        client.start(self._container)
        return self


def _started_anyway(container: _Container) -> bool:
    """Whether a container whose start the engine answered with an error did start (and so ran)."""
    wrapped = container.get_wrapped_container()
    if wrapped is None:
        return False
    try:
        wrapped.reload()
    except API_ERRORS:
        return False
    state = wrapped.attrs.get("State", {})
    return state.get("Status") in ("running", "exited") and not str(state.get("StartedAt", "0001")).startswith("0001")


def _wait_exit(container, timeout: float) -> int | None:
    """The container's exit code, or None if it still runs after `timeout` (polled: a long-poll
    `wait` over a unix socket reports its own HTTP timeout as a connection error)."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        container.reload()
        if container.status in ("exited", "dead"):
            return int(container.attrs["State"]["ExitCode"])
        if time.monotonic() > deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def default_endpoint() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
