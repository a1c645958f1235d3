"""Domain XML: per-architecture machine and console, explicit CPU model, ownership metadata."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from harness.hosts.accel import AccelVerdicts, cpu_model_for
from harness.hosts.domain import Disk, DomainSpec, build_domain_xml, owner_of
from harness.hosts.platform import PLATFORMS


def spec(arch: str, accel: str = "qemu", cpu: str | None = None) -> DomainSpec:
    platform = PLATFORMS[arch]
    return DomainSpec(
        name=f"harness-r1-{arch}",
        run_id="r1",
        run_dir="/var/cache/harness/runs/r1",
        host=f"host-{arch}",
        accel=accel,
        platform=platform,
        cpu_model=cpu_model_for(accel, cpu, platform.tcg_cpu),
        memory_mib=1024,
        vcpus=2,
        kernel=Path("/c/vmlinuz"),
        initrd=Path("/c/initrd.img"),
        cmdline="root=/dev/vda",
        disks=(Disk(Path("/r/root.qcow2"), "qcow2", serial="harness-root"), Disk(Path("/r/payload.img"), "raw", readonly=True, serial="harness-delivery")),
        console_log=Path("/r/console.log"),
    )


@pytest.mark.parametrize("arch, machine, cpu", [("amd64", "q35", None), ("arm64", "virt", "cortex-a57"), ("ppc64el", "pseries", "POWER9")])
def test_machine_and_cpu_are_explicit(repo_root, arch, machine, cpu):
    root = ET.fromstring(build_domain_xml(repo_root / "vms/domain.xml", spec(arch)))
    assert root.get("type") == "qemu"
    assert root.find("os/type").get("machine") == machine
    cpu_el = root.find("cpu")
    if cpu is None:
        assert cpu_el.get("mode") == "maximum"  # never libvirt's qemu64 default
        disabled = {f.get("name") for f in cpu_el.findall("feature") if f.get("policy") == "disable"}
        assert disabled == {"la57", "cx16"}  # what QEMU 7.2's TCG emulates wrongly for 6.12 kernels
    else:
        assert cpu_el.find("model").text == cpu
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]
    assert [d.findtext("serial") for d in disks] == ["harness-root", "harness-delivery"]  # found by these, not by name
    assert disks[1].find("readonly") is not None
    assert root.find("devices/channel/target").get("name") == "org.qemu.guest_agent.0"


def test_kvm_uses_the_host_cpu(repo_root):
    root = ET.fromstring(build_domain_xml(repo_root / "vms/domain.xml", spec("amd64", accel="kvm")))
    assert root.get("type") == "kvm" and root.find("cpu").get("mode") == "host-passthrough"


def test_ownership_survives_a_libvirt_round_trip(repo_root):
    """libvirt's test driver keeps our metadata, so cleanup can find a run's domains."""
    xml = build_domain_xml(repo_root / "vms/domain.xml", spec("amd64"))
    assert owner_of(xml) == ("r1", "host-amd64", "/var/cache/harness/runs/r1")
    root = ET.fromstring(xml)
    root.set("type", "test")
    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXML(ET.tostring(root, encoding="unicode"))
        assert owner_of(dom.XMLDesc()) == ("r1", "host-amd64", "/var/cache/harness/runs/r1")
        dom.undefine()
    finally:
        conn.close()
    assert owner_of("<domain><name>other</name></domain>") is None


def test_kvm_verdict_is_remembered(tmp_path, monkeypatch):
    verdicts = AccelVerdicts(tmp_path)
    monkeypatch.setattr("harness.hosts.accel.os.access", lambda *_: True)
    monkeypatch.setattr("harness.hosts.accel.native_qemu_arch", lambda: "x86_64")
    assert verdicts.candidates("x86_64") == ["kvm", "qemu"]
    assert verdicts.candidates("aarch64") == ["qemu"]
    verdicts.mark_kvm_broken("silent for 15s")
    assert verdicts.candidates("x86_64") == ["qemu"]
    assert verdicts.kvm_broken() == "silent for 15s"


def test_cleanup_spares_a_live_run_of_another_cache_directory(repo_root, tmp_path):
    """Two harnesses with different HARNESS_CACHE on one libvirtd: cleanup by one leaves the
    other's running domains alone (it reads their run's directory from the domain) and removes
    only those of dead runs."""
    from dataclasses import replace

    from harness.cleanup import cleanup
    from harness.runs import claim

    live_dir = tmp_path / "other-cache" / "runs" / "live"
    claim(live_dir)
    conn = libvirt.open("test:///default")
    try:
        for run, run_dir in (("live", live_dir), ("dead", tmp_path / "gone-cache" / "runs" / "dead")):
            root = ET.fromstring(build_domain_xml(repo_root / "vms/domain.xml", replace(spec("amd64"), name=f"harness-{run}-h", run_id=run, run_dir=str(run_dir))))
            root.set("type", "test")
            conn.defineXML(ET.tostring(root, encoding="unicode"))
        cleaned = cleanup([conn], tmp_path / "this-cache")
        assert cleaned.domains == ["harness-dead-h"]
        assert "harness-live-h" in [d.name() for d in conn.listAllDomains()]
    finally:
        for dom in conn.listAllDomains():
            if dom.name().startswith("harness-"):
                dom.undefine()
        conn.close()


def test_a_disk_image_boots_through_uefi_with_its_own_variable_store(repo_root):
    through_firmware = replace(spec("arm64"), kernel="", initrd="", cmdline="", firmware="efi", nvram="/r/nvram.fd")
    root = ET.fromstring(build_domain_xml(repo_root / "vms/domain.xml", through_firmware))
    os_el = root.find("os")
    assert os_el.get("firmware") == "efi" and os_el.find("kernel") is None and os_el.find("cmdline") is None
    assert os_el.find("nvram").text == "/r/nvram.fd" and os_el.find("boot").get("dev") == "hd"
    assert os_el.find("firmware/feature").get("name") == "secure-boot" and os_el.find("firmware/feature").get("enabled") == "no"
    assert root.find("on_reboot").text == "restart"  # cloud-init may reboot the guest
    slof = ET.fromstring(build_domain_xml(repo_root / "vms/domain.xml", replace(spec("ppc64el"), kernel="", initrd="", cmdline="")))
    assert slof.find("os").get("firmware") is None and slof.find("os/boot").get("dev") == "hd"  # the machine's own firmware


def test_the_nocloud_seed_only_starts_the_agent(tmp_path):
    import subprocess

    import yaml

    from harness.hosts.nocloud import make_seed, user_data

    config = yaml.safe_load(user_data())
    assert user_data().startswith("#cloud-config\n") and set(config) == {"bootcmd", "runcmd"}
    assert "qemu-guest-agent" in config["runcmd"][0][2]
    seed = make_seed(tmp_path / "seed", "run-1-h", "h")
    label = subprocess.run(["xorriso", "-indev", str(seed), "-pvd_info"], capture_output=True, text=True).stdout
    assert "Volume Id    : cidata" in label, label


def test_console_lines_quoted_in_messages_lose_terminal_control_sequences():
    from harness.hosts.libvirt import readable

    ovmf = "\x1b[2J\x1b[01;01H\x1b[=3hBdsDxe: failed to load Boot0001\r\n\x1b[1m\x1b[33m\x1b[40mShell> \x1b[0m"
    assert readable(ovmf) == "BdsDxe: failed to load Boot0001\nShell> "
