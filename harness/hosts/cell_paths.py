"""The ways a VM host runs a cell, one class each, chosen per cell by `path_for`: through the
engine's CLI (one `run`, or a service's check/start/exec/remove), as a host-side script
(`hosts/host_side.py`), as a Pod played by podman (`engines/pod.py`), or through the CRI
(`engines/cri.py`). Each runs the cell (`run`) and says how to run it by hand (`by_hand`)."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from harness.config.model import ScenarioOptions, ScenarioSpec
from harness.engines import cri, pod
from harness.engines.podman import Podman
from harness.hosts import host_side
from harness.hosts.provider import ENGINE_FAILED, NOT_APPLICABLE, needs_check, scenario_command, scenario_mount
from harness.results.model import DeliveryRecord, ExecRecord

PAYLOAD_ROOT = "/var/lib/harness"  # where the guest mounts the run's delivery disk


class Guest(Protocol):
    """What a cell path needs of its host."""

    engine: Podman
    time_scale: float

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> ExecRecord: ...

    def must(self, argv: list[str], what: str, stdin: bytes | None = None) -> str: ...

    def oom_kill_within(self, seconds: float) -> bool: ...


def mount(scenario: ScenarioSpec) -> tuple[str, str]:
    """The scenario's directory on the delivery disk, and where the container sees it."""
    return f"{PAYLOAD_ROOT}/scenarios/{scenario.name}", scenario_mount(scenario)


@dataclass
class EnginePath:
    """The cell through the engine's CLI: the path every host has, and blame's reference."""

    guest: Guest

    def needs_argv(self, image_id: str, scenario: ScenarioSpec, name: str) -> list[str]:
        return self.guest.engine.run(name, image_id, mount(scenario), needs_check(scenario) or ["true"], ScenarioOptions())

    def argvs(self, image_id: str, scenario: ScenarioSpec, name: str) -> list[list[str]]:
        """The engine commands of a cell, in order: one `run`, or check/start/exec/remove for a service."""
        engine, command = self.guest.engine, scenario_command(scenario)
        if scenario.mode != "service":
            return [engine.run(name, image_id, mount(scenario), command, scenario.options)]
        return [
            *([self.needs_argv(image_id, scenario, f"{name}-needs")] if scenario.needs else []),
            engine.start_service(name, image_id, mount(scenario), list(scenario.init), scenario.options),
            engine.exec(name, command),
            engine.remove(name),
        ]

    def by_hand(self, delivery: DeliveryRecord, scenario: ScenarioSpec, name: str, timeout: float) -> list[str]:
        return [shlex.join(argv) for argv in self.argvs(delivery.image_id, scenario, name)]

    def run(self, image_id: str, scenario: ScenarioSpec, name: str, timeout: float) -> ExecRecord:
        guest = self.guest
        argvs = self.argvs(image_id, scenario, name)
        if scenario.mode == "service":
            argvs = argvs[:-1]  # the service is removed below, whatever happens
        result = None
        try:
            for argv in argvs[:-1]:  # the needs check, then starting the service
                result = guest.run(argv, timeout)
                if result.exit_code != 0:
                    return result
            result = guest.run(argvs[-1], timeout)
            if scenario.mode == "service" and result.exit_code != 0 and not result.timed_out:
                result = self._if_service_exited(name, result)
            elif result.exit_code == 137 and not result.timed_out:
                result = replace(result, oom_killed=guest.oom_kill_within(result.duration))
            return result
        finally:
            # A service always needs removing; a timed-out `podman run` leaves its container behind.
            if scenario.mode == "service" or (result is not None and result.timed_out):
                guest.run(guest.engine.remove(name), 60 * guest.time_scale)

    def _if_service_exited(self, name: str, execution: ExecRecord) -> ExecRecord:
        """When a service's container is no longer running (its init died), the scenario never ran:
        say so, with the container's exit status and the last 100 lines of its own log."""
        guest = self.guest
        state = guest.run(guest.engine.state(name), 60 * guest.time_scale)
        running, _, code = state.stdout.strip().partition(" ")
        if state.exit_code != 0 or running != "false":
            return execution
        log = guest.run(guest.engine.logs(name), 60 * guest.time_scale)
        said = (execution.stdout + execution.stderr).strip()
        return replace(
            execution,
            container_exit=int(code) if code.lstrip("-").isdigit() else None,
            stdout=log.stdout + log.stderr,
            stderr=f"{shlex.join(execution.argv)}: {said}\n{shlex.join(log.argv)}: the container's own log is above\n",
        )


@dataclass
class HostSidePath:
    """A host-side scenario (`hosts/host_side.py`): its script run on the host itself."""

    guest: Guest

    def by_hand(self, delivery: DeliveryRecord, scenario: ScenarioSpec, name: str, timeout: float) -> list[str]:
        return host_side.by_hand(PAYLOAD_ROOT, scenario, delivery.image_id)

    def run(self, image_id: str, scenario: ScenarioSpec, name: str, timeout: float) -> ExecRecord:
        """After a timeout, which stopped the script but not the containers it started, what it
        left is removed."""
        result = self.guest.run(host_side.run_argv(PAYLOAD_ROOT, scenario, name, image_id), timeout)
        if result.timed_out:
            self.guest.run(host_side.clean_argv(PAYLOAD_ROOT, name), 120 * self.guest.time_scale)
        return result


