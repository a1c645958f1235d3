"""The kept image store's files (real qemu-img and mkfs.ext4; no guest): each boot gets an overlay
of the kept base, a kept overlay becomes the next base, and old images are pruned."""

import json
import subprocess

from harness.hosts.store import STORE_KEEP_DAYS, Held, HeldImage, ImageStore, prune_stores, stale


def backing(path) -> str:
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True, check=True).stdout)
    return info.get("backing-filename", "")


def image(image_id: str, last_used: float = 0.0) -> HeldImage:
    return HeldImage(image_id, [f"10.0.2.2:8008/harness/{image_id}:c-1"], "linux/amd64", "Copying blob ...", "2026-12-03T00:00:00+00:00", last_used)


def test_the_first_boot_gets_an_empty_file_system_and_a_kept_overlay_is_the_next_base(tmp_path):
    store = ImageStore(tmp_path / "stores", "build1")
    overlay, held = store.overlay(tmp_path / "a.qcow2")
    assert held.images == {} and backing(overlay).endswith("empty-f1.qcow2")
    raw = tmp_path / "empty.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", backing(overlay), str(raw)], check=True)
    label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", str(raw)], capture_output=True, text=True).stdout.strip()
    assert label == "store"
    kept = Held({"sha256:a": image("sha256:a", 5.0)})
    assert store.keep(overlay, kept) > 0
    again, held = store.overlay(tmp_path / "b.qcow2")
    assert backing(again) == str(store.base) and held.images["sha256:a"].last_used == 5.0
    fresh, held = store.overlay(tmp_path / "c.qcow2", fresh=True)
    assert backing(fresh).endswith("empty-f1.qcow2") and held.images == {}


def test_another_build_has_its_own_store_and_damaged_evidence_is_no_evidence(tmp_path):
    one, two = ImageStore(tmp_path, "build1"), ImageStore(tmp_path, "build2")
    one.keep(one.overlay(tmp_path / "a.qcow2")[0], Held({"sha256:a": image("sha256:a")}))
    assert two.overlay(tmp_path / "b.qcow2")[1].images == {}
    one.held_file.write_text("{not json")
    assert one.overlay(tmp_path / "c.qcow2")[1].images == {}


def test_images_no_run_used_for_a_week_are_stale_unless_this_boot_used_them():
    now = 10 * 86400.0
    held = Held({"sha256:old": image("sha256:old", now - (STORE_KEEP_DAYS + 1) * 86400), "sha256:new": image("sha256:new", now - 3600),
                 "sha256:used": image("sha256:used", 0.0)})
    assert stale(held, {"sha256:used"}, now) == ["sha256:old"]


def test_a_held_image_is_found_by_repository_and_tag_whatever_registry_address_pulled_it():
    held = Held({"sha256:a": image("sha256:a")})
    assert held.by_path("10.0.2.2:8009/harness/sha256:a:c-1") is held.images["sha256:a"]
    assert held.by_path("10.0.2.2:8008/harness/sha256:a:c-2") is None


def test_prune_removes_the_stores_of_builds_no_longer_kept_and_of_older_formats(tmp_path):
    root = tmp_path / "stores"
    kept, gone = ImageStore(root, "build1"), ImageStore(root, "build2")
    for store in (kept, gone):
        store.keep(store.overlay(tmp_path / "a.qcow2")[0], Held({"sha256:a": image("sha256:a")}))
    (root / "build1-f0.qcow2").write_bytes(b"an older format's store")
    removed = prune_stores(root, keep={"build1"})
    assert sorted(name for name, _ in removed) == ["build1-f0", "build2-f1"]
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["build1-f1.held.json", "build1-f1.qcow2", "empty-f1.qcow2"]
    assert kept.overlay(tmp_path / "b.qcow2")[1].images  # the kept one still boots warm


def test_hosts_prune_removes_the_store_of_a_build_the_matrix_no_longer_uses(tmp_path, monkeypatch, capsys):
    from harness import cli

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    store = ImageStore(tmp_path / "stores", "0" * 64)
    store.keep(store.overlay(tmp_path / "a.qcow2")[0], Held({"sha256:a": image("sha256:a")}))
    assert cli.main(["hosts", "prune", "--matrix", "matrix.yaml"]) == 0
    assert not store.base.exists() and not store.held_file.exists()
    assert f"removed the image store of {'0' * 16}" in capsys.readouterr().out
