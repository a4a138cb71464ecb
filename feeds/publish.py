"""Atomic publication of rendered files into the output folder.

A file is rewritten only when its bytes change, so unchanged feeds keep their mtime (and the
ETag/Last-Modified a static web server derives from it). Writes go to a temporary file in the
same directory, are fsynced and then renamed over the target: readers see the old file or the
new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Final

FILE_MODE: Final = 0o644
TEMP_SUFFIX: Final = ".tmp"
# Directory fsync is unsupported on some file systems; that costs durability, not correctness.
_DIR_FSYNC_UNSUPPORTED: Final = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EBADF})


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
    target = _resolve_target(output_dir, relpath)
    try:
        if _holds(target, data):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(target, data)
        _fsync_dir(target.parent)
    except PublishError:
        raise
    except OSError as exc:
        raise PublishError(relpath, _reason(exc)) from exc
    return True


def remove(output_dir: Path, relpath: str) -> bool:
    """Delete ``output_dir/relpath`` (a feed that no longer exists); False when already absent."""
    target = _resolve_target(output_dir, relpath)
    try:
        target.unlink()
        _fsync_dir(target.parent)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise PublishError(relpath, _reason(exc)) from exc
    return True


def _resolve_target(output_dir: Path, relpath: str) -> Path:
    """``output_dir/relpath``, refusing (ValueError) any path that would land outside it."""
    pure = PurePosixPath(relpath)
    if "\0" in relpath or pure.is_absolute() or not pure.parts or ".." in pure.parts:
        raise ValueError(f"refusing output path {relpath!r}: must stay inside the output folder")
    root = output_dir.resolve()
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


def _write_atomically(target: Path, data: bytes) -> None:
    fd, temp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), FILE_MODE)
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def _fsync_dir(directory: Path) -> None:
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