def pod_unsupported(scenario: ScenarioSpec, unsupported: Callable[[ScenarioOptions], str] = pod.unsupported) -> str:
    """Why this cell cannot be said as a pod, of the Pod spec or of the CRI ('' when it can)."""
    return "a service scenario (init, then an exec) has no pod form here yet" if scenario.mode == "service" else unsupported(scenario.options)


@dataclass
class PodPath:
    """The cell as a Pod (`engines/pod.py`): played, waited for, its container's own log read, the
    pod removed whatever happens."""

    guest: Guest

    @staticmethod
    def spec(image_id: str, scenario: ScenarioSpec, name: str) -> str:
        return pod.pod_spec(name, image_id, mount(scenario), scenario_command(scenario), scenario.options)

    def by_hand(self, delivery: DeliveryRecord, scenario: ScenarioSpec, name: str, timeout: float) -> list[str]:
        """A cell no Pod spec can say is shown as the engine would run it."""
        if pod_unsupported(scenario):
            return EnginePath(self.guest).by_hand(delivery, scenario, name, timeout)
        kube = pod.KubePlay()
        return [f"mkdir -p {kube.directory} && cat > {kube.spec_path(name)} <<'EOF'\n{self.spec(delivery.image_id, scenario, name)}EOF",
                *(shlex.join(argv) for argv in (kube.play(name), kube.wait(name), kube.logs(name), kube.remove(name)))]

    def run(self, image_id: str, scenario: ScenarioSpec, name: str, timeout: float) -> ExecRecord:
        guest, kube = self.guest, pod.KubePlay()
        if why := pod_unsupported(scenario):
            return ExecRecord(kube.play(name), NOT_APPLICABLE, f"not applicable via pod: {why}\n", "", 0.0)
        guest.must(kube.write(name), "writing the pod spec", self.spec(image_id, scenario, name).encode())
        started = time.monotonic()
        try:
            played = guest.run(kube.play(name), timeout)
            if played.exit_code != 0:  # podman could not create or start the pod: the engine's failure (125), never the image's
                return played if played.timed_out else replace(played, exit_code=ENGINE_FAILED)
            waited = guest.run(kube.wait(name), max(1.0, timeout - (time.monotonic() - started)))
            if waited.timed_out or waited.exit_code != 0:
                return replace(waited, argv=played.argv, exit_code=waited.exit_code if waited.timed_out else ENGINE_FAILED)
            code = int(waited.stdout.split()[-1])
            logs = guest.run(kube.logs(name), 60 * guest.time_scale)
            oom = code == 137 and guest.oom_kill_within(time.monotonic() - started)
            return ExecRecord(played.argv, code, logs.stdout, logs.stderr, time.monotonic() - started, oom_killed=oom)
        finally:
            guest.run(kube.remove(name), 60 * guest.time_scale)


@dataclass
class CriPath:
    """The cell through the CRI API (`engines/cri.py`; the client is `vms/guest/cri.py`): a pod
    sandbox and one container, run, read and removed by containerd's CRI plugin."""

    guest: Guest

    def by_hand(self, delivery: DeliveryRecord, scenario: ScenarioSpec, name: str, timeout: float) -> list[str]:
        """The image pulled into containerd's own store, then the client given the cell; a cell the
        CRI cannot say is shown as the engine would run it."""
        if pod_unsupported(scenario, cri.unsupported):
            return EnginePath(self.guest).by_hand(delivery, scenario, name, timeout)
        asked = cri.cell(name, delivery.image_id, mount(scenario), scenario_command(scenario), scenario.options, timeout)
        return [cri.pull_by_hand(delivery.reference, delivery.tls_verify, delivery.credentials), f"echo {shlex.quote(json.dumps(asked))} | {shlex.join(cri.RUN)}"]

    def run(self, image_id: str, scenario: ScenarioSpec, name: str, timeout: float) -> ExecRecord:
        if why := pod_unsupported(scenario, cri.unsupported):
            return ExecRecord(cri.RUN, NOT_APPLICABLE, f"not applicable via cri: {why}\n", "", 0.0)
        cell = cri.cell(name, image_id, mount(scenario), scenario_command(scenario), scenario.options, timeout)
        done = self.guest.run(cri.RUN, timeout + 180 * self.guest.time_scale, json.dumps(cell).encode())
        return cri.execution(done, cell)


CellPath = EnginePath | HostSidePath | PodPath | CriPath


def path_for(guest: Guest, via: str | None, scenario: ScenarioSpec) -> CellPath:
    """The way this host runs this scenario: host-side scenarios on the host, a pod or CRI host's
    cells as pods (unless a blame experiment asks for the engine), everything else by the engine."""
    if scenario.mode == "host":
        return HostSidePath(guest)
    if via == "pod" and scenario.options.via != "engine":
        return PodPath(guest)
    if via == "cri" and scenario.options.via != "engine":
        return CriPath(guest)
    return EnginePath(guest)
