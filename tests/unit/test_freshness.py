"""Image freshness: Debian version order, the grade, and the judgement against a package index
served like an archive (file://, the same code path as http://)."""

from __future__ import annotations

import lzma
from pathlib import Path

from harness.images.freshness import freshness_of, grade, outdated_packages

INDEX = """Package: libc6
Version: 2.36-9+deb12u10
Architecture: amd64

Package: libc6
Version: 2.36-9+deb12u7
Architecture: amd64

Package: openssl
Version: 3.0.15-1~deb12u1
Architecture: amd64

Package: tzdata
Version: 2025b-0+deb12u1
Architecture: all
"""


def archive(root: Path) -> str:
    """A one-suite archive (bookworm-security, main, amd64) under root, as a mirror URL."""
    index = root / "debian-security/dists/bookworm-security/main/binary-amd64"
    index.mkdir(parents=True)
    (index / "Packages.xz").write_bytes(lzma.compress(INDEX.encode()))
    return f"file://{root}/debian"


def test_grades():
    assert [grade(n) for n in (0, 1, 2, 3, 5, 6, 10, 11, 400)] == ["A", "B", "B", "C", "C", "D", "D", "F", "F"]


def test_debian_version_order_not_string_order():
    fixed = {"libc6": "2.36-9+deb12u10", "zlib1g": "1:1.2.13.dfsg-1"}
    assert outdated_packages({"libc6": "2.36-9+deb12u9", "zlib1g": "1:1.2.13.dfsg-1"}, fixed) == ["libc6 2.36-9+deb12u9 -> 2.36-9+deb12u10"]
    assert outdated_packages({"libc6": "2.36-9+deb12u10~bpo1"}, fixed) == ["libc6 2.36-9+deb12u10~bpo1 -> 2.36-9+deb12u10"]


def test_judged_against_the_security_suite(tmp_path):
    mirror = archive(tmp_path)
    installed = {"libc6": "2.36-9+deb12u4", "openssl": "3.0.15-1~deb12u1", "passwd": "1:4.13+dfsg1-1", "tzdata": "2024a-0+deb12u1"}
    fresh = freshness_of(installed, "bookworm", "amd64", mirror, tmp_path / "indexes")
    assert (fresh.grade, fresh.outdated, fresh.checked) == ("B", 2, 4)
    assert fresh.updates == ["libc6 2.36-9+deb12u4 -> 2.36-9+deb12u10", "tzdata 2024a-0+deb12u1 -> 2025b-0+deb12u1"]
    assert fresh.against.endswith("debian-security bookworm-security")


def test_an_unreadable_archive_is_grade_unknown_with_the_reason(tmp_path):
    fresh = freshness_of({"libc6": "1"}, "bookworm", "amd64", f"file://{tmp_path}/nowhere", tmp_path / "indexes")
    assert fresh.grade == "?" and "Packages.xz" in fresh.error


def test_an_index_is_read_once_per_process_while_it_stays_the_same(tmp_path, monkeypatch):
    """A reused rerun judged the freshness of each image again, parsing the same index once per
    image: 70 s of a profiled 168-cell rerun."""
    import builtins

    mirror = archive(tmp_path)
    opened: list[str] = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    first = freshness_of({"libc6": "2.36-9+deb12u4"}, "bookworm", "amd64", mirror, tmp_path / "indexes")
    second = freshness_of({"openssl": "3.0.11-1~deb12u2"}, "bookworm", "amd64", mirror, tmp_path / "indexes")
    assert (first.outdated, second.outdated) == (1, 1)
    assert len([p for p in opened if p.endswith(".Packages")]) == 1


def test_an_index_entrys_continuation_lines_are_not_fields(tmp_path):
    """Read by its two fields: a description line that looks like one is not taken for it."""
    index = tmp_path / "debian-security/dists/bookworm-security/main/binary-amd64"
    index.mkdir(parents=True)
    text = "Package: libc6\nVersion: 2.36-9+deb12u10\nDescription: C library\n Version: 9.9\n Package: evil\n\nPackage: zlib1g\nArchitecture: amd64\nVersion: 1:1.2.13.dfsg-1\n"
    (index / "Packages.xz").write_bytes(lzma.compress(text.encode()))
    fresh = freshness_of({"libc6": "2.36-9+deb12u4", "zlib1g": "1:1.2.12", "evil": "0"}, "bookworm", "amd64", f"file://{tmp_path}/debian", tmp_path / "indexes")
    assert fresh.updates == ["libc6 2.36-9+deb12u4 -> 2.36-9+deb12u10", "zlib1g 1:1.2.12 -> 1:1.2.13.dfsg-1"]
