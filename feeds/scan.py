"""Which article files exist, and which changed since the store last saw them. Stat only.

The walk is iterative, skips hidden entries and editor leftovers, and remembers every directory
it entered by (device, inode) so a symlink loop cannot hang it. A file name that is not valid
UTF-8 is skipped with a warning (feeds and the state database are UTF-8). An article symlink
that leads nowhere (dangling, or a loop) is listed with size and mtime -1, so that reading it
records the reason once (``feeds errors``) and later scans see it unchanged. A folder that
cannot be listed (a missing root, a permission or I/O error) is reported to ``diff`` by a
marker stamp, so that the files known below it are kept as they are rather than taken for
deleted: a passing problem must not unpublish a whole folder.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from feeds.config import InputConfig
from feeds.model import FileStamp

log = logging.getLogger("feeds.scan")
EDITOR_LEFTOVERS = ("*.swp", "*.swo", "*.swx", "*~", "*.tmp", "*.part", "*.crdownload", "#*#")
# Hexo's and Jekyll's folder of unpublished posts: nothing below it is read.
DRAFTS_PART = f"{os.sep}_drafts{os.sep}"
WARNED_NAMES_MAX = 10_000  # bad names warned about once each (bounded memory)
BROKEN_LINK = (-1, -1)  # (size, mtime_ns) of a symlink that leads nowhere
UNLISTED = -2  # size and mtime_ns of the marker stamp of a folder that could not be listed


@dataclass(frozen=True, slots=True)
class ScanDiff:
    changed: tuple[FileStamp, ...]  # new or modified (size or mtime differs)
    gone: tuple[str, ...]  # known to the store but no longer on disk
    unchanged: int
    seen: int


def make_filter(config: InputConfig, roots: Sequence[Path] = ()) -> Callable[[str], bool]:
    """A predicate on a path: is this an article file we should read? ``roots``: the article
    folders (a ``_drafts`` folder counts only below one of them)."""
    root_prefixes = tuple(os.path.join(str(root), "") for root in roots)
    included = _name_matcher(config.include)
    excluded = _name_matcher((*EDITOR_LEFTOVERS, *config.exclude))
    path_patterns = [p for p in config.exclude if "/" in p]
    warned: set[str] = set()

    def accept(path: str) -> bool:
        name = path[path.rfind(os.sep) + 1 :]
        if name.startswith(".") or not included(name) or excluded(name):
            return False
        if DRAFTS_PART in path and _in_drafts_folder(path, root_prefixes):
            return False
        if path_patterns and any(fnmatch.fnmatch(path, p) for p in path_patterns):
            return False
        if not path.isascii() and not is_utf8(path):
            if path not in warned and len(warned) < WARNED_NAMES_MAX:
                warned.add(path)
                log.warning(
                    "skipped %r: the path is not valid UTF-8 (feeds and the state are UTF-8); "
                    "rename it",
                    os.fsencode(path),
                )
            return False
        return True

    return accept


def _in_drafts_folder(path: str, root_prefixes: Sequence[str]) -> bool:
    below = next((path[len(p) - 1 :] for p in root_prefixes if path.startswith(p)), path)
    return DRAFTS_PART in below


def _name_matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """``fnmatch`` (case-sensitive) of a name against any of ``patterns``; the common
    ``*.ext`` form as a plain suffix test, which is much cheaper than the regex."""
    suffixes = tuple(p[1:] for p in patterns if _is_suffix_pattern(p))
    others = [fnmatch.translate(p) for p in patterns if not _is_suffix_pattern(p)]
    regex = re.compile("|".join(others)).match if others else None

    def matches(name: str) -> bool:
        return name.endswith(suffixes) or (regex is not None and regex(name) is not None)

    return matches


def _is_suffix_pattern(pattern: str) -> bool:
    return pattern.startswith("*") and not any(c in pattern[1:] for c in "*?[")


def is_utf8(path: str) -> bool:
    """False for a path holding bytes that are not UTF-8 (decoded as lone surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


Stamp = tuple[str, int, int]  # (path, size, mtime_ns): a FileStamp without the object's cost


def walk(
    roots: Sequence[Path],
    accept: Callable[[str], bool],
    follow_symlinks: bool = True,
    *,
    stat: bool = True,
) -> Iterator[FileStamp]:
    """Every accepted file under the roots, as paths joined from the root as given; and a
    marker (``unlisted``) for each folder that could not be listed. Without ``stat``, files
    are not stat'ed (size and mtime 0)."""
    for stamps in _stamps(roots, accept, follow_symlinks, stat=stat):
        for path, size, mtime_ns in sorted(stamps, reverse=True):
            yield FileStamp(path, size, mtime_ns)


def scan_changes(
    roots: Sequence[Path],
    accept: Callable[[str], bool],
    follow_symlinks: bool,
    known: Mapping[str, tuple[int, int]],
    *,
    reread: bool = False,
    retry: Collection[str] = (),
) -> ScanDiff:
    """``diff(walk(...), known)`` without an object per unchanged file (the periodic rescan).
    Files in ``retry`` are listed as changed even when their stamp is the same."""
    return _diff(_stamps(roots, accept, follow_symlinks), known, reread, retry)


def every_path(
    roots: Sequence[Path], accept: Callable[[str], bool], follow_symlinks: bool
) -> Iterator[str]:
    """Every accepted file, in the order ``scan_changes`` lists changed ones, as the walk finds
    them: a first build streams this instead of holding a list of the whole archive. Nothing is
    stat'ed (every file is new, and reading it stats it anyway)."""
    listed = walk(roots, accept, follow_symlinks, stat=False)
    return (stamp.path for stamp in listed if stamp.size != UNLISTED)


def _stamps(
    roots: Sequence[Path], accept: Callable[[str], bool], follow: bool, *, stat: bool = True
) -> Iterator[list[Stamp]]:
    """The stamps of the walk, one folder's at a time (a list each: cheaper than one by one),
    in no particular order within a folder: the walk's order is names descending, and sorting
    only what needs it (the changed files, and folders) is cheaper than sorting every entry.
    Without ``stat``, a file's size and mtime are 0."""
    visited: set[tuple[int, int]] = set()
    for root in roots:
        if not root.is_dir():
            log.warning(
                "article folder %s does not exist or is not a folder; its known files are kept",
                root,
            )
            yield [_unlisted(str(root))]
            continue
        yield from _walk_root(str(root), accept, follow, visited, stat)


def _walk_root(
    root: str,
    accept: Callable[[str], bool],
    follow: bool,
    visited: set[tuple[int, int]],
    stat: bool,
) -> Iterator[list[Stamp]]:
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            fd = os.open(folder, _FOLDER_FLAGS)
        except OSError as exc:
            if _first_visit(folder, visited):  # there but not listable
                yield [_cannot_list(folder, exc)]
            continue
        try:  # entries are listed and stat'ed relative to fd: no path lookup per file
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) in visited:
                continue
            visited.add((info.st_dev, info.st_ino))
            try:
                entries = list(os.scandir(fd))
            except OSError as exc:
                yield [_cannot_list(folder, exc)]
                continue
            prefix = os.path.join(folder, "")
            yield _visit_entries(entries, fd if stat else None, prefix, accept, follow, stack)
        finally:
            os.close(fd)


