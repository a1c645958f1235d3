"""A VM host built by the harness from a Debian release's packages (vm.schema.json)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from harness.config.model import HostKind, HostSpec, Machine


# Releases whose podman cannot play a pod on the harness's hosts (no systemd, cgroupfs), as seen.
POD_TOO_OLD = {
    "bullseye": "bullseye's podman 3.0 plays pods only with a pause image from k8s.gcr.io",
    "bookworm": "bookworm's podman 4.3.1 starts every pod's infra container with all devices denied "
                "(crun: mknod `/dev/null`: Operation not permitted; seen 2026-12-03)",
}

VIA_SAID = {"pod": "pod", "cri": "cri (containerd's CRI plugin; no kubelet)"}  # as the report shows a host's path
CRI_TOO_OLD = {
    "bullseye": "bullseye packages no CRI API proto to generate the harness's CRI client from (golang-github-kubernetes-cri-api-dev is trixie's)",
    "bookworm": "bookworm packages no CRI API proto to generate the harness's CRI client from (golang-github-kubernetes-cri-api-dev is trixie's)",
}


@dataclass(frozen=True)
class VmHostSpec(HostSpec):
    kind: ClassVar[HostKind] = HostKind.VM
    kernel: str = ""  # the release whose kernel it boots; its own release when empty
    cgroup: str = "v2"
    lsm: str = "apparmor"
    cpu: str | None = None
    kernel_cmdline: str = ""
    extra_packages: tuple[str, ...] = ()

    def with_docker_cli(self) -> "VmHostSpec":
        """The host as host-side scenarios need it: a `docker` command. podman hosts of bookworm
        and later get Debian's podman-docker; bullseye has none (the harness's shim stands in)."""
        if self.engine != "podman" or self.release == "bullseye" or "podman-docker" in self.extra_packages:
            return self
        return replace(self, extra_packages=(*self.extra_packages, "podman-docker"))

    @property
    def kernel_release(self) -> str:
        return self.kernel or self.release

    def settings(self) -> dict[str, str]:
        return {"kernel": self.kernel_release, "cgroup": self.cgroup, "lsm": self.lsm, **({"cpu": self.cpu} if self.cpu else {}),
                **({"via": VIA_SAID[self.via]} if self.via != "engine" else {})}

    def via_problem(self) -> str | None:
        if self.via == "engine":
            return None
        if self.engine != "podman":  # the CRI path's probes and deliveries go through podman too
            return f"via: {self.via} needs engine: podman" + (" (docker has no `kube play`)" if self.via == "pod" else " (dockerd runs a containerd of its own)")
        too_old = (POD_TOO_OLD if self.via == "pod" else CRI_TOO_OLD).get(self.release)
        return f"via: {self.via} needs trixie or later: {too_old}" if too_old else None

    @classmethod
    def from_entry(cls, h: dict, machine: Machine) -> "VmHostSpec":
        return cls(
            name=h["name"],
            machine=machine,
            release=h["release"],
            arch=h["arch"],
            engine=h["engine"],
            runtime=h.get("runtime", "crun" if h["engine"] == "podman" else "runc"),
            kernel=h.get("kernel", ""),
            cgroup=h.get("cgroup", "v2"),
            lsm=h.get("lsm", "apparmor"),
            cpu=h.get("cpu"),
            kernel_cmdline=h.get("kernel_cmdline", ""),
            extra_packages=tuple(h.get("extra_packages", ())),
            via=h.get("via", "engine"),
        )
