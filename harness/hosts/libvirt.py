"""Hosts as QEMU virtual machines started through libvirt (libvirt-python), reached by the guest agent."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
import uuid
from abc import abstractmethod
from datetime import datetime, timezone
from dataclasses import dataclass, replace
from pathlib import Path

import libvirt

from harness.config.kinds.vm import VmHostSpec
from harness.config.model import HostSpec, ScenarioSpec
from harness.engines.docker import engine_cli
from harness.engines import cri
from harness.engines.podman import ROOTLESS_UID, ROOTLESS_USER, as_rootless
from harness.hosts import host_side
from harness.hosts.cell_paths import PAYLOAD_ROOT, EnginePath, path_for
from harness.hosts.accel import KVM_FIRST_OUTPUT_SECONDS, AccelVerdicts, cpu_model_for, time_scale
from harness.hosts.files import HostFiles
from harness.hosts.agent import AgentError, GuestAgent
from harness.hosts.build import HostBuild, boot_daemon_json
from harness.hosts.initramfs import boot_initrd
from harness.hosts.domain import DOMAIN_PREFIX, Disk, DomainSpec, build_domain_xml
from harness.hosts.hypervisors import HypervisorLost, Slot
from harness.hosts.platform import PLATFORMS
from harness.hosts.provider import Host, HostError, PullAccess, PullResult
from harness.hosts.store import Held, HeldImage, ImageStore, stale
from harness.images.build import ImageBuild
from harness.images.deliver import assemble_payload
from harness.hosts.wait import AgentAnswers, CommandSucceeds, ConsoleSpeaks, WaitTimeout
from harness.results.model import DeliveryRecord, ExecRecord, HostRecord, StoreUse

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
    words = [f"console={PLATFORMS[spec.arch].console}", "panic=1"]  # stage 1 finds the root disk by its serial
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
        self.store: ImageStore | None = None  # the engine's kept image store, when the kind gives one
        self.fresh_store = False  # boot with an empty store (then keep it as usual)
        self._store_overlay: Path | None = None
        self._held = Held()
        self._store_used: set[str] = set()  # image IDs delivered during this boot
        self._store_changed = False

    def guest_gateway(self) -> str:
        return self.slot.hypervisor.harness_address()

    # -- boot -----------------------------------------------------------------------------------
    @abstractmethod
    def _boot(self) -> Boot:
        """Put this boot's files where the hypervisor reaches them (may raise libvirtError)."""

    def _ready(self, timeout: float) -> None:
        """After the agent answers: ready for commands once a daemon engine answers too (and, on
        the CRI path, containerd's CRI plugin, with the pause image built)."""
        if ready := self.engine.ready():
            CommandSucceeds(self.agent, ready).wait_until_ready(self.domain, timeout)
        if self.spec.via == "cri":
            CommandSucceeds(self.agent, cri.VERSION).wait_until_ready(self.domain, timeout)
            self.must(cri.pause(), "building the CRI sandbox's pause image")

    def _domain_spec(self, accel: str, boot: Boot, disks: tuple[Disk, ...]) -> DomainSpec:
        platform = PLATFORMS[self.spec.arch]
        return DomainSpec(
            name=self.domain_name,
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

    @property
    def domain_name(self) -> str:
        return f"{DOMAIN_PREFIX}{self.run_id}-{self.spec.name}"

    def start(self, images: list[ImageBuild], scenarios: list[ScenarioSpec], plain_http: list[str]) -> None:
        self.plain_http = plain_http
        self._destroy_leftover()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        files = self._engine_files(plain_http) | ({host_side.SCRIPT: host_side.TEXT} if any(s.mode == "host" for s in scenarios) else {})
        payload = assemble_payload(self.workdir / "payload", images, scenarios, files)
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
            spec = self._domain_spec(accel, boot, (Disk(overlay, "qcow2", serial="harness-root"), Disk(payload_path, "raw", readonly=True, serial="harness-delivery"), *boot.disks))
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
        archive = f"{PAYLOAD_ROOT}/images/{image.name}.oci.tar"
        load = self.run(self.engine.load(archive), timeout)
        if load.exit_code == 0:
            check = self.run(self.engine.image_exists(image.image_id), timeout=60)
            if check.exit_code != 0:
                load.exit_code, load.stderr = check.exit_code, load.stderr + f"\nloaded, but no image {image.image_id}"
        if load.exit_code == 0 and self.spec.via == "cri":  # and where the CRI plugin finds images
            into = self.run(cri.load(archive), timeout)
            if into.exit_code != 0:
                return replace(into, stderr=f"{into.stderr}\nthe engine loaded it, containerd's k8s.io namespace could not import it")
        return load

    def pulls(self) -> bool:
        return True

    # -- the kept image store ---------------------------------------------------------------------
    def _store_disk(self) -> tuple[Disk, ...]:
        """This boot's overlay of the kept store, as a disk after the delivery disk."""
        if self.store is None:
            return ()
        try:
            self._store_overlay, self._held = self.store.overlay(self.workdir / "store.qcow2", fresh=self.fresh_store)
        except (OSError, subprocess.CalledProcessError) as exc:
            self.record.image_store = f"none: the kept store could not be opened ({exc}); every image is pulled"
            self.store = None  # the host boots and pulls as it would without one
            return ()
        count = len(self._held.images)
        self.record.image_store = f"warm: {count} image(s) kept from earlier runs" if count else ("fresh: empty, as asked" if self.fresh_store else "cold: empty")
        return (Disk(self.files.own(self._store_overlay), "qcow2", cache="writeback", serial="harness-store"),)

    def _from_store(self, reference: str) -> PullResult | None:
        """An image the kept store holds under this pinned reference (whatever registry address
        the earlier run reached it by), found there without asking the registry."""
        if (held := self._held.by_path(reference)) is None:
            return None
        started = time.monotonic()
        found = self.run(self.engine.platform(held.image_id), 60 * self.time_scale)
        image_id, _, platform = found.stdout.strip().partition(" ")
        if found.exit_code != 0 or not platform:
            return None  # not there after all: pulled as usual
        if reference not in held.references:
            self.run(self.engine.tag(held.image_id, reference), 60 * self.time_scale)
            held.references.append(reference)
        self._store_used.add(held.image_id)
        said = f"in this host's kept image store since {held.pulled_at} (not pulled again); that pull printed:\n{held.first_pull}"
        run = ExecRecord(found.argv, 0, said, "", round(time.monotonic() - started, 3))
        return PullResult(run, held.image_id, platform, StoreUse.IN_STORE, 0)

    def _received(self) -> int | None:
        """Bytes the guest's network interface has received so far."""
        got = self.run(["cat", "/sys/class/net/eth0/statistics/rx_bytes"], 60 * self.time_scale)
        return int(got.stdout) if got.exit_code == 0 and got.stdout.strip().isdigit() else None

    def _store_pulled(self, reference: str, pull: ExecRecord, image_id: str, platform: str) -> None:
        self._store_used.add(image_id)
        held = self._held.images.get(image_id)
        if held is None:
            self._store_changed = True  # an image the kept store did not hold: worth keeping
            self._held.images[image_id] = HeldImage(image_id, [reference], platform, (pull.stdout + pull.stderr)[-4000:],
                                                    datetime.now(timezone.utc).isoformat(timespec="seconds"))
        elif reference not in held.references:
            held.references.append(reference)

    def _store_unmounted(self) -> bool:
        """Images no run needs any more removed, the engine quiet and the store unmounted, so its
        overlay can be kept; False (and why, in the host record) when it cannot be."""
        if self.store is None or self.agent is None or self._store_overlay is None:
            return False
        if self._state() != "running":  # crashed or killed: what it wrote may be torn
            self.record.image_store += "; not kept: the host was gone"
            return False
        try:
            listed = self.run(self.engine.image_ids(), 120 * self.time_scale)
            if listed.exit_code != 0:
                self.record.image_store += f"; not kept: the engine could not list its images: {listed.stderr.strip()[-200:]}"
                return False
            present = {i if i.startswith("sha256:") else f"sha256:{i}" for i in listed.stdout.split()}
            now = time.time()
            for image_id in self._store_used:
                if image_id in self._held.images:
                    self._held.images[image_id].last_used = now
            kept = set(self._held.images) - set(stale(self._held, self._store_used, now))
            doomed = sorted(present - kept - self._store_used)
            if doomed:
                self.run(self.engine.remove_images(doomed), 300 * self.time_scale)
            for image_id in [i for i in self._held.images if i not in kept or i not in present]:
                del self._held.images[image_id]
            if not self._store_changed and not doomed:
                self.store.touch(self._held)  # when each image was last used, for the next runs' pruning
                self.record.image_store += "; unchanged"
                return False
            quiet = self.engine.quiesce()
            if quiet and self.run(quiet, 60 * self.time_scale).exit_code != 0:
                self.record.image_store += "; not kept: the engine would not stop"
                return False
            unmounted = self.run(["sh", "-c", 'sync && umount "$1"', "umount", self.engine.store_dir], 120 * self.time_scale)
        except HostError as exc:
            self.record.image_store += f"; not kept: {str(exc).splitlines()[0]}"
            return False
        if unmounted.exit_code != 0:
            self.record.image_store += f"; not kept: umount said {(unmounted.stderr or unmounted.stdout).strip()[-200:]}"
            return False
        return True

    def _keep_store(self) -> None:
        try:
            size = self.store.keep(self._store_overlay, self._held)
        except (OSError, subprocess.CalledProcessError) as exc:
            self.record.image_store += f"; not kept: {exc}"
            return
        self.record.image_store += f"; kept: {len(self._held.images)} image(s), {size / 2**20:.0f} MiB"

    def pull_image(self, image_name: str, reference: str, timeout: float, tls_verify: bool = False, access: PullAccess | None = None,
                   pinned: bool = False) -> PullResult:
        if self.store is not None and pinned and (kept := self._from_store(reference)) is not None:
            return kept
        registry = reference.partition("/")[0]
        ca_file = f"{self.engine.certs_dir}/{registry}/ca.crt" if access and access.ca_pem else ""
        if ca_file:
            self.run(["sh", "-c", 'mkdir -p "${1%/*}" && cat > "$1"', "ca", ca_file], 60 * self.time_scale, access.ca_pem)
        auth_dir = f"/run/harness-auth/{uuid.uuid4().hex[:12]}" if access and access.auth_json else None
        if auth_dir:
            self.run(["sh", "-c", 'umask 077 && mkdir -p "$1" && cat > "$1/$2"', "auth", auth_dir, self.engine.auth_name], 60 * self.time_scale, access.auth_json)
            if self.spec.via == "cri":  # and in the form containerd's ctr takes
                self.run(["sh", "-c", 'umask 077 && cat > "$1/user"', "auth", auth_dir], 60 * self.time_scale, access.user())
        try:
            pulled = self._engine_pull(reference, timeout, tls_verify, auth_dir)
            if self.spec.via != "cri" or not pulled.image_id:
                return pulled
            # The CRI path's containerd keeps images of its own (namespace k8s.io): pulled there too.
            into = self.run(cri.pull(reference, tls_verify, ca_file, f"{auth_dir}/user" if auth_dir else ""), timeout)
            if into.exit_code != 0:
                return PullResult(replace(into, stderr=f"{into.stderr}\nthe engine had it, containerd's k8s.io namespace could not pull it"))
            return pulled
        finally:
            if auth_dir:  # the credentials stay on the host for this pull only
                self.run(["rm", "-rf", auth_dir], 60 * self.time_scale)

    def _engine_pull(self, reference: str, timeout: float, tls_verify: bool, auth_dir: str | None) -> PullResult:
        received = self._received() if self.store is not None else None
        pull = self.run(self.engine.pull(reference, tls_verify, auth_dir), timeout)
        if pull.exit_code != 0:
            return PullResult(pull)
        inspect = self.run(self.engine.platform(reference), timeout=60 * self.time_scale)
        image_id, _, platform = inspect.stdout.strip().partition(" ")
        if inspect.exit_code != 0 or not platform:
            pull.exit_code, pull.stderr = inspect.exit_code or 1, pull.stderr + f"\npulled, but not inspectable: {inspect.stderr.strip()[-300:]}"
            return PullResult(pull)
        image_id = image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"
        if self.store is None:
            return PullResult(pull, image_id, platform)
        after = self._received()
        self._store_pulled(reference, pull, image_id, platform)
        return PullResult(pull, image_id, platform, StoreUse.PULLED, after - received if received is not None and after is not None else None)

    def check_needs(self, image_id: str, scenario: ScenarioSpec, timeout: float) -> ExecRecord:
        name = f"harness-needs-{uuid.uuid4().hex[:8]}"
        result = self.run(EnginePath(self).needs_argv(image_id, scenario, name), timeout)
        if result.timed_out:
            self.run(self.engine.remove(name), 60 * self.time_scale)
        return result

    def _fetch(self, delivery: DeliveryRecord) -> list[str]:
        """The command that puts the delivered image into a store: the delivery's own, or, for an
        image found in the kept store, the pull from the run's registry that would have been run."""
        return self.engine.pull(delivery.reference) if delivery.store == StoreUse.IN_STORE else list(delivery.command)

    def _fetch_by_hand(self, delivery: DeliveryRecord) -> list[str]:
        """`_fetch` as the lines a person runs: a pull that logged in is a login by hand (the per-pull
        credentials file its command named is gone) and the pull, with the TLS the harness used."""
        if not delivery.credentials:
            return [shlex.join(self._fetch(delivery))]
        registry = delivery.reference.partition("/")[0]
        return [f"{shlex.join(self.engine.login(registry, delivery.tls_verify))}  # the credentials in {delivery.credentials}",
                shlex.join(self.engine.pull(delivery.reference, delivery.tls_verify))]

    def reproduce(self, delivery: DeliveryRecord, scenario: ScenarioSpec) -> list[str]:
        path = path_for(self, self.spec.via, scenario)
        return [*self._fetch_by_hand(delivery), *path.by_hand(delivery, scenario, f"harness-{scenario.name}", self.timeout_for(scenario))]

    def run_scenario(self, image_id: str, scenario: ScenarioSpec, timeout: float) -> ExecRecord:
        """The cell the way this host runs it (`hosts/cell_paths.py`)."""
        name = f"harness-{scenario.name}-{uuid.uuid4().hex[:8]}"
        return path_for(self, self.spec.via, scenario).run(image_id, scenario, name, timeout)

    def must(self, argv: list[str], what: str, stdin: bytes | None = None) -> str:
        """The command's stdout; a HostError naming `what` when it fails."""
        done = self.run(argv, 120 * self.time_scale, stdin)
        if done.exit_code != 0:
            raise HostError(f"host {self.name}: {what} failed (exit {done.exit_code}): {(done.stderr or done.stdout).strip()[-300:]}")
        return done.stdout.strip()

    def _kernel_lines(self, seconds: float, pattern: str) -> list[str]:
        """The guest kernel's log lines of the last `seconds` that match the awk regex `pattern`."""
        script = (
            'since=$(awk -v d="$1" \'{print $1 - d}\' /proc/uptime); '
            'dmesg | awk -F"[][]" -v s="$since" -v p="$2" \'$0 ~ p && $2 + 0 >= s\''
        )
        found = self.run(["sh", "-c", script, "kernel-log", str(int(seconds) + 5), pattern], 60 * self.time_scale)
        return found.stdout.splitlines() if found.exit_code == 0 else []

    def oom_kill_within(self, seconds: float) -> bool:
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
        if delivery.credentials or not delivery.command:
            return ExecRecord(delivery.command, 1, "", "an image pulled with credentials is not pulled for the unprivileged user", 0.0)
        if delivery.image_id in self._rootless_images:
            return ExecRecord(delivery.command, 0, "", "", 0.0)
        self.run(["install", "-d", "-o", ROOTLESS_USER, "-g", ROOTLESS_USER, "-m", "700", f"/run/user/{ROOTLESS_UID}"], 60 * self.time_scale)
        stored = self.run(as_rootless(self._fetch(delivery)), timeout)
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
    def _destroy_leftover(self) -> None:
        """This run's own domain of this host, left running when the host was lost with a connection
        that died (libvirtd restarted: QEMU ran on, and the new libvirtd took it over): destroyed
        before the host starts again in its place."""
        try:
            leftover = self.conn.lookupByName(self.domain_name)
            if leftover.isActive():
                leftover.destroy()
        except libvirt.libvirtError:
            pass  # none: the usual case

    def _destroy(self) -> None:
        if self.domain is not None:
            try:
                self.record.cpu_seconds = round(self.domain.info()[4] / 1e9, 1)  # what it kept busy
                self.domain.destroy()
            except libvirt.libvirtError:
                pass  # already gone: crashed, or killed by the fault it is being torn down for
            self.domain, self.agent = None, None

    def stop(self) -> None:
        keep = self._store_unmounted()
        self._destroy()
        if keep:
            self._keep_store()
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
        store = self._store_disk()  # the engine's kept image store: stage 1 mounts it where the engine keeps images
        return Boot(
            root=self.files.cached(self.build.root_disk, f"{self.build.digest}-root"),
            root_size=self.build.root_disk.stat().st_size,
            kernel=self.files.cached(self.build.kernel, f"{self.build.digest}-kernel"),
            initrd=self.files.own(self.workdir / "initrd.img"),
            cmdline=boot_cmdline(self.spec) + (f" harness.store={self.engine.store_dir}" if store else ""),
            disks=store,
        )
