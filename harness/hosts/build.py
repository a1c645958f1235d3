"""Build a host's boot files (kernel, initrd, root disk) from its release's own packages with mmdebstrap.

The root disk is made with `mkfs.ext4 -d` straight from the built tree: no loop mounts, no chroot
of our own. Builds are cached under the digest of the host's recipe.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness import __version__
from harness.cache import BuildCache, digest_of
from harness.config.kinds.vm import VmHostSpec
from harness.engines.podman import ROOTLESS_UID, ROOTLESS_USER
from harness.images.archive import Suite, require_architecture
from harness.mmdebstrap import BuildError, mmdebstrap_argv, run_logged

# Bump when the way a host disk is laid out changes, so every cached host is rebuilt.
BUILD_FORMAT = 3  # 3: podman hosts have an unprivileged user for rootless experiments
# Room left on the root disk for the engine's image and container storage.
FREE_SPACE_MIB = 6144
# The harness boots hosts with its own initramfs, so Debian's is never generated (it took minutes
# under emulation in foreign-architecture builds).
NO_INITRAMFS_HOOK = 'chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && ln -s /bin/true "$1/usr/sbin/update-initramfs"'


@dataclass(frozen=True)
class HostBuild:
    """The cached boot files of one host recipe."""

    digest: str
    directory: Path

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def root_disk(self) -> Path:
        return self.directory / "root.img"


def host_recipe(spec: VmHostSpec, vms_dir: Path) -> dict:
    """Everything that determines a host's disk; its digest names the cache entry."""
    recipes = yaml.safe_load((vms_dir / "recipes.yaml").read_text())
    own_kernel = spec.kernel_release == spec.release
    split = recipes.get("engine_split", {}).get(spec.engine, {})
    packages = sorted(
        {
            *recipes["base"],
            *([recipes["kernels"][spec.arch]] if own_kernel else []),
            *recipes["engines"][spec.engine],
            *(split["packages"] if spec.release in split.get("releases", ()) else []),
            *recipes.get("via", {}).get(spec.via, []),
            *recipes["runtimes"][spec.runtime],
            *recipes["lsm"][spec.lsm],
            *spec.extra_packages,
        }
    )
    return {
        "format": BUILD_FORMAT,
        "release": spec.release,
        "arch": spec.arch,
        "engine": spec.engine,
        "runtime": spec.runtime,
        "kernel": {"release": spec.kernel_release, "package": recipes["kernels"][spec.arch]},
        "packages": packages,
        **_engine_config_digest(spec, vms_dir),
        **({"cri": digest_of({"client": (vms_dir / "guest" / "cri.py").read_text(), "containerd": CONTAINERD_CONFIG, "cni": CNI_NETWORK})}
           if spec.via == "cri" else {}),
    }


def _engine_config_digest(spec: VmHostSpec, vms_dir: Path) -> dict[str, str]:
    """The engine configuration's part of the recipe, keyed by its file's name."""
    if spec.engine == "podman":  # the template, whose runtime is already in the recipe
        return {"containers.conf": digest_of({"text": (vms_dir / "guest" / "containers.conf").read_text()})}
    return {"daemon.json": digest_of({"text": engine_config(spec, vms_dir)[1]})}


def engine_config(spec: VmHostSpec, vms_dir: Path) -> tuple[str, str]:
    """(path in the guest, text) of the engine's configuration: podman's containers.conf, or
    dockerd's daemon.json (as shipped; runc is dockerd's default runtime, anything else is
    registered). The registries dockerd may reach over plain HTTP are the run's: they are added at
    each boot (hosts/libvirt.py), so the disk does not depend on where the registry listens."""
    if spec.engine == "podman":
        return "etc/containers/containers.conf", (vms_dir / "guest" / "containers.conf").read_text().replace("@RUNTIME@", spec.runtime)
    daemon: dict = {}
    if spec.runtime != "runc":
        daemon |= {"default-runtime": spec.runtime, "runtimes": {spec.runtime: {"path": f"/usr/bin/{spec.runtime}"}}}
    return "etc/docker/daemon.json", json.dumps(daemon, indent=1) + "\n"


def boot_daemon_json(spec: VmHostSpec, vms_dir: Path, plain_http: list[str]) -> str:
    """dockerd's daemon.json for one boot: the disk's, with the registries it may pull from over
    plain HTTP (docker has no per-pull switch: a registry not listed is reached over TLS)."""
    daemon = json.loads(engine_config(spec, vms_dir)[1]) | {"insecure-registries": sorted(set(plain_http))}
    return json.dumps(daemon, indent=1) + "\n"


