"""feeds.publish: real files in tmp_path; atomic, change-only writes into the output folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from feeds.publish import PublishError, publish, publish_many, remove

RSS = "<?xml version='1.0' encoding='UTF-8'?><rss version=\"2.0\">北交所</rss>".encode()
OLD_NS = 1_600_000_000_000_000_000


def files_in(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def age(path: Path) -> int:
    """Backdate a file so an accidental rewrite could not keep the same mtime_ns."""
    os.utime(path, ns=(OLD_NS, OLD_NS))
    return path.stat().st_mtime_ns


def test_first_publish_writes_file_with_parents_and_mode(tmp_path: Path) -> None:
    assert publish(tmp_path, "sources/cailianshe.rss", RSS) is True
    target = tmp_path / "sources" / "cailianshe.rss"
    assert target.read_bytes() == RSS
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert files_in(tmp_path) == ["sources/cailianshe.rss"]


def test_unchanged_bytes_leave_file_and_mtime_untouched(tmp_path: Path) -> None:
    publish(tmp_path, "all.rss", RSS)
    target = tmp_path / "all.rss"
    mtime_ns = age(target)
    inode = target.stat().st_ino
    assert publish(tmp_path, "all.rss", RSS) is False
    assert target.stat().st_mtime_ns == mtime_ns
    assert target.stat().st_ino == inode


def test_changed_bytes_of_same_size_replace_the_file(tmp_path: Path) -> None:
    publish(tmp_path, "all.rss", RSS)
    target = tmp_path / "all.rss"
    mtime_ns = age(target)
    inode = target.stat().st_ino
    changed = RSS.replace(b"2.0", b"2.1")
    assert len(changed) == len(RSS)
    assert publish(tmp_path, "all.rss", changed) is True
    assert target.read_bytes() == changed
    assert target.stat().st_mtime_ns != mtime_ns
    assert target.stat().st_ino != inode  # renamed into place, not rewritten in place
    assert files_in(tmp_path) == ["all.rss"]


def test_changed_size_replaces_and_resets_mode(tmp_path: Path) -> None:
    target = tmp_path / "index.html"
    target.write_bytes(b"old")
    target.chmod(0o600)
    assert publish(tmp_path, "index.html", b"<!DOCTYPE html>") is True
    assert target.read_bytes() == b"<!DOCTYPE html>"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_empty_content_is_published(tmp_path: Path) -> None:
    assert publish(tmp_path, "empty.txt", b"") is True
    assert publish(tmp_path, "empty.txt", b"") is False
    assert (tmp_path / "empty.txt").read_bytes() == b""


@pytest.mark.parametrize(
    "relpath",
    ["../escape.rss", "/etc/passwd", "sources/../../escape.rss", "", ".", "a/\0.rss"],
)
def test_paths_leaving_the_output_folder_are_refused(tmp_path: Path, relpath: str) -> None:
    output = tmp_path / "out"
    output.mkdir()
    with pytest.raises(ValueError):
        publish(output, relpath, RSS)
    with pytest.raises(ValueError):
        remove(output, relpath)
    assert files_in(tmp_path) == []


def test_symlinked_subfolder_pointing_outside_is_refused(tmp_path: Path) -> None:
    output = tmp_path / "out"
    outside = tmp_path / "elsewhere"
    output.mkdir()
    outside.mkdir()
    (output / "sources").symlink_to(outside)
    with pytest.raises(ValueError):
        publish(output, "sources/x.rss", RSS)
    assert list(outside.iterdir()) == []


def test_parent_that_is_a_regular_file_raises_publish_error(tmp_path: Path) -> None:
    (tmp_path / "topics").write_bytes(b"not a directory")
    with pytest.raises(PublishError) as caught:
        publish(tmp_path, "topics/beijiaosuo.rss", RSS)
    assert caught.value.relpath == "topics/beijiaosuo.rss"
    assert "topics/beijiaosuo.rss" in str(caught.value)
    assert isinstance(caught.value, OSError)
    assert files_in(tmp_path) == ["topics"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_raises_publish_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PublishError):
            publish(locked, "all.rss", RSS)
    finally:
        locked.chmod(0o700)
    assert files_in(locked) == []


def test_target_that_is_a_directory_fails_and_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "all.rss").mkdir()
    with pytest.raises(PublishError):
        publish(tmp_path, "all.rss", RSS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.rss"]
    assert (tmp_path / "all.rss").is_dir()


def test_failed_rename_keeps_old_file_and_removes_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(tmp_path, "all.rss", RSS)

    def broken_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("feeds.publish.os.replace", broken_replace)
    with pytest.raises(PublishError, match="No space left"):
        publish(tmp_path, "all.rss", b"new content")
    assert (tmp_path / "all.rss").read_bytes() == RSS
    assert files_in(tmp_path) == ["all.rss"]


def test_remove_deletes_and_reports_absent_files(tmp_path: Path) -> None:
    publish(tmp_path, "topics/old.atom", RSS)
    assert remove(tmp_path, "topics/old.atom") is True
    assert not (tmp_path / "topics" / "old.atom").exists()
    assert remove(tmp_path, "topics/old.atom") is False
    assert remove(tmp_path, "never/there.rss") is False


def test_remove_of_a_directory_raises_publish_error(tmp_path: Path) -> None:
    (tmp_path / "sources").mkdir()
    with pytest.raises(PublishError):
        remove(tmp_path, "sources")
    assert (tmp_path / "sources").is_dir()


def test_a_batch_writes_only_changed_files_in_every_folder(tmp_path: Path) -> None:
    publish(tmp_path, "all.rss", RSS)
    untouched = age(tmp_path / "all.rss")
    batch = [
        ("all.rss", RSS),
        ("all.atom", b"<feed/>"),
        ("topics/beijiaosuo.rss", RSS + b"1"),
        ("sources/cailianshe.atom", b""),
    ]
    assert publish_many(tmp_path, batch) == [
        "all.atom", "topics/beijiaosuo.rss", "sources/cailianshe.atom",
    ]  # fmt: skip
    assert (tmp_path / "all.rss").stat().st_mtime_ns == untouched
    assert {p: (tmp_path / p).read_bytes() for p, _ in batch} == dict(batch)
    assert all(stat.S_IMODE((tmp_path / p).stat().st_mode) == 0o644 for p, _ in batch)
    assert publish_many(tmp_path, batch) == []


def test_a_failing_file_in_a_batch_names_itself_and_leaves_no_temp_file(tmp_path: Path) -> None:
    publish(tmp_path, "sources/a.rss", b"old a")
    (tmp_path / "sources" / "b.rss").mkdir()  # cannot be replaced by a file
    with pytest.raises(PublishError) as caught:
        publish_many(tmp_path, [("sources/a.rss", b"new a"), ("sources/b.rss", RSS)])
    assert caught.value.relpath == "sources/b.rss"
    assert (tmp_path / "sources" / "a.rss").read_bytes() == b"new a"  # renamed before b failed
    assert sorted(p.name for p in (tmp_path / "sources").iterdir()) == ["a.rss", "b.rss"]
