"""matrix.yaml validation: every mistake is one line naming file, line and key path."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.config.load import MatrixError, load_matrix
from tests.conftest import write_matrix

GOOD = """
version: 1
hosts:
  - name: h1
    release: bookworm
    arch: amd64
    engine: podman
  - name: h2
    release: trixie
    arch: arm64
    engine: podman
    runtime: runc
images:
  - name: img
    release: bookworm
scenarios:
  - useradd
"""


def problems_of(path) -> list[str]:
    with pytest.raises(MatrixError) as info:
        load_matrix(path)
    return info.value.problems


def test_default_matrix_is_valid(repo_root):
    matrix = load_matrix(repo_root / "matrix.yaml")
    spread = {(h.release, h.arch) for h in matrix.hosts}
    # bullseye's LTS archive has no ppc64el any more (harness/images/archive.require_architecture).
    wanted = {(r, a) for r in ("bullseye", "bookworm", "trixie") for a in ("amd64", "arm64", "ppc64el")} - {("bullseye", "ppc64el")}
    assert wanted <= spread
    assert any(h.arch == "s390x" for h in matrix.hosts)
    assert any(h.engine == "docker" for h in matrix.hosts) and any(h.cgroup == "v1" for h in matrix.hosts)
    assert any(h.kernel_release != h.release for h in matrix.hosts)
    assert matrix.scenario("useradd").script.name == "run"


def test_good_matrix_loads_with_defaults(matrix_dir):
    matrix = load_matrix(write_matrix(matrix_dir, GOOD))
    assert matrix.host("h1").runtime == "crun"
    assert matrix.host("h2").runtime == "runc"
    assert matrix.host("h2").qemu_arch == "aarch64"
    assert matrix.image("img").cmd == ("/bin/bash",)


def test_bad_arch_names_file_line_and_path(matrix_dir, monkeypatch):
    monkeypatch.chdir(matrix_dir)
    path = write_matrix(matrix_dir, GOOD.replace("arch: arm64", "arch: arm"))
    assert problems_of(path) == ["matrix.yaml:9: hosts[1].arch: 'arm' is not one of amd64, arm64, ppc64el, s390x"]


@pytest.mark.parametrize(
    "change, expected",
    [
        (("    runtime: runc", "    runtime: runc\n    colour: red"), ":12: hosts[1].colour: unknown key"),
        (("    engine: podman\n  - name: h2", "  - name: h2"), ":3: hosts[0]: missing required key 'engine'"),
        (("version: 1", "version: 2"), ":1: version: unsupported matrix version 2"),
        (("release: trixie", "release: jessie"), ":8: hosts[1].release: 'jessie' is not one of bullseye, bookworm, trixie"),
        (("name: h2", "name: h1"), ":7: hosts[1].name: duplicate host name 'h1'"),
        (("  - useradd", "  - nosuch"), ":16: scenarios[0]: scenario 'nosuch' not found"),
        (("hosts:", "hosts: [\n"), "YAML syntax error"),
        (("    release: bookworm\nscenarios", "    release: bookworm\n  - {name: app, base: nosuch}\nscenarios"), ":15: images[1].base: image 'app': base 'nosuch' is not an image of this matrix"),
        (("    release: bookworm\nscenarios", "    release: bookworm\n  - {name: app, base: img, release: sid}\nscenarios"), "image 'app': release 'sid' differs from its base's ('bookworm')"),
        (("    release: bookworm\nscenarios", "    release: bookworm\n  - {name: app, base: img}\n  - {name: app2, base: app}\nscenarios"), "base 'app' is itself layered"),
        (("    release: bookworm\nscenarios", "    release: bookworm\n  - {name: app}\nscenarios"), ":15: images[1]: needs 'release' or 'base' or 'reference'"),
        (("    release: bookworm\nscenarios", "    release: bookworm\n  - {name: ext, reference: quay.io/x/y:1, packages: [curl]}\nscenarios"), "images[1].packages: image 'ext': 'packages' does not apply to an image given by reference"),
        (("    release: bookworm\nscenarios", "    release: bookworm\n  - {name: ext, reference: 'no tag here'}\nscenarios"), "images[1].reference"),
    ],
)
def test_mistakes_are_one_clear_line(matrix_dir, change, expected):
    path = write_matrix(matrix_dir, GOOD.replace(*change))
    problems = problems_of(path)
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert problems[0].startswith(str(os.path.relpath(path))) or problems[0].startswith(str(path))


def test_non_executable_scenario(matrix_dir):
    (matrix_dir / "scenarios" / "useradd" / "run").chmod(0o644)
    problems = problems_of(write_matrix(matrix_dir, GOOD))
    assert "scenario 'useradd' has no executable" in problems[0]


def test_cli_validate_prints_one_line_and_no_traceback(matrix_dir):
    path = write_matrix(matrix_dir, GOOD.replace("arch: arm64", "arch: arm"))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "validate", str(path)], capture_output=True, text=True, cwd=matrix_dir)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "matrix.yaml:9: hosts[1].arch: 'arm' is not one of amd64, arm64, ppc64el, s390x"
    assert "Traceback" not in proc.stderr


def test_cli_run_rejects_bad_matrix_before_anything_boots(matrix_dir):
    path = write_matrix(matrix_dir, GOOD.replace("engine: podman\n  - name: h2", "engine: podmn\n  - name: h2"))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(path)], capture_output=True, text=True, cwd=matrix_dir)
    assert proc.returncode == 2
    assert "hosts[0].engine: 'podmn' is not one of podman" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_shipped_scenario_has_valid_metadata(repo_root, tmp_path):
    names = sorted(p.name for p in (repo_root / "scenarios").iterdir() if p.is_dir())
    assert len(names) >= 15
    text = GOOD.replace("  - useradd\n", "".join(f"  - {n}\n" for n in names))
    matrix = load_matrix(write_matrix(tmp_path, text.replace("version: 1", f"version: 1\nscenarios_dir: {repo_root / 'scenarios'}\nvms: {repo_root / 'vms'}"), "matrix-all-scenarios.yaml"))
    assert {s.dimension for s in matrix.scenarios} >= {"kernel", "c-library", "engine", "runtime", "security", "architecture", "application"}
    systemd = matrix.scenario("systemd-pid1")
    assert systemd.mode == "service" and systemd.init and systemd.options.systemd
    assert matrix.scenario("memory-limit").options.memory == "128m"
    assert matrix.scenario("non-root-user").options.user == "65534:65534"


def test_bad_scenario_metadata_names_the_file_and_key(matrix_dir):
    (matrix_dir / "scenarios" / "useradd" / "scenario.yaml").write_text("purpose: x\ndimension: kernal\n")
    problems = problems_of(write_matrix(matrix_dir, GOOD))
    assert len(problems) == 1
    assert "scenario 'useradd'" in problems[0] and "scenario.yaml: dimension: 'kernal' is not one of" in problems[0]


def test_policy_and_known_issues_load(matrix_dir):
    text = GOOD + """policy:
  host_newer_by: [0]
  include: [{host: h2, image: img}]
