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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from feeds.config import InputConfig
from feeds.model import FileStamp

log = logging.getLogger("feeds.scan")
EDITOR_LEFTOVERS = ("*.swp", "*.swo", "*.swx", "*~", "*.tmp", "*.part", "*.crdownload", "#*#")
WARNED_NAMES_MAX = 10_000  # bad names warned about once each (bounded memory)
BROKEN_LINK = (-1, -1)  # (size, mtime_ns) of a symlink that leads nowhere
UNLISTED = -2  # size and mtime_ns of the marker stamp of a folder that could not be listed


@dataclass(frozen=True, slots=True)
class ScanDiff:
    changed: tuple[FileStamp, ...]  # new or modified (size or mtime differs)
    gone: tuple[str, ...]  # known to the store but no longer on disk
    unchanged: int
    seen: int


def make_filter(config: InputConfig) -> Callable[[str], bool]:
    """A predicate on a path: is this an article file we should read?"""
    include = "|".join(fnmatch.translate(p) for p in config.include) or "(?!)"
    exclude = "|".join(fnmatch.translate(p) for p in (*EDITOR_LEFTOVERS, *config.exclude))
    # One match per name: not hidden, no excluded pattern, an included one.
    name_ok = re.compile(rf"(?!\.)(?!{exclude})(?:{include})").match
    path_patterns = [p for p in config.exclude if "/" in p]
    warned: set[str] = set()

    def accept(path: str) -> bool:
        if not name_ok(path[path.rfind(os.sep) + 1 :]):
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


def is_utf8(path: str) -> bool:
    """False for a path holding bytes that are not UTF-8 (decoded as lone surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def walk(
    roots: Sequence[Path], accept: Callable[[str], bool], follow_symlinks: bool = True
) -> Iterator[FileStamp]:
    """Every accepted file under the roots, as paths joined from the root as given; and a
    marker (``unlisted``) for each folder that could not be listed."""
    visited: set[tuple[int, int]] = set()
    for root in roots:
        if not root.is_dir():
            log.warning(
                "article folder %s does not exist or is not a folder; its known files are kept",
                root,
            )
            yield unlisted(str(root))
            continue
        yield from _walk_root(str(root), accept, follow_symlinks, visited)


def _walk_root(
    root: str, accept: Callable[[str], bool], follow: bool, visited: set[tuple[int, int]]
) -> Iterator[FileStamp]:
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            fd = os.open(folder, _FOLDER_FLAGS)
        except OSError as exc:
            if _first_visit(folder, visited):  # there but not listable
                yield _cannot_list(folder, exc)
            continue
        try:  # entries are listed and stat'ed relative to fd: no path lookup per file
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) in visited:
                continue
            visited.add((info.st_dev, info.st_ino))
            try:
                entries = sorted(os.scandir(fd), key=_name, reverse=True)
            except OSError as exc:
                yield _cannot_list(folder, exc)
                continue
            prefix = os.path.join(folder, "")
            for entry in entries:
                stamp = _visit(entry, prefix + entry.name, accept, follow, stack)
                if stamp is not None:
                    yield stamp
        finally:
            os.close(fd)


_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_name = attrgetter("name")


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


def _cannot_list(folder: str, exc: OSError) -> FileStamp:
    log.warning("cannot list %s: %s; its known files are kept", folder, exc.strerror)
    return unlisted(folder)


def unlisted(folder: str) -> FileStamp:
    """The marker stamp of a folder that could not be listed (its path ends with "/")."""
    return FileStamp(os.path.join(folder, ""), UNLISTED, UNLISTED)


def _visit(
    entry: os.DirEntry[str],
    path: str,
    accept: Callable[[str], bool],
    follow: bool,
    stack: list[str],
) -> FileStamp | None:
    if entry.name.startswith("."):
        return None
    try:
        if entry.is_dir(follow_symlinks=follow):
            stack.append(path)
            return None
        if not entry.is_file(follow_symlinks=follow):
            return _broken_link(entry, path, accept) if follow else None
        if not accept(path):
            return None
        info = entry.stat(follow_symlinks=follow)
    except OSError:  # vanished, or a symlink loop
        return _broken_link(entry, path, accept) if follow else None
    return FileStamp(path, info.st_size, info.st_mtime_ns)


def _broken_link(
    entry: os.DirEntry[str], path: str, accept: Callable[[str], bool]
) -> FileStamp | None:
    """A dangling or looping article symlink, listed so that reading it reports why."""
    try:
        dangling = entry.is_symlink() and not os.path.exists(path)
    except OSError:
        return None
    if not dangling or not accept(path):
        return None
    return FileStamp(path, *BROKEN_LINK)


def diff(
    current: Iterator[FileStamp], known: Mapping[str, tuple[int, int]], *, reread: bool = False
) -> ScanDiff:
    """Compare a walk with the store's index ``{path: (size, mtime_ns)}``. Known files below a
    folder that could not be listed count as unchanged, not gone. ``reread``: every file that is
    there counts as changed (after a config change)."""
    changed: list[FileStamp] = []
    present: set[str] = set()
    unlisted_folders: list[str] = []
    unchanged = 0
    for stamp in current:
        if stamp.size == UNLISTED:
            unlisted_folders.append(stamp.path)
            continue
        present.add(stamp.path)
        if not reread and known.get(stamp.path) == (stamp.size, stamp.mtime_ns):
            unchanged += 1
        else:
            changed.append(stamp)
    missing = [path for path in known if path not in present]
    kept = tuple(unlisted_folders)
    gone = tuple(sorted(path for path in missing if not path.startswith(kept)))
    unchanged += len(missing) - len(gone)
    return ScanDiff(tuple(changed), gone, unchanged, len(present))