_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def _first_visit(folder: str, visited: set[tuple[int, int]]) -> bool:
    """Mark ``folder`` visited; False if it cannot be stat'ed (gone, a loop) or was seen."""
    try:
        info = os.stat(folder)
    except OSError:
        return False
    if (info.st_dev, info.st_ino) in visited:
        return False
    visited.add((info.st_dev, info.st_ino))
    return True


def _cannot_list(folder: str, exc: OSError) -> Stamp:
    log.warning("cannot list %s: %s; its known files are kept", folder, exc.strerror)
    return _unlisted(folder)


def _unlisted(folder: str) -> Stamp:
    """The marker stamp of a folder that could not be listed (its path ends with "/")."""
    return os.path.join(folder, ""), UNLISTED, UNLISTED


def _visit_entries(
    entries: list[os.DirEntry[str]],
    fd: int | None,
    prefix: str,
    accept: Callable[[str], bool],
    follow: bool,
    stack: list[str],
) -> list[Stamp]:
    """The stamps of one folder's accepted files; its folders go onto ``stack`` (the first by
    name on top). One loop with no call per entry beyond the checks: it runs for every file.
    Files are stat'ed relative to ``fd`` (None: not stat'ed) with ``os.stat``, not
    ``DirEntry.stat``, which would keep every result alive with its entry (≈ 0.6 KB a file:
    30 MB for a folder of 50,000 posts)."""
    stamps: list[Stamp] = []
    folders: list[str] = []
    for entry in entries:
        name = entry.name
        if name.startswith("."):
            continue
        path = prefix + name
        try:
            if entry.is_dir(follow_symlinks=follow):
                folders.append(path)
                continue
            if entry.is_file(follow_symlinks=follow):
                if not accept(path):
                    continue
                if fd is None:
                    stamps.append((path, 0, 0))
                else:
                    info = os.stat(name, dir_fd=fd, follow_symlinks=follow)
                    stamps.append((path, info.st_size, info.st_mtime_ns))
                continue
        except OSError:  # vanished, or a symlink loop
            pass
        if follow and _is_broken_link(entry, path, accept):
            stamps.append((path, *BROKEN_LINK))
    stack.extend(sorted(folders, reverse=True))
    return stamps


def _is_broken_link(entry: os.DirEntry[str], path: str, accept: Callable[[str], bool]) -> bool:
    """A dangling or looping article symlink, listed so that reading it reports why."""
    try:
        dangling = entry.is_symlink() and not os.path.exists(path)
    except OSError:
        return False
    return dangling and accept(path)


def diff(
    current: Iterable[FileStamp], known: Mapping[str, tuple[int, int]], *, reread: bool = False
) -> ScanDiff:
    """Compare a walk with the store's index ``{path: (size, mtime_ns)}``. Known files below a
    folder that could not be listed count as unchanged, not gone. ``reread``: every file that is
    there counts as changed (after a config change)."""
    return _diff(([(s.path, s.size, s.mtime_ns)] for s in current), known, reread)


def _diff(
    current: Iterable[list[Stamp]],
    known: Mapping[str, tuple[int, int]],
    reread: bool,
    retry: Collection[str] = (),
) -> ScanDiff:
    changed: list[FileStamp] = []
    present: set[str] = set()  # only needed to find known files that are gone
    seen = 0
    unlisted_folders: list[str] = []
    unchanged = 0
    for stamps in current:
        changed_here: list[Stamp] = []
        for stamp in stamps:
            path, size, mtime_ns = stamp
            if size == UNLISTED:
                unlisted_folders.append(path)
                continue
            seen += 1
            if known:
                present.add(path)
            if not reread and known.get(path) == (size, mtime_ns) and not (retry and path in retry):
                unchanged += 1
            else:
                changed_here.append(stamp)
        changed.extend(FileStamp(*stamp) for stamp in sorted(changed_here, reverse=True))
    missing = [path for path in known if path not in present]
    kept = tuple(unlisted_folders)
    gone = tuple(sorted(path for path in missing if not path.startswith(kept)))
    unchanged += len(missing) - len(gone)
    return ScanDiff(tuple(changed), gone, unchanged, seen)
