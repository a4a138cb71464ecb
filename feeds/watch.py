"""Watch article roots and hand settled file changes to a callback, in batches.

A watchdog observer (inotify on Linux) reports events on the observer's thread; they are only
recorded there, under a lock, so the observer never waits. One worker thread decides when a burst
of events is over, checks which changed files are complete and calls ``on_batch`` with them.

A changed file is *complete* (settled) once either

* a close-after-write was seen for it after its last modification (inotify ``IN_CLOSE_WRITE``),
  or it was renamed into place (the write-then-rename idiom), or
* its ``(size, mtime_ns)`` stayed the same across ``settle`` seconds with no event in between.

Where close events are reported (inotify), a file written through a handle while watched (a
modify event) waits for that close: the settle rule applies to it only ``close_wait`` seconds
after its last write without a close (a writer that never closes, a ``truncate()`` by path),
which is logged. Files that appeared without a write event (renamed or linked in, found by
walking a new folder) and every file on other platforms follow the settle rule alone.

A burst of events ends after ``debounce`` seconds without one, but complete files are delivered
at once (after ``COMPLETE_QUIET``), also while other files are still being written: only those
wait, to close or settle. Deletions wait for the debounce (an editor that moves the old file
away before writing the new one must not make the article vanish for a moment); those seen
by then ride along.
A file that keeps changing is emitted anyway after ``MAX_SETTLE_WAIT`` seconds. A file that
vanishes before settling is dropped if it was created while pending (nobody has seen it) and
reported in ``Batch.gone`` otherwise.

A folder renamed within a root arrives as one batch: its old name in ``gone_dirs`` and every
file below its new name in ``changed`` (complete: a rename writes nothing), so its articles never
vanish for a moment. A folder moved out of the roots is a deletion, one moved in a creation.

Roots come and go: each root's parent folder is watched for the root's own name, so a root that
is missing at ``start()``, deleted, renamed away or replaced (``rm -rf``, then ``cp -r``; a
re-cloned folder renamed into place) is watched again as soon as it is there, and
``on_root_back`` is called so that the caller rescans it. ``check_roots()``, called now and then,
is the fallback where the parent cannot tell (it is missing too, or a share is mounted); it does
nothing while every root is watched. ``unwatched_roots`` lists the roots not watched now.

The watcher is fast rather than perfect: it keeps no index of the files under the roots and it
does not follow symlinked directories below a root. The service's periodic full rescan repairs
whatever is missed, and ``overflowed`` tells it when events were certainly lost.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import functools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from feeds.scan import is_utf8

log = logging.getLogger("feeds.watch")

MAX_BURST_DELAY = 2.0  # seconds after the first event of a burst at which we flush anyway
# The lull that ends a burst of complete files (closed or renamed): none, a complete file is
# delivered as soon as the worker is free; files completed while it is busy form the next batch.
COMPLETE_QUIET = 0.0
# How long a file written through a handle waits for that handle's close before the settle rule
# applies. A scraper pauses between writes for seconds (fetching the next paragraph), far less than
# this; a writer that never closes (a leaked handle, a truncate() by path) holds its file back no
# longer than this. Below MAX_SETTLE_WAIT, so a file left open is taken before that cap.
CLOSE_WAIT = 30.0
MAX_SETTLE_WAIT = 60.0  # seconds a file may keep changing before it is emitted anyway
PENDING_LIMIT_FACTOR = 20  # at most max_batch * this paths wait to settle; more are dropped
WORKER_THREAD_NAME = "feeds-watch"
# Only the inotify observer reports close-after-write (FSEvents, kqueue, Windows, polling do not).
CLOSE_EVENTS = Observer.__module__ == "watchdog.observers.inotify"
# A root's parent is watched for the root's own entry only (created, deleted, renamed; a symlink
# root is a file entry), not for reads, writes or attributes of its other entries.
PARENT_EVENTS = [
    DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileCreatedEvent, FileDeletedEvent,
    FileMovedEvent,
]  # fmt: skip
MISSING = "missing"  # why a root is not watched: it is not a folder (now)

Signature = tuple[int, int]  # (size, mtime_ns)
Identity = tuple[int, int]  # (st_dev, st_ino) of a folder: a re-created one is another


@dataclass(frozen=True)
class Batch:
    """Settled changes, to be applied in this order: ``gone_dirs``, then ``gone``, then ``changed``.

    ``gone_dirs`` holds directories deleted or moved away: every path below ``dir + os.sep`` that
    the consumer knows is gone (the watcher keeps no index, so it cannot list them). A directory
    may be re-created later in the same batch; its new files are then in ``changed``. A folder
    renamed within a root is one batch: its old name here, the files below its new name in
    ``changed``. A path reported gone that exists again when the batch is applied (re-created, or
    its root restored before a late deletion event) is not gone: its own events tell the rest.
    """

    changed: frozenset[str]  # absolute paths created/modified/moved-to, complete
    gone: frozenset[str]  # absolute paths deleted or moved away (and not re-created since)
    gone_dirs: frozenset[str] = frozenset()  # absolute directory paths deleted or moved away


class _Verdict(enum.Enum):
    READY = enum.auto()
    VANISHED = enum.auto()
    WAIT = enum.auto()


@dataclass(slots=True)
class _PendingChange:
    """What the watcher knows about one changed file that has not been emitted yet."""

    first_seen: float
    is_new: bool  # created while pending: nobody downstream knows this path
    complete: bool = False  # closed after writing, or renamed into place, since the last write
    close_by: float | None = None  # written through a handle: its close is awaited until then
    version: int = 0  # bumped on every event, so a stat taken meanwhile is recognised as stale
    signature: Signature | None = None
    stable_since: float = 0.0
    recheck_at: float = 0.0  # the worker looks at it again at this monotonic time


@dataclass(frozen=True, slots=True)
class _Root:
    path: str  # absolute, not resolved: reported paths start with it, like the rescan's
    watched: str  # the real path given to the observer (inotify does not follow a symlink)

    @classmethod
    def of(cls, path: str) -> _Root:
        return cls(path, os.path.realpath(path))

    def reported_path(self, event_path: str) -> str | None:
        """The path to report for a path the observer gave, or None if it is not below the root."""
        if event_path == self.watched:
            return self.path
        prefix = os.path.join(self.watched, "")
        if not event_path.startswith(prefix):
            return None
        return os.path.join(self.path, event_path[len(prefix) :])

    def is_hidden(self, path: str, *, check_last: bool) -> bool:
        """Whether a directory between the root and ``path`` (or ``path`` itself) is hidden."""
        if path == self.path:
            return False
        parts = path[len(os.path.join(self.path, "")) :].split(os.sep)
        if not check_last:
            parts = parts[:-1]
        return any(part.startswith(".") for part in parts)


@dataclass(frozen=True, slots=True)
class _Watched:
    """A folder given to the observer: which one it was, and its watch."""

    identity: Identity
    watch: ObservedWatch


class _EventHandler(FileSystemEventHandler):
    """Hands every event of one watch to the watcher; never lets an exception reach watchdog."""

    def __init__(
        self, on_event: Callable[[FileSystemEvent], None], on_failure: Callable[[str], None]
    ) -> None:
        self._on_event = on_event
        self._on_failure = on_failure

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("cannot handle file event %r", event)
            self._on_failure("an event could not be handled")


class _WatchdogTroubleListener(logging.Handler):
    """Watchdog reports inotify queue overflows and failed watch rebuilds only in its log.

    Records come from every observer in the process, so another watcher's trouble may flag
    this one too: a needless rescan, which is harmless.
    """

    def __init__(self, on_trouble: Callable[[str], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._on_trouble = on_trouble

    def emit(self, record: logging.LogRecord) -> None:
        self._on_trouble(f"watchdog: {record.getMessage()}")


def _limit_hint(exc: OSError) -> str:
    """What to do when the kernel's inotify limits refuse a watch (one watch per folder)."""
    if exc.errno == errno.ENOSPC:
        return (
            " (raise fs.inotify.max_user_watches: one watch per folder below the article "
            "folders; until then changes are found by the full rescan)"
        )
    if exc.errno == errno.EMFILE:
        return (
            " (raise fs.inotify.max_user_instances; until then changes are found by the full "
            "rescan)"
        )
    return ""


