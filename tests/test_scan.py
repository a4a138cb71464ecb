"""The walk and its diff against the store's index, on a real folder tree."""

from __future__ import annotations

import fnmatch
import logging
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from feeds.config import InputConfig
from feeds.model import FileStamp
from feeds.scan import (
    BROKEN_LINK,
    EDITOR_LEFTOVERS,
    UNLISTED,
    diff,
    every_path,
    make_filter,
    scan_changes,
    walk,
)


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


def walked(root: Path, **config: object) -> list[FileStamp]:
    accept = make_filter(InputConfig.model_validate(config))
    return list(walk([root], accept, True))


def paths(stamps: list[FileStamp], root: Path) -> list[str]:
    return [os.path.relpath(s.path, root) + ("/" if s.path.endswith("/") else "") for s in stamps]


def test_order_is_files_by_name_descending_then_folders_ascending(tmp_path: Path) -> None:
    for name in ["b.md", "a.md", "c.html", "z/2.md", "z/1.md", "m/x.md", "m/deep/y.md"]:
        touch(tmp_path / name)
    assert paths(walked(tmp_path), tmp_path) == [
        "c.html", "b.md", "a.md", "m/x.md", "m/deep/y.md", "z/2.md", "z/1.md",
    ]  # fmt: skip


def test_stamps_are_joined_from_the_root_as_given_with_size_and_mtime(tmp_path: Path) -> None:
    path = touch(tmp_path / "sub" / "a.md", "四个字节")
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    (stamp,) = walked(tmp_path)
    assert stamp == FileStamp(str(tmp_path / "sub" / "a.md"), 12, 1_700_000_000_123_456_789)
    (again,) = walk([Path(f"{tmp_path}/")], make_filter(InputConfig()), True)
    assert again.path == str(tmp_path / "sub" / "a.md")  # no doubled separator


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.md", ".git/a.md", "a.md.swp", "a.md~", "#a.md#", "a.tmp", "a.part",
        "a.crdownload", "a.json", "README", "sub/.cache/b.md",
    ],
)  # fmt: skip
def test_hidden_files_leftovers_and_other_types_are_skipped(tmp_path: Path, name: str) -> None:
    touch(tmp_path / name)
    touch(tmp_path / "kept.md")
    assert paths(walked(tmp_path), tmp_path) == ["kept.md"]


def test_include_and_exclude_patterns(tmp_path: Path) -> None:
    for name in ["a.md", "b.txt", "draft-c.md", "drafts/d.md", "e.MD", "f.markdown"]:
        touch(tmp_path / name)
    found = walked(tmp_path, include=["*.md", "*.txt"], exclude=["draft-*", "*/drafts/*"])
    assert paths(found, tmp_path) == ["b.txt", "a.md"]


def test_the_filter_is_the_same_for_the_watcher(tmp_path: Path) -> None:
    accept = make_filter(InputConfig.model_validate({"exclude": ["*/drafts/*", "skip.md"]}))
    assert accept(str(tmp_path / "a.md"))
    assert not accept(str(tmp_path / ".a.md"))
    assert not accept(str(tmp_path / "skip.md"))
    assert not accept(str(tmp_path / "drafts" / "a.md"))
    assert not accept(str(tmp_path / "a.md.swp"))
    assert accept(str(tmp_path / "北交所" / "新闻.md"))
    assert not accept(str(tmp_path / "北交所" / "新闻.md.bak"))


def test_a_name_that_is_not_utf8_is_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    touch(tmp_path / "好.md")
    with open(os.path.join(os.fsencode(tmp_path), b"bad-\xff.md"), "w") as handle:
        handle.write("x")
    accept = make_filter(InputConfig())
    with caplog.at_level(logging.WARNING, logger="feeds.scan"):
        first = list(walk([tmp_path], accept, True))
        second = list(walk([tmp_path], accept, True))
    assert paths(first, tmp_path) == paths(second, tmp_path) == ["好.md"]
    assert [r.getMessage() for r in caplog.records if "not valid UTF-8" in r.getMessage()] == [
        f"skipped {os.path.join(os.fsencode(tmp_path), b'bad-' + bytes([255]) + b'.md')!r}: the "
        "path is not valid UTF-8 (feeds and the state are UTF-8); rename it"
    ]


