"""Hosts as QEMU virtual machines started through libvirt (libvirt-python), reached by the guest agent."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import libvirt

from harness.config.model import HostSpec
from harness.hosts.accel import KVM_FIRST_OUTPUT_SECONDS, AccelVerdicts, cpu_model_for
from harness.hosts.agent import AgentError, GuestAgent
from harness.hosts.build import HostBuild
from harness.hosts.domain import DOMAIN_PREFIX, Disk, DomainSpec, build_domain_xml
from harness.hosts.platform import PLATFORMS
from harness.hosts.provider import Host, HostError
from harness.hosts.wait import AgentAnswers, ConsoleSpeaks, WaitTimeout
from harness.results.model import ExecRecord, HostRecord

PAYLOAD_ROOT = "/mnt/harness"
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


class LibvirtHost(Host):
    payload_root = PAYLOAD_ROOT

    def __init__(
        self,
        spec: HostSpec,
        build: HostBuild,
        conn: libvirt.virConnect,
        template: Path,
        workdir: Path,
        run_id: str,
        verdicts: AccelVerdicts,
    ):
        super().__init__(
            HostRecord(
                name=spec.name,
                release=spec.release,
                arch=spec.arch,
                engine=spec.engine,
                runtime=spec.runtime,
                recipe_digest=build.digest,
            )
        )
        self.spec, self.build, self.conn, self.template = spec, build, conn, template
        self.workdir, self.run_id, self.verdicts = workdir, run_id, verdicts
        self.console_log = workdir / "console.log"
        self.domain: libvirt.virDomain | None = None
        self.agent: GuestAgent | None = None

    # -- boot -----------------------------------------------------------------------------------
    def _domain_spec(self, accel: str, disks: tuple[Disk, ...]) -> DomainSpec:
        platform = PLATFORMS[self.spec.arch]
        cmdline = f"root=/dev/vda rw console={platform.console} init=/usr/lib/harness/init panic=-1 {self.spec.kernel_cmdline}"
        return DomainSpec(
            name=f"{DOMAIN_PREFIX}{self.run_id}-{self.spec.name}",
            run_id=self.run_id,
            host=self.spec.name,
            accel=accel,
            platform=platform,
            cpu_model=cpu_model_for(accel, self.spec.cpu, platform.tcg_cpu),
            memory_mib=self.spec.machine.memory_mib,
            vcpus=self.spec.machine.vcpus,
            kernel=self.build.kernel,
            initrd=self.build.initrd,
            cmdline=cmdline.strip(),
            disks=disks,
            console_log=self.console_log,
        )

    def _fresh_overlay(self) -> Path:
        overlay = self.workdir / "root.qcow2"
        overlay.unlink(missing_ok=True)
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(self.build.root_disk), str(overlay)],
            check=True,
            capture_output=True,
        )
        return overlay

    def start(self, payload: Path) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        payload_disk = self.workdir / "payload.img"
        _make_payload_disk(payload, payload_disk)
        for accel in self.verdicts.candidates(self.spec.qemu_arch):
            disks = (Disk(self._fresh_overlay(), "qcow2"), Disk(payload_disk, "raw", readonly=True))
            spec = self._domain_spec(accel, disks)
            self.console_log.unlink(missing_ok=True)
            started = time.monotonic()
            try:
                self.domain = self.conn.createXML(build_domain_xml(self.template, spec), 0)
            except libvirt.libvirtError as exc:
                if accel == "kvm":
                    self.verdicts.mark_kvm_broken(exc.get_error_message())
                    continue
                raise HostError(f"host {self.name}: libvirt refused to start it: {exc.get_error_message()}") from None
            if accel == "kvm":
                try:
                    ConsoleSpeaks(self.console_log).wait_until_ready(self.domain, KVM_FIRST_OUTPUT_SECONDS)
                except WaitTimeout as exc:
                    self.verdicts.mark_kvm_broken(str(exc))
                    self._destroy()
                    continue
            self.record.accel, self.record.cpu_model = accel, spec.cpu_model
            self.agent = GuestAgent(self.domain)
            timeout = self.spec.machine.boot_timeout
            try:
                AgentAnswers(self.agent).wait_until_ready(self.domain, timeout)
            except WaitTimeout as exc:
                raise HostError(f"host {self.name} did not become ready: {exc}{self.console_tail()}") from None
            self.record.boot_seconds = round(time.monotonic() - started, 2)
            return
        raise HostError(f"host {self.name}: no accelerator could start it")

    def console_tail(self) -> str:
        try:
            lines = self.console_log.read_text(errors="replace").splitlines()[-CONSOLE_TAIL_LINES:]
        except OSError:
            return "\n(no console output)"
        return "\nlast console lines:\n" + "\n".join(lines)

    # -- use ------------------------------------------------------------------------------------
    def run(self, argv: list[str], timeout: float) -> ExecRecord:
        if self.agent is None:
            raise HostError(f"host {self.name} is not running")
        try:
            return self.agent.execute(argv, timeout)
        except AgentError as exc:
            state = self._state()
            raise HostError(f"host {self.name}: {exc} (domain {state}){self.console_tail()}") from None

    def facts(self) -> dict[str, str]:
        result = self.run(["/usr/lib/harness/facts"], timeout=120)
        if result.exit_code != 0:
            raise HostError(f"host {self.name}: reading facts failed: {result.stderr.strip()[-500:]}")
        facts = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        self.record.facts = facts
        return facts

    def _state(self) -> str:
        try:
            return "running" if self.domain and self.domain.isActive() else "gone"
        except libvirt.libvirtError:
            return "gone"

    # -- teardown -------------------------------------------------------------------------------
    def _destroy(self) -> None:
        if self.domain is not None:
            try:
                self.domain.destroy()
            except libvirt.libvirtError:
                pass  # already gone: crashed, or killed by the fault it is being torn down for
            self.domain, self.agent = None, None

    def stop(self) -> None:
        self._destroy()
        for name in ("root.qcow2", "payload.img"):
            (self.workdir / name).unlink(missing_ok=True)

    def keep_console(self, dest: Path) -> None:
        if self.console_log.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.console_log, dest)