known_issues:
  - {host: "h*", scenario: useradd, bug: "https://bugs.example/1", note: libselinux}
retries: 2
"""
    matrix = load_matrix(write_matrix(matrix_dir, text))
    assert matrix.policy.host_newer_by == (0,)
    assert matrix.policy.include[0].matches("h2", "img")
    assert matrix.known_issues[0].pattern.matches("h1", "img", "useradd")
    assert matrix.retries == 2


def test_engine_host_kind(matrix_dir):
    text = GOOD.replace("  - name: h2\n    release: trixie\n    arch: arm64\n    engine: podman\n    runtime: runc\n", "  - name: h2\n    kind: engine\n    local: true\n    runtime: runc\n    ulimits: {nofile: 1024}\n")
    matrix = load_matrix(write_matrix(matrix_dir, text))
    assert matrix.host("h2").kind == "engine" and matrix.host("h2").local and matrix.host("h2").ulimits == {"nofile": 1024}
    bad = text.replace("    local: true\n", "    local: true\n    release: trixie\n")
    assert "hosts[1].release: unknown key" in problems_of(write_matrix(matrix_dir, bad))[0]


def test_libvirtd_not_answering_is_one_clear_line(matrix_dir):
    path = write_matrix(matrix_dir, GOOD)
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(path), "--hypervisor", "qemu+unix:///system?socket=/nonexistent/libvirt-sock"],
        capture_output=True,
        text=True,
        cwd=matrix_dir,
    )
    assert proc.returncode == 3
    assert "libvirt at qemu+unix:///system?socket=/nonexistent/libvirt-sock does not answer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_full_disk_is_named_not_traced():
    import errno

    from harness.hosts.fleet import os_problem as _os_problem

    message = _os_problem(OSError(errno.ENOSPC, "No space left on device", "/var/cache/x/root.img"))
    assert message == "the disk is full (/var/cache/x/root.img): free some space, or set HARNESS_CACHE to a larger disk"


def test_a_layered_image_takes_its_bases_release_and_architectures(matrix_dir):
    text = GOOD.replace("    release: bookworm\nscenarios", "    release: bookworm\n    arches: [amd64]\n    updates: false\n  - {name: app, base: img, packages: [python3]}\nscenarios")
    app = load_matrix(write_matrix(matrix_dir, text)).image("app")
    assert (app.release, app.base, app.arches, app.packages, app.updates) == ("bookworm", "img", ("amd64",), ("python3",), False)


def test_an_image_given_by_reference(matrix_dir):
    text = GOOD.replace("    release: bookworm\nscenarios", "    release: bookworm\n  - {name: ext, reference: 'registry.example:5000/vendor/app@sha256:" + "a" * 64 + "', tls_verify: false}\nscenarios")
    ext = load_matrix(write_matrix(matrix_dir, text)).image("ext")
    assert (ext.reference.startswith("registry.example:5000/"), ext.tls_verify, ext.release, ext.packages) == (True, False, "", ())


@pytest.mark.parametrize(
    ("policy", "said"),
    [
        ("policy: {release_order: [bullseye, bookwrom, trixie]}", "matrix.yaml:17: policy.release_order[1]: 'bookwrom' is not one of bullseye, bookworm, trixie, forky, sid"),
        ("policy: {host_newer_by: [0, -1]}", "matrix.yaml:17: policy.host_newer_by[1]: -1 is negative"),
        ("policy: {host_newer_by: [0, 1, 1]}", "matrix.yaml:17: policy.host_newer_by: [0, 1, 1] repeats a value"),
        ("policy: {architectures: [amd64, armhf]}", "matrix.yaml:17: policy.architectures[1]: 'armhf' is not one of amd64, arm64, ppc64el, s390x"),
        ("known_issues: [{bug: 'BUG-1234'}]", "matrix.yaml:17: known_issues[0].bug: 'BUG-1234' is not an http(s) link"),
    ],
)
def test_each_policy_mistake_is_one_line_and_exit_2(matrix_dir, policy, said):
    path = write_matrix(matrix_dir, GOOD + policy + "\n")
    assert problems_of(path) == [said.replace("matrix.yaml", os.path.relpath(path))]
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_a_pattern_that_matches_no_cell_is_a_warning(matrix_dir):
    extra = (
        "known_issues: [{host: 'trixy-*', bug: 'https://bugs.example/1'}]\n"
        "policy: {include: [{host: h1, image: img}], exclude: [{image: 'no-such-*'}]}\n"
    )
    path = write_matrix(matrix_dir, GOOD + extra)
    warnings = load_matrix(path).warnings
    assert len(warnings) == 2
    assert warnings[0].endswith("known_issues[0]: warning: known issue https://bugs.example/1 matches no cell (trixy-* x * x *)")
    assert warnings[1].endswith("policy.exclude[0]: warning: exclude pattern matches no host x image pair (* x no-such-*)")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0 and "warning: known issue" in proc.stderr and ": ok (" in proc.stdout


def test_a_matrix_anywhere_uses_the_harnesss_own_recipes_and_scenarios(tmp_path, repo_root):
    """A matrix.yaml alone in another directory: no vms/ or scenarios/ beside it."""
    path = write_matrix(tmp_path, GOOD)
    matrix = load_matrix(path)
    assert matrix.vms_dir == repo_root / "vms" and matrix.scenario("useradd").path == repo_root / "scenarios" / "useradd"
    (tmp_path / "scenarios" / "useradd").mkdir(parents=True)  # its own scenario of that name wins
    (tmp_path / "scenarios" / "useradd" / "run").write_text("#!/bin/sh\n")
    (tmp_path / "scenarios" / "useradd" / "run").chmod(0o755)
    (tmp_path / "scenarios" / "useradd" / "scenario.yaml").write_text("purpose: mine\ndimension: engine\n")
    assert load_matrix(path).scenario("useradd").purpose == "mine"


def test_harness_init_writes_a_matrix_that_validates_as_written(tmp_path):
    init = subprocess.run([sys.executable, "-m", "harness.cli", "init", str(tmp_path / "mine")], capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    check = subprocess.run([sys.executable, "-m", "harness.cli", "validate", str(tmp_path / "mine" / "matrix.yaml")], capture_output=True, text=True)
    assert check.returncode == 0 and "1 hosts x 1 images x 1 scenarios = 1 cells" in check.stdout, check.stderr
    again = subprocess.run([sys.executable, "-m", "harness.cli", "init", str(tmp_path / "mine")], capture_output=True, text=True)
    assert again.returncode == 2 and "exists; nothing written" in again.stderr


def disk_matrix(matrix_dir, host: str) -> str:
    return GOOD.replace("  - name: h2\n    release: trixie\n    arch: arm64\n    engine: podman\n    runtime: runc\n", host)


def test_a_host_naming_a_disk_image_is_a_disk_host_relative_to_the_matrix(matrix_dir):
    (matrix_dir / "disks").mkdir()
    (matrix_dir / "disks" / "rhel.qcow2").write_bytes(b"QFI\xfb" + b"\0" * 600)
    (matrix_dir / "disks" / "plain.raw").write_bytes(b"\0" * 510 + b"\x55\xaa")
    text = disk_matrix(matrix_dir, "  - {name: h2, image: disks/rhel.qcow2, arch: arm64, release: rhel-9.4}\n  - {name: h3, kind: disk, image: disks/plain.raw, arch: amd64, engine: docker}\n  - {name: h4, image: disks/plain.raw, arch: amd64, cgroup: v1, kernel_cmdline: quiet}\n")
    matrix = load_matrix(write_matrix(matrix_dir, text))
    h2, h3 = matrix.host("h2"), matrix.host("h3")
    assert h2.kind == "disk" and h2.image == str(matrix_dir / "disks" / "rhel.qcow2") and h2.image_format == "qcow2" and h2.release == "rhel-9.4"
    assert h3.image_format == "raw" and h3.engine == "docker" and h3.release == "" and h3.cmdline_words() == []
    assert matrix.host("h4").cmdline_words() == ["systemd.unified_cgroup_hierarchy=0", "quiet"] and matrix.host("h4").settings()["cgroup"] == "v1"
    assert {h.name for h in matrix.vm_hosts()} == {"h1", "h2", "h3", "h4"} and matrix.vm_arches() == ["amd64", "arm64"]


@pytest.mark.parametrize("extra, expected", [
    ("kernel: trixie", "hosts[1].kernel: kernel: a disk-image host boots the kernel its disk has"),
    ("extra_packages: [strace]", "hosts[1].extra_packages: extra_packages: a disk-image host is not built by the harness"),
    ("lsm: selinux", "hosts[1].lsm: lsm: a disk-image host keeps the LSM its distribution set up"),
])
def test_a_setting_a_disk_host_cannot_take_says_why(matrix_dir, extra, expected):
    (matrix_dir / "d.qcow2").write_bytes(b"QFI\xfb")
    found = problems_of(write_matrix(matrix_dir, disk_matrix(matrix_dir, f"  - {{name: h2, image: d.qcow2, arch: amd64, {extra}}}\n")))
    assert len(found) == 1 and expected in found[0], found


def test_a_file_that_is_not_a_disk_is_named(matrix_dir):
    (matrix_dir / "notes.txt").write_text("not a disk\n")
    found = problems_of(write_matrix(matrix_dir, disk_matrix(matrix_dir, "  - {name: h2, image: notes.txt, arch: amd64}\n")))
    assert len(found) == 1 and "hosts[1].image: host 'h2':" in found[0] and "notes.txt is not a disk image" in found[0], found
