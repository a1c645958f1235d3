"""Hosts as QEMU virtual machines started through libvirt (libvirt-python), reached by the guest agent."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
import uuid
from abc import abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path

import libvirt

from harness.config.kinds.vm import VmHostSpec
from harness.config.model import HostSpec, ScenarioOptions, ScenarioSpec
from harness.engines.docker import engine_cli
from harness.engines.podman import ROOTLESS_UID, ROOTLESS_USER, as_rootless
from harness.hosts.accel import KVM_FIRST_OUTPUT_SECONDS, AccelVerdicts, cpu_model_for, time_scale
from harness.hosts.files import HostFiles
from harness.hosts.agent import AgentError, GuestAgent
from harness.hosts.build import HostBuild, boot_daemon_json
from harness.hosts.initramfs import boot_initrd
from harness.hosts.domain import DOMAIN_PREFIX, Disk, DomainSpec, build_domain_xml
from harness.hosts.hypervisors import HypervisorLost, Slot
from harness.hosts.platform import PLATFORMS
from harness.hosts.provider import Host, HostError, PullAccess, needs_check, scenario_command, scenario_mount
from harness.images.build import ImageBuild
from harness.images.deliver import assemble_payload
from harness.hosts.wait import AgentAnswers, CommandSucceeds, ConsoleSpeaks, WaitTimeout
from harness.results.model import DeliveryRecord, ExecRecord, HostRecord

PAYLOAD_ROOT = "/var/lib/harness"
CONSOLE_TAIL_LINES = 15


def _libvirt_quiet() -> None:
    """libvirt prints every error to stderr by default; the harness reports them itself."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def connect(uri: str) -> libvirt.virConnect:
    _libvirt_quiet()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise HostError(f"cannot connect to libvirt at {uri}: {exc.get_error_message()} (is libvirtd running?)") from None


def _make_payload_disk(payload: Path, image: Path) -> None:
    used = int(subprocess.run(["du", "-sm", str(payload)], capture_output=True, text=True, check=True).stdout.split()[0])
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", "payload", "-E", "root_owner=0:0", "-d", str(payload), str(image), f"{used + used // 10 + 64}M"],
        check=True,
        capture_output=True,
    )


# Terminal control sequences (firmware and systemd colour and clear the screen): noise in a message.
_ESCAPES = re.compile(r"\x1b\[[0-9;=?]*[A-Za-z]|\r")


def readable(console: str) -> str:
    """Console output as a message can quote it: without terminal control sequences."""
    return _ESCAPES.sub("", console)


def guest_vcpus(asked: int | None, share: int, accel: str) -> int:
    """A guest's vCPUs: the matrix's; else, under KVM, its share of the hypervisor's cores; else
    (emulated, TCG) one. Seen here: 2-vCPU TCG guests on 2 busy cores locked up for good (RCU
    stalls, then soft lockups of podman and conmon on both vCPUs), in CI and on a second libvirtd
    given one slot; and bench/workers.py measured two 1-vCPU hosts at 1.67x one of 2 vCPUs."""
    if asked:
        return asked
    return share if accel == "kvm" else 1


def boot_cmdline(spec: VmHostSpec) -> str:
    """The kernel command line: console, the host's cgroup and LSM settings, then the matrix's own.

    panic=1: a kernel panic, or stage 1 failing to find the root disk, reboots at once, and a reboot
    ends the domain (on_reboot=destroy), so a host that cannot boot fails fast."""
    words = ["root=/dev/vda", f"console={PLATFORMS[spec.arch].console}", "panic=1"]
    if spec.cgroup == "v1":
        words.append("systemd.unified_cgroup_hierarchy=0")  # stage 1 mounts the legacy hierarchy for it
    if spec.lsm == "none":
        words.append("apparmor=0")
    elif spec.lsm == "selinux":
        words += ["security=selinux", "selinux=1", "enforcing=1"]  # the harness init loads the policy
    return " ".join([*words, spec.kernel_cmdline]).strip()


@dataclass(frozen=True)
class Boot:
    """What a domain boots, as its hypervisor sees it: the root disk's cached base, and either a
    kernel booted directly or (kernel "") the base's own boot loader through the firmware."""

    root: str
    root_size: int
    root_format: str = "raw"
    kernel: str = ""
    initrd: str = ""
    cmdline: str = ""
    firmware: str = ""
    nvram: str = ""
    disks: tuple[Disk, ...] = ()  # after the overlay and the delivery disk (a NoCloud seed)