def _install_guest_files(spec: VmHostSpec, vms_dir: Path, rootfs: Path) -> None:
    path, text = engine_config(spec, vms_dir)
    (rootfs / path).parent.mkdir(parents=True, exist_ok=True)
    (rootfs / path).write_text(text)
    if spec.engine == "podman":  # blame's rootless experiment runs as this user
        _add_rootless_user(rootfs)
    (rootfs / "etc/hostname").write_text(f"{spec.name}\n")
    (rootfs / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {spec.name}\n::1 localhost\n")


# containerd for the CRI path: the CRI plugin's pause image is the one the harness builds in the
# guest (registry.k8s.io cannot be reached), its CNI plugins where Debian installs them.
CONTAINERD_CONFIG = """version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/harness-pause:1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
"""
# The pods' network: a bridge of their own with addresses from host-local and no route out (the CRI
# plugin wants an eth0 with an address; the loopback plugin alone gives it none, seen with 1.7.24).
CNI_NETWORK = json.dumps({"cniVersion": "1.0.0", "name": "harness-pods", "plugins": [
    {"type": "bridge", "bridge": "harness-cni0", "isGateway": False, "ipMasq": False,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.77.0/24"}]], "routes": []}}]}) + "\n"
CRI_PROTO = "usr/share/gocode/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto"


def without_gogo(proto: str) -> str:
    """The CRI API's proto without gogoproto's import and options: they steer Go code generation
    only (the wire format is the same), and gogo.proto's Go-style import path ("github.com/...")
    cannot become a Python module."""
    proto = re.sub(r'^import "github\.com/gogo/protobuf/gogoproto/gogo\.proto";\n', "", proto, flags=re.M)
    proto = re.sub(r"^option \(gogoproto\.[^;]*;\n", "", proto, flags=re.M)
    proto = re.sub(r"\s*\[\s*\(gogoproto\.[^\]]*\]", "", proto)  # a field's [(gogoproto.x) = y, ...]
    return proto


def _install_cri_client(vms_dir: Path, rootfs: Path, log: Path) -> None:
    """The CRI path's files: containerd's configuration (the guest's init starts containerd when
    it is there), the pods' CNI network, and the CRI client with its stubs, generated from the
    release's CRI API proto by the release's own protoc and gRPC plugin."""
    (rootfs / "etc/containerd").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/containerd/harness.toml").write_text(CONTAINERD_CONFIG)
    (rootfs / "etc/cni/net.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/cni/net.d/10-harness-pods.conflist").write_text(CNI_NETWORK)
    client = rootfs / "usr/lib/harness-cri"
    client.mkdir(parents=True, exist_ok=True)
    (client / "api.proto").write_text(without_gogo((rootfs / CRI_PROTO).read_text()))
    shutil.copyfile(vms_dir / "guest" / "cri.py", client / "cri.py")
    run_logged(["chroot", str(rootfs), "protoc", "-I/usr/lib/harness-cri", "--python_out=/usr/lib/harness-cri", "--grpc_out=/usr/lib/harness-cri",
                "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin", "/usr/lib/harness-cri/api.proto"], log, "the CRI client's stubs")


def _add_rootless_user(rootfs: Path) -> None:
    """The unprivileged user rootless podman runs as, with 65536 subordinate IDs (newuidmap and
    newgidmap come from the uidmap package of the podman recipe)."""
    with open(rootfs / "etc/passwd", "a") as fh:
        fh.write(f"{ROOTLESS_USER}:x:{ROOTLESS_UID}:{ROOTLESS_UID}::/home/{ROOTLESS_USER}:/bin/sh\n")
    with open(rootfs / "etc/group", "a") as fh:
        fh.write(f"{ROOTLESS_USER}:x:{ROOTLESS_UID}:\n")
    for ids in ("etc/subuid", "etc/subgid"):
        with open(rootfs / ids, "a") as fh:
            fh.write(f"{ROOTLESS_USER}:100000:65536\n")
    home = rootfs / "home" / ROOTLESS_USER
    # podman expects these to exist (trixie's 5.4 stats ~/.config rather than making it).
    for directory in (home, home / ".config", home / ".local", home / ".local/share"):
        directory.mkdir(parents=True, exist_ok=True)
        os.chown(directory, ROOTLESS_UID, ROOTLESS_UID)
    home.chmod(0o700)


def _install_foreign_kernel(spec: VmHostSpec, package: str, rootfs: Path, tree: Path, mirror: str, log: Path) -> None:
    """Put another release's kernel (image and modules) into the host's tree: user space and a
    kernel that were never built together. The module index is made by the host's own depmod."""
    run_logged(mmdebstrap_argv(spec.kernel_release, spec.arch, [package], tree, mirror, variant="extract"), log, f"host {spec.name} (kernel)")
    kernel = _only(tree, "vmlinu[xz]-*")
    version = kernel.name.split("-", 1)[1]
    shutil.copy2(kernel, rootfs / "boot" / kernel.name)
    modules = tree / "usr/lib/modules" / version
    if not modules.is_dir():
        modules = tree / "lib/modules" / version
    shutil.copytree(modules, rootfs / "lib/modules" / version, symlinks=True)  # /usr/lib/modules where /lib is merged
    run_logged(["chroot", str(rootfs), "depmod", version], log, f"host {spec.name} (kernel)")
    shutil.rmtree(tree)


def _label_for_selinux(spec: VmHostSpec, rootfs: Path, log: Path) -> None:
    """Enforcing with the release's default policy, and every file labelled as that policy says.

    The release's own matchpathcon computes each file's label (setfiles cannot run here: it checks
    each label against a loaded policy, and this machine has none); the labels are set from here as
    extended attributes, which `mkfs.ext4 -d` carries into the disk."""
    (rootfs / "etc/selinux/config").write_text("SELINUX=enforcing\nSELINUXTYPE=default\n")
    lookup = subprocess.run(
        ["chroot", str(rootfs), "sh", "-c", "find / -xdev -print0 | xargs -0 matchpathcon"],
        capture_output=True, text=True,
    )
    labels = [line.split("\t", 1) for line in lookup.stdout.splitlines() if "\t" in line]
    with open(log, "a") as fh:
        fh.write(f"$ matchpathcon on every file: {len(labels)} labels, exit {lookup.returncode}\n{lookup.stderr[-2000:]}")
    if lookup.returncode != 0 or len(labels) < 1000:
        raise BuildError(f"host {spec.name}: matchpathcon gave {len(labels)} SELinux labels (exit {lookup.returncode}); see {log}")
    for path, label in labels:
        if label.strip() != "<<none>>":
            os.setxattr(rootfs / path.lstrip("/"), "security.selinux", label.strip().encode() + b"\0", follow_symlinks=False)


def _only(rootfs: Path, pattern: str) -> Path:
    found = sorted((rootfs / "boot").glob(pattern))
    if len(found) != 1:
        raise BuildError(f"expected one /boot/{pattern} in the host tree, found {[f.name for f in found]}")
    return found[0]


def _tree_size_mib(path: Path) -> int:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def build_host(spec: VmHostSpec, vms_dir: Path, mirror: str, cache: BuildCache) -> tuple[HostBuild, bool]:
    """The host's boot files, from cache or freshly built; returns (build, whether it was built now)."""
    recipe = host_recipe(spec, vms_dir)
    digest = digest_of(recipe)

    def build(tmp: Path, log: Path) -> None:
        require_architecture([Suite(mirror, r) for r in dict.fromkeys((spec.release, spec.kernel_release))], spec.arch, f"host {spec.name}")
        rootfs = tmp / "rootfs"
        log.write_text(f"# host {spec.name} ({spec.release}/{spec.arch}), harness {__version__}\n")
        argv = mmdebstrap_argv(spec.release, spec.arch, recipe["packages"], rootfs, mirror, hooks={"essential": NO_INITRAMFS_HOOK})
        run_logged(argv, log, f"host {spec.name}")
        if spec.kernel_release != spec.release:
            _install_foreign_kernel(spec, recipe["kernel"]["package"], rootfs, tmp / "kernel", mirror, log)
        _install_guest_files(spec, vms_dir, rootfs)
        if spec.via == "cri":
            _install_cri_client(vms_dir, rootfs, log)
        if spec.lsm == "selinux":
            _label_for_selinux(spec, rootfs, log)
        shutil.copyfile(_only(rootfs, "vmlinu[xz]-*"), tmp / "vmlinuz")  # ppc64el ships an uncompressed vmlinux
        size = _tree_size_mib(rootfs) + FREE_SPACE_MIB
        run_logged(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(tmp / "root.img"), f"{size}M"], log, f"host {spec.name}")
        shutil.rmtree(rootfs)

    directory, built = cache.get_or_build(digest, recipe, build)
    return HostBuild(digest, directory), built
