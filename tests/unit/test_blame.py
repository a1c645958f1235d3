"""The blame verdict logic on stub hosts: each case built with a known answer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from harness.cells.blame import Blamer
from harness.config.kinds.vm import VmHostSpec
from harness.config.model import ImageSpec, Machine, ScenarioSpec
from harness.results.model import CellResult, DeliveryRecord, Layer, Outcome
from tests.stub_host import StubHost

SPEC = VmHostSpec("h1", Machine(), release="bookworm", arch="amd64", engine="podman", runtime="crun", lsm="apparmor")
DELIVERY = DeliveryRecord("h1", "img", "sha256:img", True, 1.0, ["podman", "pull", "x"])
SCENARIO = ScenarioSpec("s", Path("s"), Path("s/run"), "p", None)


def failed(host: str = "h1", image: str = "img", stderr: str = "useradd: failure while writing changes to /etc/shadow (pid 123)") -> CellResult:
    return CellResult(host, image, "s", Outcome.FAIL, 1.0, exit_code=1, stderr=stderr)


def passes_with(*wanted: str):
    """A scenario that passes only when the container runs with one of `wanted` (options or runtime)."""
    return lambda scenario: 0 if set(wanted) & {*scenario.options.security_opt, f"runtime {scenario.options.runtime}"} else 1


def blame(behaviour, blamer: Blamer | None = None, cell: CellResult | None = None):
    host = StubHost(SPEC, {"s": behaviour})
    return (blamer or Blamer()).blame(host, DELIVERY, SCENARIO, cell or failed()), host


def test_a_seccomp_failure_is_blamed_on_seccomp_and_confirmed():
    verdict, host = blame(passes_with("seccomp=unconfined"))
    assert (verdict.layer, verdict.summary, verdict.confirmed) == (Layer.SECCOMP, "seccomp: passes with seccomp=unconfined", True)
    assert [(e.layer, e.outcome) for e in verdict.experiments] == [
        (Layer.UNCHANGED, Outcome.FAIL), (Layer.SECCOMP, Outcome.PASS), (Layer.LSM, Outcome.FAIL), (Layer.RUNTIME, Outcome.FAIL),
        (Layer.UNCHANGED, Outcome.FAIL), (Layer.SECCOMP, Outcome.PASS),  # the confirmation
    ]
    assert "--security-opt" not in " ".join(verdict.experiments[0].command)  # the stub's argv; the real ones are the engine's


def test_lsm_runtime_interaction_image_and_flaky():
    assert blame(passes_with("apparmor=unconfined"))[0].layer == Layer.LSM
    assert blame(passes_with("runtime runc"))[0].summary == "runtime: passes with runtime runc"
    interaction = blame(passes_with("seccomp=unconfined", "apparmor=unconfined"))[0]
    assert interaction.layer == Layer.INTERACTION and interaction.confirmed is None
    image = blame(lambda _s: 1)[0]
    assert (image.layer, image.confirmed) == (Layer.IMAGE, None) and len(image.experiments) == 4
    flaky = blame(lambda _s: 0)[0]
    assert flaky.layer == Layer.FLAKY and len(flaky.experiments) == 1


def test_a_verdict_that_does_not_hold_says_so():
    calls = []

    def once(scenario):
        calls.append(scenario.options.security_opt)
        return 0 if scenario.options.security_opt == ("seccomp=unconfined",) and calls.count(("seccomp=unconfined",)) == 1 else 1

    verdict = blame(once)[0]
    assert verdict.layer == Layer.SECCOMP and verdict.confirmed is False and verdict.confirmation.startswith("NOT confirmed")


def test_failures_that_look_the_same_are_blamed_once():
    blamer = Blamer()
    first, host = blame(passes_with("seccomp=unconfined"), blamer)
    spent = blamer.spent
    other = failed(host="h2", image="img2", stderr="useradd: failure while writing changes to /etc/shadow (pid 98765)")
    shared, _ = blame(passes_with("seccomp=unconfined"), blamer, other)
    assert blamer.spent == spent and shared.cells == ["h1/img/s", "h2/img2/s"] and shared.layer == Layer.SECCOMP
    different = failed(stderr="something else entirely")
    assert blame(lambda _s: 1, blamer, different)[0].cells == ["h1/img/s"] and blamer.spent > spent


def test_no_blame_for_cells_that_did_not_fail_or_past_the_budget():
    assert blame(lambda _s: 1, cell=CellResult("h1", "img", "s", Outcome.NOT_APPLICABLE, 0.0))[0] is None
    assert blame(lambda _s: 1, cell=CellResult("h1", "img", "s", Outcome.ERROR, 0.0))[0] is None
    assert blame(lambda _s: 1, Blamer(budget=3))[0] is None  # a rerun and three swaps would not fit


def test_workers_of_one_run_blame_a_pattern_once(tmp_path):
    """Two processes' Blamers share the run's directory: the second waits for the first's verdict
    (here: still being written when it asks) and spends no experiment of its own."""
    import threading

    first, second = Blamer(shared=tmp_path), Blamer(shared=tmp_path)
    release = threading.Event()
    slow = passes_with("seccomp=unconfined")

    def waits_once(scenario):
        release.wait(10)
        return slow(scenario)

    got: list = []
    worker = threading.Thread(target=lambda: got.append(blame(waits_once, first)[0]))
    worker.start()
    while not list(tmp_path.iterdir()):
        pass  # the first has claimed the pattern
    joined = threading.Thread(target=lambda: got.append(blame(lambda _s: 1, second, failed(host="h2"))[0]))
    joined.start()
    release.set()
    worker.join(20)
    joined.join(20)
    theirs = got[1]
    assert second.spent == 0 and first.spent == 6
    assert (theirs.layer, theirs.cells) == (Layer.SECCOMP, ["h1/img/s", "h2/img/s"])


def test_a_worker_out_of_budget_leaves_the_pattern_to_another(tmp_path):
    assert blame(lambda _s: 1, Blamer(budget=3, shared=tmp_path))[0] is None
    other = Blamer(shared=tmp_path)
    verdict = blame(lambda _s: 1, other, failed(host="h2"))[0]
    assert verdict.layer == Layer.IMAGE and verdict.cells == ["h2/img/s"] and other.spent == 4


def test_a_verdict_is_shared_only_with_hosts_where_its_swap_can_be_made():
    """Failing alike on an AppArmor and an SELinux host: "passes with apparmor=unconfined" says
    nothing of the SELinux host, which is blamed on its own; "the image or the scenario" is shared."""
    selinux = VmHostSpec("h2", Machine(), release="trixie", arch="amd64", engine="podman", runtime="crun", lsm="selinux")
    blamer = Blamer()
    apparmor, _ = blame(passes_with("apparmor=unconfined"), blamer)
    own = blamer.blame(StubHost(selinux, {"s": passes_with("label=disable")}), DELIVERY, SCENARIO, failed(host="h2"))
    assert (apparmor.summary, apparmor.cells) == ("LSM: passes with apparmor=unconfined", ["h1/img/s"])
    assert (own.summary, own.cells) == ("LSM: passes with label=disable", ["h2/img/s"])
    third = blamer.blame(StubHost(replace(selinux, name="h3"), {"s": lambda _s: 1}), DELIVERY, SCENARIO, failed(host="h3"))
    assert third.cells == ["h2/img/s", "h3/img/s"]
    everywhere = Blamer()
    blame(lambda _s: 1, everywhere, failed(stderr="broken"))
    shared = everywhere.blame(StubHost(selinux, {"s": lambda _s: 1}), DELIVERY, SCENARIO, failed(host="h2", stderr="broken"))
    assert shared.layer == Layer.IMAGE and shared.cells == ["h1/img/s", "h2/img/s"] and everywhere.spent == 4


def test_when_no_container_swap_helps_the_scenario_runs_in_other_images_until_one_passes():
    from harness.cells.blame import ImageVariants

    delivered: list[str] = []

    def deliver(host, spec):
        delivered.append(spec.name)
        if spec.name.endswith("trixie"):
            return "image harness-variant-img-trixie for amd64: trixie is not in the archive"
        return DeliveryRecord("h1", spec.name, f"sha256:{spec.name}", True, 1.0, ["stub", "pull"])

    variants = [("img built from trixie (a neighbouring release)", ImageSpec("harness-variant-img-trixie", "trixie", (), ("/bin/sh",))),
                ("img built from bookworm (the host's release)", ImageSpec("harness-variant-img-bookworm", "bookworm", (), ("/bin/sh",))),
                ("bookworm's own base image", ImageSpec("harness-variant-base-bookworm", "bookworm", (), ("/bin/sh",)))]
    blamer = Blamer(variants=ImageVariants(lambda _host, _image: variants, deliver))
    verdict, _ = blame(lambda _scenario, image_id: 0 if image_id == "sha256:harness-variant-img-bookworm" else 1, blamer)
    assert (verdict.layer, verdict.summary, verdict.confirmed) == (Layer.IMAGE_CONTENT, "image: passes in img built from bookworm (the host's release)", True)
    assert delivered == ["harness-variant-img-trixie", "harness-variant-img-bookworm"]  # it stopped at the first pass
    errored = [e for e in verdict.experiments if e.outcome == Outcome.ERROR]
    assert len(errored) == 1 and "not in the archive" in errored[0].evidence
    nowhere = Blamer(variants=ImageVariants(lambda _host, _image: variants[1:], deliver)).blame(StubHost(SPEC, {"s": lambda _s: 1}), DELIVERY, SCENARIO, failed())
    assert nowhere.layer == Layer.IMAGE and nowhere.summary.endswith("and fails in img built from bookworm (the host's release), bookworm's own base image too"), nowhere.summary


def test_which_other_images_a_failing_cell_is_tried_in(repo_root, tmp_path):
    from harness.cells.blame import image_variants
    from harness.config.load import load_matrix
    from tests.conftest import write_matrix

    (tmp_path / "scenarios").symlink_to(repo_root / "scenarios")
    matrix = load_matrix(write_matrix(tmp_path, """
