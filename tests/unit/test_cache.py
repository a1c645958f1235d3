"""The content-addressed build cache: built once, never half-published, failures leave their log."""

from __future__ import annotations

import pytest

from harness.cache import BuildCache, DamagedBuild, digest_of


def test_built_once_then_served(tmp_path):
    cache = BuildCache(tmp_path, "things")
    calls = []

    def build(tmp, log):
        calls.append(tmp)
        log.write_text("built\n")
        (tmp / "artifact").write_text("x")

    recipe = {"release": "bookworm", "arch": "amd64"}
    digest = digest_of(recipe)
    path, built = cache.get_or_build(digest, recipe, build)
    assert built and (path / "artifact").read_text() == "x" and (path / "build.log").read_text() == "built\n"
    path2, built2 = cache.get_or_build(digest, recipe, build)
    assert (path2, built2) == (path, False) and len(calls) == 1
    assert [(d, r) for d, r, _ in cache.entries()] == [(digest, recipe)]


def test_a_changed_recipe_is_another_entry():
    assert digest_of({"packages": ["a"]}) != digest_of({"packages": ["a", "b"]})
    assert digest_of({"a": 1, "b": 2}) == digest_of({"b": 2, "a": 1})


def test_failed_build_publishes_nothing_and_keeps_its_log(tmp_path):
    cache = BuildCache(tmp_path, "things")

    def build(tmp, log):
        log.write_text("E: unable to locate package nosuch\n")
        raise RuntimeError("mmdebstrap failed")

    with pytest.raises(RuntimeError):
        cache.get_or_build("d1", {}, build)
    assert not cache.has("d1") and cache.entries() == []
    assert "nosuch" in (cache.dir / "d1.build.log").read_text()
    assert not any(p.name.endswith(".partial") for p in cache.dir.iterdir())


def test_a_damaged_entry_is_detected_and_rebuilt(tmp_path):
    cache = BuildCache(tmp_path, "things")
    builds = []

    def build(tmp, log):
        builds.append(1)
        with open(tmp / "disk.img", "wb") as fh:  # sparse, like a root disk
            fh.seek(1 << 30)
            fh.write(b"end")
            fh.seek(4096)
            fh.write(b"data")

    path, _ = cache.get_or_build("d", {}, build)
    assert cache.damaged("d") == []
    with open(path / "disk.img", "r+b") as fh:
        fh.seek(4096)
        fh.write(b"DATA")
    assert cache.damaged("d") == ["disk.img"]
    with pytest.warns(DamagedBuild, match=r"is damaged \(disk.img\): rebuilding it"):
        path, built = cache.get_or_build("d", {}, build)
    assert built and len(builds) == 2 and cache.damaged("d") == []


def test_an_abandoned_half_build_is_removed_unless_its_build_runs(tmp_path):
    import fcntl

    cache = BuildCache(tmp_path, "things")
    (tmp_path / "things" / ".dead.partial" / "rootfs").mkdir(parents=True)
    (tmp_path / "things" / ".alive.partial").mkdir()
    with open(tmp_path / "things" / ".alive.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert [p.name for p in cache.remove_abandoned()] == [".dead.partial"]
    assert (tmp_path / "things" / ".alive.partial").exists()
    assert not (tmp_path / "things" / ".dead.partial").exists()


def test_the_checksum_follows_the_bytes_not_their_layout(tmp_path):
    from harness.cache import content_checksum

    sparse, dense = tmp_path / "sparse", tmp_path / "dense"
    with open(sparse, "wb") as fh:
        fh.truncate(5 << 20)
        fh.seek(3 << 20)
        fh.write(b"data")
    dense.write_bytes(bytes(3 << 20) + b"data" + bytes((2 << 20) - 4))
    assert content_checksum(sparse) == content_checksum(dense)
    with open(dense, "r+b") as fh:
        fh.seek(100)
        fh.write(b"x")
    assert content_checksum(sparse) != content_checksum(dense)