class LibvirtHost(Host):
    """A QEMU guest through libvirt, reached by its guest agent. What it boots comes from the
    subclass (`_boot`): a disk the harness built, or one the user brought (hosts/disk.py)."""

    def __init__(self, spec: HostSpec, recipe_digest: str, slot: Slot, vms_dir: Path, workdir: Path, run_id: str, verdicts: AccelVerdicts, files: HostFiles):
        super().__init__(spec, HostRecord(
            name=spec.name,
            release=spec.release,
            arch=spec.arch,
            engine=spec.engine,
            runtime=spec.runtime,
            kind=spec.kind,
            recipe_digest=recipe_digest,
            settings=spec.settings(),
            hypervisor=slot.hypervisor.name,
        ))
        self.slot, self.vms_dir = slot, vms_dir
        self.conn = slot.hypervisor.conn
        self.workdir, self.run_id, self.verdicts, self.files = workdir, run_id, verdicts, files
        self.domain: libvirt.virDomain | None = None
        self.agent: GuestAgent | None = None
        self.engine = engine_cli(spec.engine, spec.runtime) if spec.engine else None
        self._rootless: bool | None = None  # whether the guest has the harness's unprivileged user
        self._rootless_images: set[str] = set()
        self.plain_http: list[str] = []  # registries the engine may reach over plain HTTP (this boot's)

    def guest_gateway(self) -> str:
        return self.slot.hypervisor.harness_address()

    # -- boot -----------------------------------------------------------------------------------
    @abstractmethod
    def _boot(self) -> Boot:
        """Put this boot's files where the hypervisor reaches them (may raise libvirtError)."""

    def _ready(self, timeout: float) -> None:
        """After the agent answers: ready for commands once a daemon engine answers too."""
        if ready := self.engine.ready():
            CommandSucceeds(self.agent, ready).wait_until_ready(self.domain, timeout)

    def _domain_spec(self, accel: str, boot: Boot, disks: tuple[Disk, ...]) -> DomainSpec:
        platform = PLATFORMS[self.spec.arch]
        return DomainSpec(
            name=f"{DOMAIN_PREFIX}{self.run_id}-{self.spec.name}",
            run_id=self.run_id,
            host=self.spec.name,
            accel=accel,
            platform=platform,
            cpu_model=cpu_model_for(accel, self.spec.cpu, platform.tcg_cpu),
            memory_mib=self.spec.machine.memory_mib,
            vcpus=guest_vcpus(self.spec.machine.vcpus, self.slot.vcpus, accel),
            kernel=boot.kernel,
            initrd=boot.initrd,
            cmdline=boot.cmdline,
            disks=disks,
            console_log=self.files.console,
            run_dir=str(self.workdir.parent),
            firmware=boot.firmware,
            nvram=boot.nvram,
        )

    def start(self, images: list[ImageBuild], scenarios: list[ScenarioSpec], plain_http: list[str]) -> None:
        self.plain_http = plain_http
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        payload = assemble_payload(self.workdir / "payload", images, scenarios, self._engine_files(plain_http))
        payload_disk = self.workdir / "payload.img"
        _make_payload_disk(payload, payload_disk)
        shutil.rmtree(payload)
        try:
            boot = self._boot()
            payload_path = self.files.own(payload_disk)
        except libvirt.libvirtError as exc:
            raise self._failure(f"host {self.name}: its files could not reach hypervisor {self.record.hypervisor}: {exc.get_error_message()}") from None
        for accel in self.verdicts.candidates(self.spec.qemu_arch):
            overlay = self.files.overlay(boot.root, boot.root_size, boot.root_format)
            spec = self._domain_spec(accel, boot, (Disk(overlay, "qcow2"), Disk(payload_path, "raw", readonly=True), *boot.disks))
            started = time.monotonic()
            try:
                self.domain = self.conn.createXML(build_domain_xml(self.vms_dir / "domain.xml", spec), 0)
            except libvirt.libvirtError as exc:
                if accel == "kvm":
                    self.verdicts.mark_kvm_broken(exc.get_error_message())
                    continue
                raise self._failure(f"host {self.name}: libvirt refused to start it: {exc.get_error_message()}") from None
            if accel == "kvm":
                try:
                    ConsoleSpeaks(self.files.console_text).wait_until_ready(self.domain, KVM_FIRST_OUTPUT_SECONDS)
                except WaitTimeout as exc:
                    self.verdicts.mark_kvm_broken(str(exc))
                    self._destroy()
                    continue
            self.record.accel, self.record.cpu_model = accel, spec.cpu_model
            self.record.time_scale = time_scale(accel, self.spec.qemu_arch)
            self.agent = GuestAgent(self.domain)
            timeout = self.spec.machine.boot_timeout * self.time_scale
            try:
                AgentAnswers(self.agent).wait_until_ready(self.domain, timeout)
                self._ready(timeout)
            except WaitTimeout as exc:
                raise self._failure(f"host {self.name} did not become ready: {exc}{self.console_tail()}") from None
            self.record.boot_seconds = round(time.monotonic() - started, 2)
            return
        raise HostError(f"host {self.name}: no accelerator could start it")

    def _engine_files(self, plain_http: list[str]) -> dict[str, str]:
        """Engine configuration the guest puts in place before its engine starts (none by default)."""
        return {}

    def _failure(self, message: str) -> HostError:
        """The error for a failure of this host: HypervisorLost when its hypervisor stopped answering
        (the host is not at fault and starts again elsewhere), else a HostError."""
        hypervisor = self.slot.hypervisor
        if hypervisor.answers():
            return HostError(message)
        return HypervisorLost(f"{message} (hypervisor {hypervisor.name} stopped answering)", hypervisor.name)

    def console_tail(self) -> str:
        lines = [line for line in readable(self.files.console_text()).splitlines() if line.strip()][-CONSOLE_TAIL_LINES:]
        if not lines:
            return "\n(no console output)"
        return "\nlast console lines:\n" + "\n".join(lines)

    # -- use ------------------------------------------------------------------------------------
    def load_image(self, image: ImageBuild, timeout: float) -> ExecRecord:
        load = self.run(self.engine.load(f"{PAYLOAD_ROOT}/images/{image.name}.oci.tar"), timeout)
        if load.exit_code == 0:
            check = self.run(self.engine.image_exists(image.image_id), timeout=60)
            if check.exit_code != 0:
                load.exit_code, load.stderr = check.exit_code, load.stderr + f"\nloaded, but no image {image.image_id}"
        return load

    def pulls(self) -> bool:
        return True

    def pull_image(self, image_name: str, reference: str, timeout: float, tls_verify: bool = False, access: PullAccess | None = None) -> tuple[ExecRecord, str, str]:
        registry = reference.partition("/")[0]
        if access and access.ca_pem:
            self.run(["sh", "-c", 'mkdir -p "$1" && cat > "$1/ca.crt"', "ca", f"{self.engine.certs_dir}/{registry}"], 60 * self.time_scale, access.ca_pem)
        auth_dir = f"/run/harness-auth/{uuid.uuid4().hex[:12]}" if access and access.auth_json else None
        if auth_dir:
            self.run(["sh", "-c", 'umask 077 && mkdir -p "$1" && cat > "$1/$2"', "auth", auth_dir, self.engine.auth_name], 60 * self.time_scale, access.auth_json)
        try:
            pull = self.run(self.engine.pull(reference, tls_verify, auth_dir), timeout)
        finally:
            if auth_dir:  # the credentials stay on the host for this pull only
                self.run(["rm", "-rf", auth_dir], 60 * self.time_scale)
        if pull.exit_code != 0:
            return pull, "", ""
        inspect = self.run(self.engine.platform(reference), timeout=60 * self.time_scale)
        image_id, _, platform = inspect.stdout.strip().partition(" ")
        if inspect.exit_code != 0 or not platform:
            pull.exit_code, pull.stderr = inspect.exit_code or 1, pull.stderr + f"\npulled, but not inspectable: {inspect.stderr.strip()[-300:]}"
            return pull, "", ""
        image_id = image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"
        return pull, image_id, platform

    @staticmethod
    def _mount(scenario: ScenarioSpec) -> tuple[str, str]:
        return f"{PAYLOAD_ROOT}/scenarios/{scenario.name}", scenario_mount(scenario)

    def _needs_argv(self, image_id: str, scenario: ScenarioSpec, name: str) -> list[str]:
        return self.engine.run(name, image_id, self._mount(scenario), needs_check(scenario) or ["true"], ScenarioOptions())

    def _scenario_argvs(self, image_id: str, scenario: ScenarioSpec, name: str) -> list[list[str]]:
        """The engine commands of a cell, in order: one `run`, or check/start/exec/remove for a service."""
        mount = self._mount(scenario)
        command = scenario_command(scenario)
        if scenario.mode != "service":
            return [self.engine.run(name, image_id, mount, command, scenario.options)]
        return [
            *([self._needs_argv(image_id, scenario, f"{name}-needs")] if scenario.needs else []),
            self.engine.start_service(name, image_id, mount, list(scenario.init), scenario.options),
            self.engine.exec(name, command),
            self.engine.remove(name),
        ]

    def check_needs(self, image_id: str, scenario: ScenarioSpec, timeout: float) -> ExecRecord:
        name = f"harness-needs-{uuid.uuid4().hex[:8]}"
        result = self.run(self._needs_argv(image_id, scenario, name), timeout)
        if result.timed_out:
            self.run(self.engine.remove(name), 60 * self.time_scale)
        return result

    def reproduce(self, delivery: DeliveryRecord, scenario: ScenarioSpec) -> list[str]:
        argvs = self._scenario_argvs(delivery.image_id, scenario, f"harness-{scenario.name}")
        return [shlex.join(delivery.command)] + [shlex.join(argv) for argv in argvs]

    def run_scenario(self, image_id: str, scenario: ScenarioSpec, timeout: float) -> ExecRecord:
        name = f"harness-{scenario.name}-{uuid.uuid4().hex[:8]}"
        argvs = self._scenario_argvs(image_id, scenario, name)
        if scenario.mode == "service":
            argvs = argvs[:-1]  # the service is removed below, whatever happens
        result = None
        try:
            for argv in argvs[:-1]:  # the needs check, then starting the service
                result = self.run(argv, timeout)
                if result.exit_code != 0:
                    return result
            result = self.run(argvs[-1], timeout)
            if scenario.mode == "service" and result.exit_code != 0 and not result.timed_out:
                result = self._if_service_exited(name, result)
            elif result.exit_code == 137 and not result.timed_out:
                result = replace(result, oom_killed=self._oom_kill_within(result.duration))
            return result
        finally:
            # A service always needs removing; a timed-out `podman run` leaves its container behind.
            if scenario.mode == "service" or (result is not None and result.timed_out):
                self.run(self.engine.remove(name), 60 * self.time_scale)

    def _if_service_exited(self, name: str, execution: ExecRecord) -> ExecRecord:
        """When a service's container is no longer running (its init died), the scenario never ran:
        say so, with the container's exit status and the last 100 lines of its own log."""
        state = self.run(self.engine.state(name), 60 * self.time_scale)
        running, _, code = state.stdout.strip().partition(" ")
        if state.exit_code != 0 or running != "false":
            return execution
        log = self.run(self.engine.logs(name), 60 * self.time_scale)
        said = (execution.stdout + execution.stderr).strip()
        return replace(
            execution,
            container_exit=int(code) if code.lstrip("-").isdigit() else None,
            stdout=log.stdout + log.stderr,
            stderr=f"{shlex.join(execution.argv)}: {said}\n{shlex.join(log.argv)}: the container's own log is above\n",
        )

    def _kernel_lines(self, seconds: float, pattern: str) -> list[str]:
        """The guest kernel's log lines of the last `seconds` that match the awk regex `pattern`."""
        script = (
            'since=$(awk -v d="$1" \'{print $1 - d}\' /proc/uptime); '
            'dmesg | awk -F"[][]" -v s="$since" -v p="$2" \'$0 ~ p && $2 + 0 >= s\''
        )
        found = self.run(["sh", "-c", script, "kernel-log", str(int(seconds) + 5), pattern], 60 * self.time_scale)
        return found.stdout.splitlines() if found.exit_code == 0 else []

    def _oom_kill_within(self, seconds: float) -> bool:
        """Whether the guest kernel's OOM killer killed a process in the last `seconds` (a 137 that
        is not the harness's timeout: the container's memory limit, or the host's, was reached)."""
        return bool(self._kernel_lines(seconds, "[Kk]illed process"))

    def denials_since(self, seconds: float) -> list[str]:
        return self._kernel_lines(seconds, "apparmor=\"DENIED\"|avc: +denied")

    def allows_rootless(self) -> bool:
        """A podman host with the unprivileged user the harness builds into its podman hosts (a
        disk the user brought may have none)."""
        if self._rootless is None:
            self._rootless = self.record.engine == "podman" and self.run(["id", "-u", ROOTLESS_USER], 60 * self.time_scale).exit_code == 0
        return self._rootless

    def rootless_store(self, delivery: DeliveryRecord, timeout: float) -> ExecRecord:
        """The delivery's own command (a pull from the run's registry, or a load from the delivery
        disk) run again as the unprivileged user, once per image; credentials of a private
        registry reach root's pulls only, so such an image is not offered to that user."""
        if "--authfile" in delivery.command or not delivery.command:
            return ExecRecord(delivery.command, 1, "", "an image pulled with credentials is not pulled for the unprivileged user", 0.0)
        if delivery.image_id in self._rootless_images:
            return ExecRecord(delivery.command, 0, "", "", 0.0)
        self.run(["install", "-d", "-o", ROOTLESS_USER, "-g", ROOTLESS_USER, "-m", "700", f"/run/user/{ROOTLESS_UID}"], 60 * self.time_scale)
        stored = self.run(as_rootless(list(delivery.command)), timeout)
        if stored.exit_code == 0:
            self._rootless_images.add(delivery.image_id)
        return stored

    def runtimes(self) -> list[str]:
        found = self.run(["sh", "-c", "for r in crun runc; do command -v $r >/dev/null && echo $r; done"], 60 * self.time_scale)
        return found.stdout.split() if found.exit_code == 0 else [self.spec.runtime]

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> ExecRecord:
        if self.agent is None:
            raise HostError(f"host {self.name} is not running")
        try:
            return self.agent.execute(argv, timeout, stdin)
        except AgentError as exc:
            state = self._state()
            raise self._failure(f"host {self.name}: {exc} (domain {state}){self.console_tail()}") from None

    def read_facts(self) -> dict[str, str]:
        script = (self.vms_dir / "guest" / "facts").read_bytes()
        result = self.run(["sh", "-s", self.record.engine], timeout=60 * self.time_scale, stdin=script)
        if result.exit_code != 0:
            raise HostError(f"host {self.name}: reading facts failed: {result.stderr.strip()[-500:]}")
        return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)

    def _state(self) -> str:
        try:
            return "running" if self.domain and self.domain.isActive() else "gone"
        except libvirt.libvirtError:
            return "gone"

    # -- teardown -------------------------------------------------------------------------------
    def _destroy(self) -> None:
        if self.domain is not None:
            try:
                self.record.cpu_seconds = round(self.domain.info()[4] / 1e9, 1)  # what it kept busy
                self.domain.destroy()
            except libvirt.libvirtError:
                pass  # already gone: crashed, or killed by the fault it is being torn down for
            self.domain, self.agent = None, None

    def stop(self) -> None:
        self._destroy()
        try:
            self.files.remove_own()
        except libvirt.libvirtError:
            pass  # the hypervisor went away: `harness cleanup` removes the run's volumes later
        self.slot.release()

    def evidence(self) -> dict[str, str]:
        console = self.files.console_copy(self.workdir / "console.log")
        return {"console.log": str(console)} if console else {}