version: 1
hosts:
  - {name: h1, release: bookworm, arch: amd64, engine: podman}
images:
  - {name: old, release: bullseye, packages: [passwd]}
  - {name: same, release: bookworm}
  - {name: app, base: same, packages: [python3]}
  - {name: vendor, reference: "r.example/v:1"}
scenarios: [useradd]
"""))
    host = StubHost(matrix.host("h1"), {})
    named = {image: [what for what, _ in image_variants(matrix, host, image)] for image in ("old", "same", "app", "vendor")}
    assert named == {
        "old": ["old built from bookworm (the host's release)", "bookworm's own base image"],
        "same": ["same built from bullseye (a neighbouring release)", "same built from trixie (a neighbouring release)"],
        "app": ["bookworm's own base image"],
        "vendor": ["bookworm's own base image"],
    }
    (_, old_on_bookworm), _ = image_variants(matrix, host, "old")
    assert (old_on_bookworm.release, old_on_bookworm.packages) == ("bookworm", ("passwd",))


def test_hosts_one_setting_apart_are_proposed_only_where_the_matrix_has_no_sibling(repo_root, tmp_path):
    from harness.cells.siblings import variants_of
    from harness.config.load import load_matrix
    from tests.conftest import write_matrix

    (tmp_path / "scenarios").symlink_to(repo_root / "scenarios")
    matrix = load_matrix(write_matrix(tmp_path, """
