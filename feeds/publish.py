"""Atomic publication of rendered files into the output folder.

A file is rewritten only when its bytes change, so unchanged feeds keep their mtime (and the
ETag/Last-Modified a static web server derives from it). Writes go to a temporary file in the
same directory, are fsynced and then renamed over the target: readers see the old file or the
new one, never a partial one, also after a crash.

``publish_many`` publishes a batch: the temporary files are fsynced concurrently (the file
system commits them together instead of one journal commit each), then renamed, then each
folder is fsynced once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final, TypeVar

FILE_MODE: Final = 0o644
TEMP_SUFFIX: Final = ".tmp"
# Directory fsync is unsupported on some file systems; that costs durability, not correctness.
_DIR_FSYNC_UNSUPPORTED: Final = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EBADF})
SYNC_THREADS: Final = 8
T = TypeVar("T")


class PublishError(OSError):
    """Writing or removing one output file failed (the old file, if any, is intact)."""

    def __init__(self, relpath: str, reason: str) -> None:
        super().__init__(f"cannot publish {relpath!r}: {reason}")
        self.relpath = relpath
        self.reason = reason


def publish(output_dir: Path, relpath: str, data: bytes) -> bool:
    """Write ``data`` to ``output_dir/relpath`` unless it already holds exactly these bytes.

    Returns True when the file was written, False when it was left untouched.
    Raises ValueError for a relpath outside ``output_dir`` and PublishError when writing fails.
    """
    return bool(publish_many(output_dir, [(relpath, data)]))


@dataclass(slots=True)
class _Staged:
    """A temporary file holding the new bytes of ``target``, not yet renamed over it."""

    relpath: str
    target: Path
    temp: str
    fd: int = -1


def publish_many(output_dir: Path, files: Sequence[tuple[str, bytes]]) -> list[str]:
    """``publish`` for several files at once; returns the relpaths actually written, in order.

    Each file is fsynced before it replaces its target, and every folder that got a new file
    is fsynced afterwards. When one file fails, those renamed before it stay published, the
    others keep their old content, and PublishError names the one that failed. When the disk
    has no room for the whole batch beside the old files, the files are published one at a
    time, which needs room for only the largest of them.
    """
    root = output_dir.resolve()
    targets = [(relpath, _resolve_target(root, relpath), data) for relpath, data in files]
    written: list[str] = []
    try:
        _publish_together(targets, written)
    except PublishError as exc:
        if not _out_of_space(exc):
            raise
        for target in targets:
            _publish_together([target], written)
    return written


def _publish_together(targets: Sequence[tuple[str, Path, bytes]], written: list[str]) -> None:
    """Stage every changed file, fsync them concurrently, rename them; appends to ``written``."""
    staged: list[_Staged] = []
    renamed: list[_Staged] = []
    try:
        for relpath, target, data in targets:
            with _errors_as(relpath):
                if not _holds(target, data):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    staged.append(_stage(relpath, target, data))
        _in_parallel(staged, _sync_staged)
        for item in staged:
            with _errors_as(item.relpath):
                os.close(item.fd)
                item.fd = -1
                os.replace(item.temp, item.target)
            item.temp = ""
            renamed.append(item)
            written.append(item.relpath)
    finally:
        _discard(staged)
        folders = {item.target.parent: item.relpath for item in renamed}
        _in_parallel(list(folders.items()), _sync_folder)


def _out_of_space(exc: PublishError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)


def _stage(relpath: str, target: Path, data: bytes) -> _Staged:
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    item = _Staged(relpath, target, temp, fd)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        _discard([item])
        raise
    return item


def _sync_staged(item: _Staged) -> None:
    with _errors_as(item.relpath):
        os.fsync(item.fd)


def _sync_folder(entry: tuple[Path, str]) -> None:
    folder, relpath = entry
    with _errors_as(relpath):
        fsync_dir(folder)


def _discard(staged: Iterable[_Staged]) -> None:
    """Close and delete the temporary files that were not renamed into place."""
    for item in staged:
        if item.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(item.fd)
            item.fd = -1
        if item.temp:
            with contextlib.suppress(OSError):
                os.unlink(item.temp)
            item.temp = ""


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _in_parallel(work: Sequence[T], action: Callable[[T], None]) -> None:
    """Run ``action`` on every element, concurrently when there are several (fsync waits on the
    disk, not the CPU); the first exception is raised after all have finished."""
    global _pool
    if len(work) <= 1:
        for element in work:
            action(element)
        return
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="feeds-fsync")
        pool = _pool
    futures = [pool.submit(action, element) for element in work]
    errors = [exc for exc in (f.exception() for f in futures) if exc is not None]
    if errors:
        raise errors[0]


@contextlib.contextmanager
def _errors_as(relpath: str) -> Iterator[None]:
    """OSError (other than PublishError) becomes PublishError naming ``relpath``."""
    try:
        yield
    except PublishError:
        raise
    except OSError as exc:
        raise PublishError(relpath, _reason(exc)) from exc


def remove(output_dir: Path, relpath: str) -> bool:
    """Delete ``output_dir/relpath`` (a feed that no longer exists); False when already absent."""
    target = _resolve_target(output_dir.resolve(), relpath)
    try:
        target.unlink()
        fsync_dir(target.parent)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise PublishError(relpath, _reason(exc)) from exc
    return True


def _resolve_target(root: Path, relpath: str) -> Path:
    """``root/relpath`` (``root`` resolved), refusing (ValueError) any path that would land
    outside it."""
    pure = PurePosixPath(relpath)
    if "\0" in relpath or pure.is_absolute() or not pure.parts or ".." in pure.parts:
        raise ValueError(f"refusing output path {relpath!r}: must stay inside the output folder")
    target = root.joinpath(*pure.parts)
    # A symlinked subdirectory must not carry the write elsewhere either.
    if not target.parent.resolve().is_relative_to(root):
        raise ValueError(f"refusing output path {relpath!r}: leaves the output folder")
    return target


def _holds(target: Path, data: bytes) -> bool:
    """True when ``target`` is a regular file whose bytes equal ``data`` (size checked first)."""
    try:
        stat = target.stat()
    except FileNotFoundError:
        return False
    if not target.is_file() or stat.st_size != len(data):
        return False
    return target.read_bytes() == data


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc.strerror or exc}"
