"""Host settings: what the matrix says, how it reaches the recipe, the kernel command line and the engine."""

from __future__ import annotations

from pathlib import Path

from harness.cache import digest_of
from harness.config.load import load_matrix
from harness.config.model import ScenarioOptions
from harness.engines.docker import Docker, engine_cli
from harness.engines.podman import Podman
from harness.hosts.build import host_recipe
from harness.hosts.libvirt import boot_cmdline
from tests.conftest import write_matrix

MATRIX = """
version: 1
hosts:
  - {name: plain, release: bookworm, arch: amd64, engine: podman}
  - {name: dockerd, release: bookworm, arch: amd64, engine: docker}
  - {name: old-cgroups, release: bookworm, arch: amd64, engine: podman, cgroup: v1, lsm: none, cpu: Nehalem}
  - {name: new-kernel, release: bookworm, kernel: trixie, arch: amd64, engine: podman}
images:
  - {name: base, release: bookworm}
scenarios: [useradd]
"""


def hosts(repo_root, tmp_path):
    import shutil

    shutil.copytree(repo_root / "vms", tmp_path / "vms")
    shutil.copytree(repo_root / "scenarios", tmp_path / "scenarios")
    matrix = load_matrix(write_matrix(tmp_path, MATRIX))
    return {h.name: h for h in matrix.hosts}, matrix.vms_dir


def test_settings_default_to_debian_defaults(repo_root, tmp_path):
    h, _ = hosts(repo_root, tmp_path)
    assert (h["plain"].runtime, h["plain"].cgroup, h["plain"].lsm, h["plain"].kernel_release) == ("crun", "v2", "apparmor", "bookworm")
    assert h["dockerd"].runtime == "runc"  # what docker.io ships
    assert h["old-cgroups"].settings() == {"kernel": "bookworm", "cgroup": "v1", "lsm": "none", "cpu": "Nehalem"}


def test_each_setting_that_changes_the_disk_changes_the_recipe(repo_root, tmp_path):
    h, vms = hosts(repo_root, tmp_path)
    recipes = {name: host_recipe(spec, vms) for name, spec in h.items()}
    assert len({digest_of(r) for r in recipes.values()}) == 4
    assert "docker.io" in recipes["dockerd"]["packages"] and "podman" not in recipes["dockerd"]["packages"]
    assert "apparmor" in recipes["plain"]["packages"] and "apparmor" not in recipes["old-cgroups"]["packages"]
    # Another release's kernel is not installed from the host's own release.
    assert "linux-image-cloud-amd64" in recipes["plain"]["packages"]
    assert "linux-image-cloud-amd64" not in recipes["new-kernel"]["packages"]
    assert recipes["new-kernel"]["kernel"] == {"release": "trixie", "package": "linux-image-cloud-amd64"}


def test_docker_commands_differ_from_podman_only_where_the_clis_do():
    options = ScenarioOptions(memory="64m", systemd=True, cap_add=("SYS_ADMIN",))
    podman = engine_cli("podman", "crun").run("c", "sha256:x", ("/src", "/dst"), ["/dst/run"], options)
    docker = engine_cli("docker", "runc").run("c", "sha256:x", ("/src", "/dst"), ["/dst/run"], options)
    assert podman[:1] == ["podman"] and "--systemd" in podman
    assert docker == ["docker", "run", "--rm", "--name", "c", "--runtime", "runc", "--network", "none", "--volume", "/src:/dst:ro", "--memory", "64m", "--cap-add", "SYS_ADMIN", "sha256:x", "/dst/run"]
    assert Docker("runc").ready() and Podman("crun").ready() is None
    assert Docker("runc").remove("c") == ["docker", "rm", "--force", "c"]


def test_cgroup_and_lsm_settings_reach_the_kernel_command_line(repo_root, tmp_path):
    h, _ = hosts(repo_root, tmp_path)
    assert boot_cmdline(h["plain"]) == "console=ttyS0 panic=1"
    assert boot_cmdline(h["old-cgroups"]).endswith("panic=1 systemd.unified_cgroup_hierarchy=0 apparmor=0")