version: 1
hosts:
  - {name: plain, release: bookworm, arch: amd64, engine: podman}
  - {name: plain-docker, release: bookworm, arch: amd64, engine: docker, runtime: crun}
  - {name: alone, release: trixie, arch: amd64, engine: docker, cpu: Nehalem}
images: [{name: img, release: bookworm}]
scenarios: [useradd]
"""))
    found = [(setting, what, (v.name, v.cgroup, v.lsm, v.kernel_release, v.engine, v.runtime, v.cpu)) for setting, what, v in variants_of(matrix, "alone")]
    assert found == [
        ("cgroup", "cgroup mode v1 instead of v2", ("alone--cgroup-v1", "v1", "apparmor", "trixie", "docker", "runc", "Nehalem")),
        ("cpu", "CPU model default instead of Nehalem", ("alone--cpu-default", "v2", "apparmor", "trixie", "docker", "runc", None)),
        ("lsm", "LSM none instead of apparmor", ("alone--lsm-none", "v2", "none", "trixie", "docker", "runc", "Nehalem")),
        ("kernel_release", "kernel forky instead of trixie", ("alone--kernel-forky", "v2", "apparmor", "forky", "docker", "runc", "Nehalem")),
        ("engine", "engine podman instead of docker", ("alone--engine-podman", "v2", "apparmor", "trixie", "podman", "runc", "Nehalem")),
    ]
    assert variants_of(matrix, "plain") == []  # plain-docker is its sibling: the matrix's own cells tell


def test_a_failure_no_swap_on_its_host_explains_is_run_on_variant_hosts_after_it():
    from harness.cells.blame import HostVariants

    spec_v1 = VmHostSpec("h1--cgroup-v1", Machine(), release="bookworm", arch="amd64", engine="podman", runtime="crun", lsm="apparmor", cgroup="v1")
    spec_nolsm = VmHostSpec("h1--lsm-none", Machine(), release="bookworm", arch="amd64", engine="podman", runtime="crun", lsm="none")
    started, stopped = [], []

    def start(spec, image):
        started.append((spec.name, image))
        return StubHost(spec, {"s": lambda _s: 0 if spec.cgroup == "v1" else 1, "s2": lambda _s: 1})

    variants = HostVariants(lambda _host: [("lsm", "LSM none instead of apparmor", spec_nolsm), ("cgroup", "cgroup mode v1 instead of v2", spec_v1)],
                            start, lambda _host, _image: DELIVERY, lambda host: stopped.append(host.name))
    blamer = Blamer(host_variants=variants)
    verdict, _ = blame(lambda _s: 1, blamer)
    assert verdict.layer == Layer.IMAGE and not started  # on the host itself nothing helped; variants come after it stops
    other, _ = blame(lambda _s: 1, blamer, failed(stderr="another failure"))
    refined, still = blamer.blame_hosts("h1", [(verdict, "img", SCENARIO), (other, "img", replace(SCENARIO, name="s2"))])
    assert (refined.layer, refined.summary, refined.confirmed) == (Layer.CGROUP, "cgroup mode: passes on a variant host with cgroup mode v1 instead of v2", True)
    # Each variant booted once for both failures; the second stays unexplained, with what was tried.
    assert started == [("h1--lsm-none", "img"), ("h1--cgroup-v1", "img")] and stopped == ["h1--lsm-none", "h1--cgroup-v1"]
    assert [e.outcome for e in refined.experiments[-3:]] == [Outcome.FAIL, Outcome.PASS, Outcome.PASS]
    assert still.layer == Layer.IMAGE and still.summary.endswith("; on variant hosts too") and [e.swap for e in still.experiments[-2:]] == [
        "LSM none instead of apparmor (a variant host)", "cgroup mode v1 instead of v2 (a variant host)"]
    started.clear()
    assert blamer.blame_hosts("h1", [(refined, "img", SCENARIO)]) == [refined] and not started  # explained already: nothing booted


def test_each_experiment_says_what_it_runs():
    said: list[tuple[str, str]] = []
    blamer = Blamer(progress=lambda host, what: said.append((host, what)))
    blame(passes_with("seccomp=unconfined"), blamer)
    assert len(said) == blamer.spent == 6
    assert said[0] == ("h1", "s: run again unchanged (experiment 1 of at most 40)") and said[1] == ("h1", "s: seccomp=unconfined (experiment 2 of at most 40)")


def test_a_failure_only_rootless_avoids_is_blamed_on_rootless_and_its_store_is_filled_first():
    host = StubHost(SPEC, {"s": lambda scenario: 0 if scenario.options.rootless else 1, "rootless": [0]})
    verdict = Blamer().blame(host, DELIVERY, SCENARIO, failed())
    assert (verdict.layer, verdict.summary, verdict.confirmed) == (Layer.ROOTLESS, "rootless: passes with rootless", True)
    assert [e.layer for e in verdict.experiments][-3:] == [Layer.ROOTLESS, Layer.UNCHANGED, Layer.ROOTLESS]
    assert "stub rootless pull img" in " ".join(host.log)


def test_the_rootless_pull_gets_a_deliverys_time_not_the_scenarios():
    """A pull takes as long as the delivery's did, not as long as the failing scenario may run
    (seen in CI: a 60 s scenario's rootless pull cut off, so the rootless case learnt nothing)."""
    host = StubHost(SPEC, {"s": lambda scenario: 0 if scenario.options.rootless else 1, "rootless": [0]})
    Blamer().blame(host, DELIVERY, SCENARIO, failed())
    assert f"stub rootless pull img --timeout={host.delivery_timeout:g}" in host.log


def test_a_rootless_store_that_cannot_be_filled_is_the_harness_trouble_not_a_verdict():
    host = StubHost(SPEC, {"s": lambda scenario: 1, "rootless": [1]})
    verdict = Blamer().blame(host, DELIVERY, SCENARIO, failed())
    rootless = [e for e in verdict.experiments if e.layer == Layer.ROOTLESS]
    assert verdict.layer == Layer.IMAGE and rootless[0].outcome == Outcome.ERROR and "nothing was learnt" in rootless[0].evidence
    assert "newuidmap" in rootless[0].evidence


def test_podman_runs_a_rootless_experiment_as_the_unprivileged_user():
    from harness.config.model import ScenarioOptions
    from harness.engines.podman import Podman

    argv = Podman("crun").run("c", "sha256:i", ("/a", "/b"), ["/b/run"], ScenarioOptions(rootless=True))
    assert argv[:4] == ["runuser", "-u", "harness-rootless", "--"] and "XDG_RUNTIME_DIR=/run/user/1500" in argv
    assert argv[argv.index("podman"):argv.index("podman") + 3] == ["podman", "--cgroup-manager=cgroupfs", "run"]
    assert Podman("crun").run("c", "sha256:i", ("/a", "/b"), ["/b/run"], ScenarioOptions())[0] == "podman"


def test_rootless_is_tried_only_when_no_cheaper_swap_explains_the_failure():
    """Seen on bookworm: a tmpfs mount AppArmor denies passes rootless too, because rootless podman
    applies no AppArmor profile; and rootless costs a second pull. So it is tried last, and only
    when nothing cheaper turned the failure into a pass."""
    unconfined = lambda scenario: 0 if scenario.options.rootless or "apparmor=unconfined" in scenario.options.security_opt else 1  # noqa: E731
    host = StubHost(SPEC, {"s": unconfined, "rootless": [0]})
    verdict = Blamer().blame(host, DELIVERY, SCENARIO, failed())
    assert (verdict.layer, verdict.summary, verdict.confirmed) == (Layer.LSM, "LSM: passes with apparmor=unconfined", True)
    assert Layer.ROOTLESS not in [e.layer for e in verdict.experiments] and not any("rootless" in line for line in host.log)


def test_a_pod_hosts_failure_that_podman_run_avoids_is_blamed_on_orchestration():
    pod_host = StubHost(replace(SPEC, via="pod"), {"s": lambda scenario: 0 if scenario.options.via == "engine" else 1})
    verdict = Blamer().blame(pod_host, DELIVERY, SCENARIO, failed())
    assert (verdict.layer, verdict.confirmed) == (Layer.ORCHESTRATION, True)
    assert [e.layer for e in verdict.experiments] == [Layer.UNCHANGED, Layer.ORCHESTRATION, Layer.UNCHANGED, Layer.ORCHESTRATION]
    # Engine swaps a Pod spec cannot say are not tried there.
    image = Blamer().blame(StubHost(replace(SPEC, via="pod"), {"s": lambda _s: 1}), DELIVERY, SCENARIO, failed())
    assert image.layer == Layer.IMAGE and [e.layer for e in image.experiments] == [Layer.UNCHANGED, Layer.ORCHESTRATION]