def _signature(path: str) -> Signature | None:
    """(size, mtime_ns) of a regular file, or None if it is gone or not a regular file."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_size, info.st_mtime_ns


def _identity(path: str) -> Identity | None:
    """(st_dev, st_ino) of the folder at ``path`` (symlinks followed), None if there is none."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


def _unschedule(observer: BaseObserver, watch: ObservedWatch) -> None:
    with contextlib.suppress(KeyError):  # already gone with the observer's own shutdown
        observer.unschedule(watch)


def _outermost(dirs: Iterable[str]) -> list[str]:
    """The directories not below another one of them (walking those covers all)."""
    kept: list[str] = []
    for directory in sorted(set(dirs), key=lambda path: path.split(os.sep)):
        if not kept or not directory.startswith(os.path.join(kept[-1], "")):
            kept.append(directory)
    return kept


class ArticleWatcher:
    """Watches article roots recursively and calls ``on_batch`` with settled changes.

    ``accept`` is called with the absolute path of every file event (it may look at the
    basename only, as the scan's filter does) from the observer and worker threads, so it must
    be thread-safe; files in hidden directories below a root are ignored before it is asked.

    ``on_batch`` runs on one worker thread, never concurrently and never under the watcher's
    lock. If it raises, the error is logged and that batch is dropped (the rescan repairs it).
    A batch never holds more than ``max_batch`` paths in ``changed`` and ``gone`` together,
    except that the files of a folder renamed within a root all come in the batch that says
    its old name is gone.

    ``on_root_back`` is called on the worker thread with a root's path when that root is watched
    again after it was missing or replaced (not at ``start()``): files may have arrived unseen,
    so the caller should rescan.
    """

    def __init__(
        self,
        roots: Sequence[Path],
        accept: Callable[[str], bool],
        on_batch: Callable[[Batch], None],
        *,
        debounce: float = 0.3,
        settle: float = 0.5,
        max_batch: int = 5000,
        complete_quiet: float = COMPLETE_QUIET,
        close_wait: float = CLOSE_WAIT,
        on_root_back: Callable[[str], None] | None = None,
    ) -> None:
        if debounce < 0 or settle < 0 or close_wait < 0 or max_batch < 1:
            raise ValueError("debounce, settle and close_wait must be >= 0 and max_batch >= 1")
        self._root_paths = tuple(dict.fromkeys(os.path.abspath(root) for root in roots))
        self._accept = accept
        self._on_batch = on_batch
        self._on_root_back = on_root_back
        self._debounce = debounce
        self._complete_quiet = min(complete_quiet, debounce)
        self._settle = settle
        self._close_wait = close_wait if CLOSE_EVENTS else None
        self._max_batch = max_batch
        self._pending_limit = max_batch * PENDING_LIMIT_FACTOR

        self._cond = threading.Condition(threading.Lock())
        self._changes: dict[str, _PendingChange] = {}
        self._gone: set[str] = set()
        self._gone_dirs: set[str] = set()
        self._moved_to: set[str] = set()  # new names of folders renamed within a root
        self._dirs_to_walk: list[tuple[str, str | None]] = []  # (folder, its old name if renamed)
        self._roots_to_check: set[str] = set()
        self._unwatched: dict[str, str] = {}  # root path -> why it is not watched now
        self._fresh: set[str] = set()  # paths with events since the last evaluation
        self._fresh_complete: set[str] = set()  # those of them that are complete files
        self._burst_started: float | None = None
        self._last_event_at = 0.0
        self._last_complete_at = 0.0  # the last event that left a file complete
        self._next_recheck: float | None = None
        self._overflowed = False
        self._shutting_down = False  # stop() began: watchdog's shutdown noise is not a loss
        self._stopping = False  # the observer is down: the worker flushes and ends

        self._observer: BaseObserver | None = None
        # Guards (un)scheduling watches and these maps; never taken under _cond, and never by the
        # observer thread (it holds the observer's lock while it hands over an event).
        self._watch_lock = threading.Lock()
        self._watched: dict[str, _Watched] = {}  # root path -> its recursive watch
        self._parents: dict[str, _Watched] = {}  # parent path -> its watch for the roots' names
        self._worker: threading.Thread | None = None
        self._trouble_listener = _WatchdogTroubleListener(self._note_lost_events)

    # -- public API -------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching. Missing roots are logged, and watched once they appear. Call once."""
        if self._worker is not None:
            raise RuntimeError("ArticleWatcher.start() called twice")
        logging.getLogger("watchdog.observers").addHandler(self._trouble_listener)
        observer = Observer()
        observer.start()  # started first, so each schedule() reports its own failure
        self._observer = observer
        for path in self._root_paths:
            self._reconcile_root(path)
        self._worker = threading.Thread(target=self._run, name=WORKER_THREAD_NAME, daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 5) -> None:
        """Stop the observer, flush settled changes to ``on_batch``, and end the worker thread.

        Changes that have not settled yet are dropped (the rescan will find them). Returns after
        at most about ``timeout`` seconds even if ``on_batch`` is still busy.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._shutting_down = True
        with self._watch_lock:
            observer, self._observer = self._observer, None
        if observer is not None and observer.is_alive():
            observer.stop()
            observer.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.warning("file watcher worker did not stop within %.1f s", timeout)
        logging.getLogger("watchdog.observers").removeHandler(self._trouble_listener)

    @property
    def pending(self) -> int:
        """Changed paths waiting to settle."""
        with self._cond:
            return len(self._changes)

    @property
    def overflowed(self) -> bool:
        """True if events may have been lost since the last ``consume_overflow()``.

        Reading it does not reset it, so /healthz can show it. It also stays True while the
        observer thread is dead. The service should call ``consume_overflow()`` and rescan.
        """
        with self._cond:
            return self._overflowed or self._observer_died_locked()

    def consume_overflow(self) -> bool:
        """Return ``overflowed`` and reset it; call it right before starting a rescan."""
        with self._cond:
            lost = self._overflowed or self._observer_died_locked()
            self._overflowed = False
            return lost

    @property
    def unwatched_roots(self) -> tuple[str, ...]:
        """The roots not watched now (missing, or the observer refused them)."""
        with self._cond:
            return tuple(sorted(self._unwatched))

    def check_roots(self) -> None:
        """Have the worker look at every root again (a stat each; nothing more while each is
        the folder it watches).

        Call it now and then (the service does every 10 s): the fallback for a root whose
        parent cannot tell that it appeared (the parent is missing too, or a share is mounted),
        and for a root whose symlink's target was renamed away or replaced.
        """
        with self._cond:
            # Watched roots too (one stat each): a root whose symlink's target was renamed away
            # or replaced tells its watch nothing. Not those the observer refused: retrying
            # them would warn every time.
            due = [
                path for path in self._root_paths if self._unwatched.get(path, MISSING) == MISSING
            ]
            if due:
                self._roots_to_check.update(due)
                self._cond.notify()

    # -- roots: watched as they are now (worker thread, and start()) ------------------------

    def _reconcile_root(self, path: str) -> bool:
        """Watch the root as it is now, and its parent for news of it; True if it came back."""
        with self._watch_lock:
            observer = self._observer
            if observer is None:
                return False  # stopping
            self._watch_parent(observer, os.path.dirname(path))
            identity = _identity(path)
            current = self._watched.get(path)
            if current is not None:
                if current.identity == identity:
                    return False
                _unschedule(observer, current.watch)  # its folder is gone or replaced
                del self._watched[path]
            if identity is None:
                if current is not None:
                    self._note_dir_gone(path)  # removed or renamed away (its events may be lost)
                self._set_unwatched(path, MISSING, was_watched=current is not None)
                return False
            return self._watch_root(observer, path, identity, replaced=current is not None)

    def _watch_root(
        self, observer: BaseObserver, path: str, identity: Identity, *, replaced: bool
    ) -> bool:
        root = _Root.of(path)
        handler = _EventHandler(functools.partial(self._on_event, root), self._note_lost_events)
        try:
            watch = observer.schedule(handler, root.watched, recursive=True)
        except OSError as exc:
            log.warning("cannot watch article folder %s: %s%s", path, exc, _limit_hint(exc))
            self._note_lost_events(f"cannot watch {path}")
            self._set_unwatched(path, f"cannot watch: {exc}", was_watched=replaced)
            return False
        self._watched[path] = _Watched(identity, watch)
        with self._cond:
            was_unwatched = self._unwatched.pop(path, None) is not None
        if replaced:
            log.info("article folder %s was replaced; watching the new one", path)
        elif was_unwatched:
            log.info("article folder %s is there (again); watched from now on", path)
        return replaced or was_unwatched

    def _set_unwatched(self, path: str, why: str, *, was_watched: bool) -> None:
        with self._cond:
            known = self._unwatched.get(path)
            self._unwatched[path] = why
        if why != MISSING or known == MISSING:
            return
        if was_watched:
            log.warning("article folder %s is gone; watched again once it reappears", path)
        else:
            log.warning(
                "article folder %s does not exist or is not a folder; watched once it appears", path
            )

    def _watch_parent(self, observer: BaseObserver, parent: str) -> None:
        """Watch ``parent`` (not recursively) for its roots' names, unless already watched."""
        identity = _identity(parent)
        current = self._parents.pop(parent, None)
        if current is not None and current.identity == identity:
            self._parents[parent] = current
            return
        if current is not None:
            _unschedule(observer, current.watch)
        if identity is None:
            return
        names = {os.path.basename(p): p for p in self._root_paths if os.path.dirname(p) == parent}
        real = os.path.realpath(parent)
        on_event = functools.partial(self._on_parent_event, real, names)
        handler = _EventHandler(on_event, self._note_lost_events)
        try:
            watch = observer.schedule(handler, real, recursive=False, event_filter=PARENT_EVENTS)
        except OSError as exc:  # check_roots() still finds its roots
            log.debug("cannot watch %s for article folders appearing: %s", parent, exc)
            return
        self._parents[parent] = _Watched(identity, watch)

    def _check_roots(self, paths: Iterable[str]) -> None:
        back = [path for path in sorted(paths) if self._reconcile_root(path)]
        for path in back:
            with self._cond:
                if self._shutting_down:
                    return
            if self._on_root_back is not None:
                self._on_root_back(path)

    # -- observer thread: record events -----------------------------------------------------

    def _on_parent_event(self, parent: str, names: dict[str, str], event: FileSystemEvent) -> None:
        """An entry of a root's parent changed: if it is a root's, look at that root again."""
        for raw in (event.src_path, event.dest_path):
            path = os.fsdecode(raw)
            if path and os.path.dirname(path) == parent and os.path.basename(path) in names:
                self._request_root_check(names[os.path.basename(path)])

    def _on_event(self, root: _Root, event: FileSystemEvent) -> None:
        kind = event.event_type
        if event.is_directory:
            self._on_dir_event(root, event, kind)
            return
        if kind in (EVENT_TYPE_CREATED, EVENT_TYPE_MODIFIED):
            path = self._accepted_file(root, event.src_path)
            if path is not None:
                created, written = kind == EVENT_TYPE_CREATED, kind == EVENT_TYPE_MODIFIED
                self._note_change(path, created=created, complete=False, written=written)
        elif kind == EVENT_TYPE_CLOSED:
            path = self._accepted_file(root, event.src_path)
            if path is not None:
                self._note_closed(path)
        elif kind == EVENT_TYPE_DELETED:
            path = self._accepted_file(root, event.src_path)
            if path is not None:
                self._note_gone(path)
        elif kind == EVENT_TYPE_MOVED:
            self._on_file_moved(root, event)
        # opened, closed without writing and attribute changes leave the content as it was

    def _on_file_moved(self, root: _Root, event: FileSystemEvent) -> None:
        source = self._accepted_file(root, event.src_path) if event.src_path else None
        if event.is_synthetic and source is not None:
            return  # below a folder renamed within the root: the walk of its new name has it
        if source is not None:
            self._note_gone(source)
        target = self._accepted_file(root, event.dest_path) if event.dest_path else None
        if target is not None:
            # Renaming into place is how writers publish a finished file; the rename may also
            # replace a file downstream knows, so the target never counts as new.
            self._note_change(target, created=False, complete=True)

    def _on_dir_event(self, root: _Root, event: FileSystemEvent, kind: str) -> None:
        if kind == EVENT_TYPE_MODIFIED or event.is_synthetic:
            return  # synthetic events describe a subtree already covered by its top directory
        source = target = None
        if kind in (EVENT_TYPE_DELETED, EVENT_TYPE_MOVED):
            source = self._visible_dir(root, event.src_path)
        if kind in (EVENT_TYPE_CREATED, EVENT_TYPE_MOVED):
            target_path = event.dest_path if kind == EVENT_TYPE_MOVED else event.src_path
            target = self._visible_dir(root, target_path)
        if source is not None and target is not None:
            self._request_walk(target, moved_from=source)  # renamed within the root
            return
        if source is not None:
            self._note_dir_gone(source)
            if source == root.path:
                self._request_root_check(root.path)
        if target is not None:
            self._request_walk(target)

    def _accepted_file(self, root: _Root, raw_path: bytes | str) -> str | None:
        path = root.reported_path(os.fsdecode(raw_path))
        if path is None or root.is_hidden(path, check_last=False) or not self._accept(path):
            return None
        return path

    @staticmethod
    def _visible_dir(root: _Root, raw_path: bytes | str) -> str | None:
        path = root.reported_path(os.fsdecode(raw_path))
        # a folder whose name is not UTF-8 holds no accepted file (see ``scan.is_utf8``)
        if path is None or root.is_hidden(path, check_last=True) or not is_utf8(path):
            return None
        return path

    def _note_change(
        self, path: str, *, created: bool, complete: bool, written: bool = False
    ) -> None:
        with self._cond:
            now = time.monotonic()
            entry = self._changes.get(path)
            if entry is None:
                entry = self._new_entry_locked(path, created, now)
                if entry is None:
                    return
            entry.version += 1
            entry.complete = complete
            if written and self._close_wait is not None:
                entry.close_by = now + self._close_wait
            entry.signature = None
            entry.recheck_at = now
            self._mark_activity_locked(path, now)

    def _note_discovered(self, path: str) -> None:
        """A file found by walking a new directory: a change unless events already track it."""
        with self._cond:
            if path in self._changes:
                return
            now = time.monotonic()
            if self._new_entry_locked(path, True, now) is not None:
                self._mark_activity_locked(path, now)

    def _new_entry_locked(self, path: str, created: bool, now: float) -> _PendingChange | None:
        if len(self._changes) >= self._pending_limit:
            self._set_overflowed_locked(f"more than {self._pending_limit} files waiting to settle")
            return None
        known_before = path in self._gone  # deleted, then re-created: downstream knows it
        self._gone.discard(path)
        entry = _PendingChange(first_seen=now, is_new=created and not known_before)
        self._changes[path] = entry
        return entry

    def _note_closed(self, path: str) -> None:
        with self._cond:
            entry = self._changes.get(path)
            if entry is None:
                return  # nothing written since we last looked (or the file is already gone)
            now = time.monotonic()
            entry.version += 1
            entry.complete = True
            entry.recheck_at = now
            self._mark_activity_locked(path, now)

    def _note_gone(self, path: str) -> None:
        with self._cond:
            entry = self._changes.pop(path, None)
            if entry is None or not entry.is_new:
                self._gone.add(path)
            self._mark_activity_locked(path, time.monotonic())

    def _note_dir_gone(self, path: str) -> None:
        # Pending files below it need no special care: they are found missing when checked.
        with self._cond:
            self._gone_dirs.add(path)
            self._mark_activity_locked(path, time.monotonic())

    def _note_dir_moved(self, source: str, target: str, files: Iterable[str]) -> None:
        """A folder renamed within a root: its old paths go when the files below its new name
        arrive, in the same batch; those are complete (a rename writes nothing)."""
        with self._cond:
            now = time.monotonic()
            self._gone_dirs.add(source)
            self._moved_to.add(target)
            self._mark_activity_locked(source, now)
            for path in files:
                if path in self._changes:
                    continue  # written since the rename: its own events decide
                entry = self._new_entry_locked(path, True, now)
                if entry is None:
                    return
                entry.version += 1
                entry.complete = True
                entry.recheck_at = now
                self._mark_activity_locked(path, now)

    def _request_walk(self, path: str, moved_from: str | None = None) -> None:
        with self._cond:
            self._dirs_to_walk.append((path, moved_from))
            self._cond.notify()

    def _request_root_check(self, path: str) -> None:
        with self._cond:
            self._roots_to_check.add(path)
            self._cond.notify()

    def _mark_activity_locked(self, path: str, now: float) -> None:
        self._last_event_at = now
        self._fresh.add(path)
        entry = self._changes.get(path)
        complete = entry is not None and entry.complete  # closed after writing, or renamed in
        if complete:
            self._fresh_complete.add(path)
            self._last_complete_at = now
        else:
            self._fresh_complete.discard(path)
        if self._burst_started is None:
            self._burst_started = now
            self._cond.notify()
        elif len(self._fresh) == self._max_batch:
            self._cond.notify()
        elif complete and self._complete_quiet < self._debounce:
            self._cond.notify()  # the wake-up time just moved earlier

    def _note_lost_events(self, reason: str) -> None:
        with self._cond:
            self._set_overflowed_locked(reason)

    def _set_overflowed_locked(self, reason: str) -> None:
        if self._shutting_down:
            return  # shutdown races in watchdog are logged, but nothing is lost that matters
        if not self._overflowed:
            log.warning("file events may have been lost (%s); a rescan is needed", reason)
        self._overflowed = True

    def _observer_died_locked(self) -> bool:
        observer = self._observer
        return observer is not None and not self._shutting_down and not observer.is_alive()

    # -- worker thread: decide, check, deliver ----------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._wait_for_work_locked():
                    break
                roots, self._roots_to_check = self._roots_to_check, set()
                dirs, self._dirs_to_walk = self._dirs_to_walk, []
            try:
                if roots:
                    self._check_roots(roots)
                if dirs:
                    self._walk(dirs)
                if not roots and not dirs:
                    self._deliver(self._collect(final=False))
            except Exception:
                log.exception("file watcher worker failed; carrying on")
                self._note_lost_events("the worker failed")
        self._deliver(self._collect(final=True))

    def _wait_for_work_locked(self) -> bool:
        """Sleep until there is work; False once stopping. No timeout when there is nothing."""
        while not self._stopping:
            now = time.monotonic()
            wake_at = self._wake_time_locked(now)
            if wake_at is not None and wake_at <= now:
                return True
            self._cond.wait(None if wake_at is None else wake_at - now)
        return False

    def _wake_time_locked(self, now: float) -> float | None:
        if self._dirs_to_walk or self._roots_to_check:
            return now
        if self._burst_started is not None:
            if len(self._fresh) >= self._max_batch:
                return now
            quiet_at = self._last_event_at + self._debounce
            if self._fresh_complete:
                # Complete files need no more than a short lull, even while others are still
                # being written: those are only stat()ed then, and wait to settle or close.
                quiet_at = min(quiet_at, self._last_complete_at + self._complete_quiet)
            return min(quiet_at, self._burst_started + MAX_BURST_DELAY)
        return self._next_recheck

    def _walk(self, dirs: Sequence[tuple[str, str | None]]) -> None:
        """Surface the files of directories created, moved in or renamed (their own events may
        be lost). Renamed ones go first: their files are complete, not merely discovered."""
        for target, source in dirs:
            if source is not None:
                self._note_dir_moved(source, target, list(self._files_below(target)))
        for top in _outermost(target for target, source in dirs if source is None):
            for path in self._files_below(top):
                self._note_discovered(path)

    def _files_below(self, top: str) -> Iterator[str]:
        for folder, subdirs, files in os.walk(top):
            subdirs[:] = [name for name in subdirs if not name.startswith(".")]
            for name in files:
                path = os.path.join(folder, name)
                if self._accept(path):
                    yield path

    def _collect(self, *, final: bool) -> list[Batch]:
        """Check the changes that are due and take everything ready to be emitted."""
        checked_at = time.monotonic()
        with self._cond:
            due = [
                (path, entry.version)
                for path, entry in self._changes.items()
                if final or entry.recheck_at <= checked_at
            ]
            self._burst_started = None
            self._fresh.clear()
            self._fresh_complete.clear()
        signatures = [_signature(path) for path, _ in due]  # slow part, outside the lock
        with self._cond:
            changed: list[str] = []
            for (path, version), signature in zip(due, signatures, strict=True):
                entry = self._changes.get(path)
                if entry is None or entry.version != version:
                    continue  # an event came in meanwhile; it is looked at again later
                verdict = self._judge(path, entry, signature, checked_at)
                if verdict is _Verdict.READY:
                    del self._changes[path]
                    changed.append(path)
                elif verdict is _Verdict.VANISHED:
                    del self._changes[path]
                    if not entry.is_new:
                        self._gone.add(path)
            gone, self._gone = self._gone, set()
            gone_dirs, self._gone_dirs = self._gone_dirs, set()
            moved_to, self._moved_to = self._moved_to, set()
            self._next_recheck = min((e.recheck_at for e in self._changes.values()), default=None)
        return self._split(changed, sorted(gone), gone_dirs, moved_to)

    def _judge(
        self, path: str, entry: _PendingChange, signature: Signature | None, now: float
    ) -> _Verdict:
        if signature is None:
            return _Verdict.VANISHED
        if entry.complete:
            return _Verdict.READY
        settled = signature == entry.signature and now - entry.stable_since >= self._settle
        if signature != entry.signature:
            entry.signature = signature
            entry.stable_since = now
        close_by = self._awaited_close(path, entry, now)
        if settled and close_by is None:
            return _Verdict.READY
        give_up_at = entry.first_seen + MAX_SETTLE_WAIT
        if now >= give_up_at:
            log.info("%s kept changing for %.0f s; emitted anyway", path, MAX_SETTLE_WAIT)
            return _Verdict.READY
        ready_at = entry.stable_since + self._settle if close_by is None else close_by
        entry.recheck_at = min(ready_at, give_up_at)
        return _Verdict.WAIT

    def _awaited_close(self, path: str, entry: _PendingChange, now: float) -> float | None:
        """Until when the file still waits for its writer's close; None once the settle rule
        decides (no write seen through a handle, or the wait is over: logged once)."""
        if entry.close_by is None or now < entry.close_by:
            return entry.close_by
        entry.close_by = None
        log.info(
            "%s: no close %.0f s after its last write; taken once its size and mtime stay the "
            "same for %g s",
            path, self._close_wait, self._settle,
        )  # fmt: skip
        return None

    def _split(
        self, changed: list[str], gone: list[str], gone_dirs: set[str], moved_to: set[str]
    ) -> list[Batch]:
        """Batches of at most max_batch paths; gone_dirs and gone come first, as applied. The
        files below renamed folders all join the first batch, with their old names in
        gone_dirs: split off, they would be missing for a moment."""
        below = tuple(os.path.join(folder, "") for folder in moved_to)
        moved = [path for path in changed if path.startswith(below)]
        paths = [(path, True) for path in gone]
        paths += [(path, False) for path in changed if not path.startswith(below)]
        room = max(0, self._max_batch - len(moved))
        chunks = [paths[:room]]
        chunks += [paths[i : i + self._max_batch] for i in range(room, len(paths), self._max_batch)]
        batches: list[Batch] = []
        for n, chunk in enumerate(chunks):
            batch = Batch(
                changed=frozenset([*(moved if n == 0 else ()), *(p for p, g in chunk if not g)]),
                gone=frozenset(path for path, is_gone in chunk if is_gone),
                gone_dirs=frozenset(gone_dirs) if n == 0 else frozenset(),
            )
            if batch.changed or batch.gone or batch.gone_dirs:
                batches.append(batch)
        return batches

    def _deliver(self, batches: Iterable[Batch]) -> None:
        for batch in batches:
            try:
                self._on_batch(batch)
            except Exception:
                log.exception(
                    "on_batch failed; %d changed and %d gone paths dropped until the next rescan",
                    len(batch.changed),
                    len(batch.gone),
                )