def test_a_symlink_loop_is_cut_and_linked_folders_are_walked_once(tmp_path: Path) -> None:
    touch(tmp_path / "real" / "a.md")
    os.symlink(tmp_path / "real", tmp_path / "link")
    os.symlink(tmp_path, tmp_path / "real" / "up")
    assert paths(walked(tmp_path), tmp_path) == ["link/a.md"]  # "link" sorts before "real"


def test_broken_article_links_are_listed_and_others_are_not(tmp_path: Path) -> None:
    touch(tmp_path / "a.md")
    os.symlink(tmp_path / "nowhere.md", tmp_path / "dangling.md")
    os.symlink(tmp_path / "nowhere.json", tmp_path / "dangling.json")
    os.symlink(tmp_path / "loop.md", tmp_path / "loop.md")
    found = {os.path.basename(s.path): (s.size, s.mtime_ns) for s in walked(tmp_path)}
    assert found == {
        "a.md": (1, found["a.md"][1]),
        "dangling.md": BROKEN_LINK,
        "loop.md": BROKEN_LINK,
    }


def test_without_following_links_only_real_files_count(tmp_path: Path) -> None:
    touch(tmp_path / "real" / "a.md")
    os.symlink(tmp_path / "real", tmp_path / "linked")
    os.symlink(tmp_path / "real" / "a.md", tmp_path / "b.md")
    os.symlink(tmp_path / "nowhere.md", tmp_path / "dangling.md")
    found = list(walk([tmp_path], make_filter(InputConfig()), False))
    assert paths(found, tmp_path) == ["real/a.md"]


def test_a_missing_root_gives_a_marker_and_keeps_its_files(tmp_path: Path) -> None:
    touch(tmp_path / "here" / "a.md")
    missing = tmp_path / "gone"
    stamps = list(walk([tmp_path / "here", missing], make_filter(InputConfig()), True))
    assert stamps[-1] == FileStamp(f"{missing}/", UNLISTED, UNLISTED)
    known = {str(missing / "b.md"): (1, 1), str(tmp_path / "here" / "old.md"): (1, 1)}
    result = diff(iter(stamps), known)
    assert result.gone == (str(tmp_path / "here" / "old.md"),)
    assert result.unchanged == 1  # gone/b.md is kept
    assert [s.path for s in result.changed] == [str(tmp_path / "here" / "a.md")]


def test_diff_finds_new_changed_unchanged_and_gone(tmp_path: Path) -> None:
    same = touch(tmp_path / "same.md")
    edited = touch(tmp_path / "edited.md")
    new = touch(tmp_path / "new.md")
    stat = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in (same, edited)}
    known = {
        str(same): stat[same],
        str(edited): (stat[edited][0], stat[edited][1] - 1),
        str(tmp_path / "deleted.md"): (3, 3),
    }
    result = diff(iter(walked(tmp_path)), known)
    assert [s.path for s in result.changed] == [str(new), str(edited)]
    assert result.gone == (str(tmp_path / "deleted.md"),)
    assert (result.unchanged, result.seen) == (1, 3)
    reread = diff(iter(walked(tmp_path)), known, reread=True)
    assert [s.path for s in reread.changed] == [str(same), str(new), str(edited)]
    assert (reread.unchanged, reread.seen) == (0, 3)


