"""Which article files exist, and which changed since the store last saw them. Stat only.

The walk is iterative, skips hidden entries and editor leftovers, and remembers every directory
it entered by (device, inode) so a symlink loop cannot hang it.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from feeds.config import InputConfig
from feeds.model import FileStamp

log = logging.getLogger("feeds.scan")
EDITOR_LEFTOVERS = ("*.swp", "*.swo", "*.swx", "*~", "*.tmp", "*.part", "*.crdownload", "#*#")


@dataclass(frozen=True, slots=True)
class ScanDiff:
    changed: tuple[FileStamp, ...]  # new or modified (size or mtime differs)
    gone: tuple[str, ...]  # known to the store but no longer on disk
    unchanged: int
    seen: int


def make_filter(config: InputConfig) -> Callable[[str], bool]:
    """A predicate on a path: is this an article file we should read?"""
    include = re.compile("|".join(fnmatch.translate(p) for p in config.include) or "(?!)")
    excluded = (*EDITOR_LEFTOVERS, *config.exclude)
    exclude = re.compile("|".join(fnmatch.translate(p) for p in excluded))
    path_patterns = [p for p in config.exclude if "/" in p]

    def accept(path: str) -> bool:
        name = os.path.basename(path)
        if name.startswith(".") or not include.match(name) or exclude.match(name):
            return False
        return not any(fnmatch.fnmatch(path, p) for p in path_patterns)

    return accept


def walk(
    roots: Sequence[Path], accept: Callable[[str], bool], follow_symlinks: bool = True
) -> Iterator[FileStamp]:
    """Every accepted file under the roots, as paths joined from the root as given."""
    visited: set[tuple[int, int]] = set()
    for root in roots:
        if not root.is_dir():
            log.warning("article folder %s does not exist or is not a folder; skipped", root)
            continue
        yield from _walk_root(str(root), accept, follow_symlinks, visited)


def _walk_root(
    root: str, accept: Callable[[str], bool], follow: bool, visited: set[tuple[int, int]]
) -> Iterator[FileStamp]:
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in visited:
            continue
        visited.add((info.st_dev, info.st_ino))
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc.strerror)
            continue
        for entry in sorted(entries, key=lambda e: e.name, reverse=True):
            stamp = _visit(entry, accept, follow, stack)
            if stamp is not None:
                yield stamp


def _visit(
    entry: os.DirEntry[str], accept: Callable[[str], bool], follow: bool, stack: list[str]
) -> FileStamp | None:
    if entry.name.startswith("."):
        return None
    try:
        if entry.is_dir(follow_symlinks=follow):
            stack.append(entry.path)
            return None
        if not entry.is_file(follow_symlinks=follow) or not accept(entry.path):
            return None
        info = entry.stat(follow_symlinks=follow)
    except OSError:  # vanished or dangling symlink: the next scan will know
        return None
    return FileStamp(entry.path, info.st_size, info.st_mtime_ns)


def diff(current: Iterator[FileStamp], known: Mapping[str, tuple[int, int]]) -> ScanDiff:
    """Compare a walk with the store's index ``{path: (size, mtime_ns)}``."""
    changed: list[FileStamp] = []
    present: set[str] = set()
    unchanged = 0
    for stamp in current:
        present.add(stamp.path)
        if known.get(stamp.path) == (stamp.size, stamp.mtime_ns):
            unchanged += 1
        else:
            changed.append(stamp)
    gone = tuple(sorted(path for path in known if path not in present))
    return ScanDiff(tuple(changed), gone, unchanged, len(present))