def test_auto_workers_never_oversubscribe_the_cores(repo_root, tmp_path):
    from dataclasses import replace

    from harness.cli import _workers
    from harness.config.model import HypervisorSpec

    h, _ = hosts(repo_root, tmp_path)
    matrix = load_matrix(tmp_path / "matrix.yaml")
    # libvirt's test driver, describing a node of four cores and 16 GiB.
    node = HypervisorSpec(f"test://{Path(__file__).parent / 'data' / 'node-4-cores.xml'}")
    assert _workers("auto", matrix, [node.uri]) == 4  # four cores, vCPUs left to the harness: one each (--hypervisor URI)
    two_each = load_matrix(write_matrix(tmp_path, MATRIX.replace("hosts:", "defaults: {vcpus: 2}\nhosts:")))
    assert _workers("auto", two_each, [node.uri]) == 2  # four cores, guests of two vCPUs
    twins = tuple(HypervisorSpec(node.uri, name=f"twin{i}") for i in range(3))
    assert _workers("auto", replace(two_each, hypervisors=twins[:2]), None) == 4  # the matrix's own pool
    assert _workers("auto", replace(two_each, hypervisors=twins), None) == 4  # no more than hosts
    assert _workers("3", matrix, [node.uri]) == 3


def test_docker_hosts_get_the_runs_registries_at_boot_not_in_their_disk(repo_root, tmp_path):
    """The disk's daemon.json names no registry (so it does not depend on the port); each boot's
    lists the run's registry wherever it listens, and plain-HTTP reference registries only."""
    import json

    from harness.hosts.build import boot_daemon_json, engine_config

    h, vms = hosts(repo_root, tmp_path)
    assert "insecure-registries" not in json.loads(engine_config(h["dockerd"], vms)[1])
    booted = json.loads(boot_daemon_json(h["dockerd"], vms, ["10.0.2.2:8009", "10.0.2.2:5001", "10.0.2.2:8009"]))
    assert booted["insecure-registries"] == ["10.0.2.2:5001", "10.0.2.2:8009"]


def test_only_references_without_tls_verification_are_plain_http(repo_root, tmp_path):
    from harness.context import RunContext
    from harness.hosts.fleet import Fleet
    from tests.stub_host import StubHost

    text = MATRIX.replace("images:\n", "images:\n  - {name: lab, reference: '127.0.0.1:5001/app:1', tls_verify: false}\n  - {name: vendor, reference: 'registry.example.com/app:2'}\n")
    import shutil

    shutil.copytree(repo_root / "vms", tmp_path / "vms")
    shutil.copytree(repo_root / "scenarios", tmp_path / "scenarios")
    matrix = load_matrix(write_matrix(tmp_path, text))
    fleet = Fleet(matrix, RunContext("r", tmp_path, tmp_path, (), registry="http://127.0.0.1:8009"))
    assert fleet._plain_http(StubHost(matrix.host("dockerd"))) == ["10.0.2.2:8009", "10.0.2.2:5001"]


def test_docker_hosts_of_trixie_on_get_the_cli_their_docker_io_only_recommends(repo_root, tmp_path):
    """trixie split docker's CLI into docker-cli, which docker.io only recommends (hosts are built
    without recommends): a trixie docker host had dockerd and no `docker` command."""
    import shutil

    shutil.copytree(repo_root / "vms", tmp_path / "vms")
    shutil.copytree(repo_root / "scenarios", tmp_path / "scenarios")
    m = load_matrix(write_matrix(tmp_path, MATRIX.replace("images:", "  - {name: t, release: trixie, arch: amd64, engine: docker}\nimages:")))
    recipes = {h.name: host_recipe(h, m.vms_dir) for h in m.hosts}
    assert "docker-cli" in recipes["t"]["packages"]
    assert "docker-cli" not in recipes["dockerd"]["packages"]  # bookworm's docker.io has its CLI (and no docker-cli package)