PATTERNS = ["*.md", "*", "*.MD", "a*", "*[ab].md", "*?.txt", "*.tar.gz", "#*#", "*~", "*\\x", "*["]
NAMES = [
    "a.md",
    "b.MD",
    "x.txt",
    ".txt",
    "1.tar.gz",
    "#a#",
    "#a",
    "a~",
    "a\\x",
    "a[",
    "ab",
    "新闻.md",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_patterns_mean_what_fnmatch_says(tmp_path: Path, pattern: str) -> None:
    include = make_filter(InputConfig.model_validate({"include": [pattern]}))
    exclude = make_filter(InputConfig.model_validate({"include": ["*"], "exclude": [pattern]}))
    for name in NAMES:
        matches = fnmatch.fnmatchcase(name, pattern)
        editor_leftover = any(fnmatch.fnmatchcase(name, p) for p in EDITOR_LEFTOVERS)
        hidden = name.startswith(".")
        path = str(tmp_path / name)
        assert include(path) == (matches and not hidden and not editor_leftover), name
        assert exclude(path) == (not matches and not hidden and not editor_leftover), name


@pytest.mark.parametrize("reread", [False, True])
@pytest.mark.parametrize("follow", [False, True])
def test_scan_changes_is_walk_then_diff(tmp_path: Path, reread: bool, follow: bool) -> None:
    root = tmp_path / "root"
    same = touch(root / "same.md")
    for name in ["sub/new.md", "sub/a.md", "b.md", "c.html", "a.md", "sub/deep/z.md", "y/1.md"]:
        touch(root / name)
    touch(root / ".hidden" / "x.md")
    os.symlink(tmp_path / "nowhere.md", root / "dangling.md")
    os.symlink(root / "sub", root / "linked")
    known = {
        str(same): (same.stat().st_size, same.stat().st_mtime_ns),
        str(root / "deleted.md"): (1, 1),
        str(tmp_path / "missing" / "kept.md"): (1, 1),
    }
    roots = [root, tmp_path / "missing"]
    accept = make_filter(InputConfig())
    expected = diff(walk(roots, accept, follow), known, reread=reread)
    assert scan_changes(roots, accept, follow, known, reread=reread) == expected
    assert expected.gone == (str(root / "deleted.md"),)


@pytest.mark.parametrize("follow", [False, True])
def test_a_first_build_reads_in_the_order_a_scan_lists_changes(
    tmp_path: Path, follow: bool
) -> None:
    """A first build streams ``every_path``; a later one ingests ``scan_changes``' list: the
    same order, or the same archive would get different representatives (and bytes)."""
    root = tmp_path / "root"
    for name in ["sub/new.md", "sub/a.md", "b.md", "c.html", "a.md", "sub/deep/z.md", "y/1.md"]:
        touch(root / name)
    os.symlink(tmp_path / "nowhere.md", root / "dangling.md")
    roots = [root, tmp_path / "missing"]  # a missing root: a marker, not a path
    accept = make_filter(InputConfig())
    listed = [s.path for s in scan_changes(roots, accept, follow, {}).changed]
    assert list(every_path(roots, accept, follow)) == listed
    assert len(listed) == 7 + follow  # the dangling link is read (and reported) when followed


def _peak_bytes_per_file(walk_all: Callable[[], object], files: int) -> float:
    tracemalloc.start()
    try:
        walk_all()
        return tracemalloc.get_traced_memory()[1] / files
    finally:
        tracemalloc.stop()


def test_a_big_flat_folder_is_walked_without_holding_stat_results(tmp_path: Path) -> None:
    """Hexo keeps every post in one folder: 100,000 of them must not cost 100 MB to list
    (DirEntry.stat keeps each ~0.6 KB result alive with the entry: ~900 B a file in all)."""
    files = 3000
    for n in range(files):
        (tmp_path / f"post-{n:05}.md").write_text("x", "utf-8")
    roots, accept = [tmp_path], make_filter(InputConfig())
    known = {s.path: (s.size, s.mtime_ns) for s in walk(roots, accept, True)}

    def rescan() -> int:
        return scan_changes(roots, accept, True, known).unchanged

    def first_build() -> int:
        return sum(1 for _ in every_path(roots, accept, True))

    assert rescan() == first_build() == files
    assert _peak_bytes_per_file(rescan, files) < 450
    assert _peak_bytes_per_file(first_build, files) < 450