class BuiltHost(LibvirtHost):
    """A host whose disk the harness built from a release's packages (hosts/build.py), booted
    directly into its kernel through the harness's own initramfs."""

    spec: VmHostSpec

    def __init__(self, spec: VmHostSpec, build: HostBuild, initramfs_base: Path, slot: Slot, vms_dir: Path, workdir: Path, run_id: str, verdicts: AccelVerdicts, files: HostFiles):
        super().__init__(spec, build.digest, slot, vms_dir, workdir, run_id, verdicts, files)
        self.build, self.initramfs_base = build, initramfs_base

    def _engine_files(self, plain_http: list[str]) -> dict[str, str]:
        """dockerd's daemon.json with the run's plain-HTTP registries, which the harness's init puts
        in place before dockerd starts (podman is told per pull)."""
        return {"engine/daemon.json": boot_daemon_json(self.spec, self.vms_dir, plain_http)} if self.spec.engine == "docker" else {}

    def _boot(self) -> Boot:
        boot_initrd(self.initramfs_base, self.vms_dir / "guest", self.workdir / "initrd.img")
        return Boot(
            root=self.files.cached(self.build.root_disk, f"{self.build.digest}-root"),
            root_size=self.build.root_disk.stat().st_size,
            kernel=self.files.cached(self.build.kernel, f"{self.build.digest}-kernel"),
            initrd=self.files.own(self.workdir / "initrd.img"),
            cmdline=boot_cmdline(self.spec),
        )
