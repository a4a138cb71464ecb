"""The orchestrator: scan -> parse -> normalize -> ingest (dedupe, classify, store) -> render.

It holds no format knowledge: each stage lives in its own module. Parsing and normalizing are
pure per file, so large batches fan out to worker processes; everything that touches the store
happens here, in this process, one transaction per chunk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import chain, islice
from multiprocessing import get_context

from feeds.classify import OUTLET_SLUGS_VERSION, TopicMatcher
from feeds.config import Config
from feeds.dedupe import FINGERPRINT_VERSION, REPRESENTATIVE_VERSION
from feeds.errors import ArticleError, IdentityGuardError
from feeds.ingest import BatchReport, EventSink, Ingestor, Parsed, Processed, analyze
from feeds.model import Article, FileStamp
from feeds.neardup import ANCHOR_VERSION
from feeds.normalize import READ_VERSION, NormalizeRules, normalize
from feeds.outputs import RenderReport, render_feeds, warm_caches
from feeds.parse import RETRIED_REASONS, parse_file
from feeds.scan import ScanDiff, every_path, make_filter, scan_changes
from feeds.store import Store

log = logging.getLogger("feeds.pipeline")
# Files per ingest transaction. Every commit writes each page the transaction changed, and the
# anchor index changes at random places: 256 files a commit wrote 340 MB in a 10k build, 1,024
# write 187 MB (commits 0.7-1.0 -> 0.45-0.5 s). A chunk in memory is ~6 KB a file.
CHUNK = 1024
GUARD_MIN_ITEMS = 20  # below this, a re-issue cannot flood anyone
PARALLEL_THRESHOLD = 400
IMPORT_WINDOW = 60  # seconds over which new files count towards alert_bulk_files


def process_file(
    path: str, rules: NormalizeRules, max_bytes: int
) -> tuple[FileStamp, Article | ArticleError]:
    """One file -> (stamp, Article or ArticleError). Never raises for bad input."""
    try:
        raw = parse_file(path, max_bytes)
        stamp = FileStamp(path, raw.size, raw.mtime_ns)
        return stamp, normalize(raw, rules)
    except ArticleError as exc:
        return _stamp_of(path), exc
    except Exception as exc:  # a bug must not stop the batch; the file is reported
        log.exception("unexpected error on %s", path)
        return _stamp_of(path), ArticleError(path, f"internal error: {type(exc).__name__}: {exc}")


def prepare(
    path: str, rules: NormalizeRules, max_bytes: int, topics: TopicMatcher, near: bool
) -> Processed:
    """``process_file`` plus its analysis: all the per-file work that is pure."""
    stamp, result = process_file(path, rules, max_bytes)
    if isinstance(result, ArticleError):
        return Processed(stamp, result)
    return Processed(stamp, Parsed.of(result, analyze(result, topics, near)))


def _stamp_of(path: str) -> FileStamp:
    try:
        info = os.stat(path)
    except OSError:
        return FileStamp(path, -1, -1)
    return FileStamp(path, info.st_size, info.st_mtime_ns)


_worker: tuple[NormalizeRules, int, TopicMatcher, bool] | None = None


def _init_worker(config: Config, parent: int) -> None:
    global _worker
    _exit_with(parent)
    rules = NormalizeRules.from_config(config)
    topics = TopicMatcher(config.topics)
    _worker = (rules, config.input.max_file_bytes, topics, config.dedupe.near)


def _exit_with(parent: int) -> None:
    """End this worker when the process that started the pool ends, even by SIGKILL (OOM):
    workers are the forkserver's children, so nothing else would stop them. A thread blocks on a
    pidfd of the parent (no polling); where pidfds are missing (not Linux 5.3+), nothing."""
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:  # gone already
        os._exit(1)
    except (AttributeError, OSError):
        return

    def watch() -> None:
        select.select([pidfd], [], [])
        os._exit(1)

    threading.Thread(target=watch, name="feeds-parent-watch", daemon=True).start()


def _process_in_worker(path: str) -> Processed:
    assert _worker is not None
    return prepare(path, *_worker)


WINDOW = 512  # files submitted to the pool ahead of the ingest: bounds memory, keeps order


def _bounded_map(pool: Executor, paths: Iterable[str]) -> Iterator[Processed]:
    """``pool.map`` over windows, the next one submitted before the current is consumed."""
    source = iter(paths)
    pending = pool.map(_process_in_worker, list(islice(source, WINDOW)), chunksize=16)
    while following := list(islice(source, WINDOW)):
        ahead = pool.map(_process_in_worker, following, chunksize=16)
        yield from pending
        pending = ahead
    yield from pending


@dataclass(slots=True)
class BuildReport:
    batch: BatchReport = field(default_factory=BatchReport)
    render: RenderReport = field(default_factory=RenderReport)
    scanned: int = 0


def config_digest(config: Config, *fields: str) -> str:
    dumped = config.model_dump_json(include=set(fields))
    return hashlib.sha256(dumped.encode()).hexdigest()[:16]


NORMALIZE_FIELDS = (
    "timezone", "language", "feed", "cleanup", "sources", "topics", "input", "dedupe",
)  # fmt: skip
RENDER_FIELDS = ("base_url", "feed", "topics", "language", "websub")
# What stored rows were derived with: rows from other versions are re-derived (every file re-read).
CODE_VERSIONS = (
    f"/fp{FINGERPRINT_VERSION}/anchors{ANCHOR_VERSION}/read{READ_VERSION}"
    f"/rep{REPRESENTATIVE_VERSION}/outlets{OUTLET_SLUGS_VERSION}"
)


class Pipeline:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        workers: int | None = None,
        on_event: EventSink | None = None,
        allow_reissue: bool = False,
        keep_file_index: bool = False,
    ) -> None:
        """``keep_file_index``: keep the store's file index in memory between scans (for a
        service that rescans periodically; a one-off build does not need the memory)."""
        self.config = config
        self.store = store
        self.allow_reissue = allow_reissue
        self.keep_file_index = keep_file_index
        # Seconds: a rescan leaves files modified this recently to the watcher, which waits
        # until they are complete (the service sets it; a one-off build reads everything).
        self.defer_fresh_seconds = 0.0
        self.deferred = 0  # files the last sync left for being fresh
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self.rules = NormalizeRules.from_config(config)
        self.accept = make_filter(config.input, config.articles)
        self.ingestor = Ingestor(
            store,
            TopicMatcher(config.topics),
            keep_deleted=config.feed.keep_deleted,
            dedupe=config.dedupe,
            on_event=on_event,
            configured_slugs=self.rules.sources.configured_slugs,
        )
        self.forced = self._check_config_changes()
        self.ingestor.adopt_stored_outlets()
        self._recent_new: deque[tuple[float, int]] = deque()  # (monotonic time, new files)

    def _normalize_digest(self) -> str:
        return config_digest(self.config, *NORMALIZE_FIELDS) + CODE_VERSIONS

    def _check_config_changes(self) -> bool:
        """A config change that alters items forces a re-read of every file."""
        normalize_digest = self._normalize_digest()
        render_digest = config_digest(self.config, *RENDER_FIELDS)
        forced = self.store.get_meta("normalize_digest") not in (None, normalize_digest)
        if self.store.get_meta("render_digest") != render_digest:
            with self.store.transaction():
                self.store.mark_all_dirty()
                self.store.set_meta("render_digest", render_digest)
        return forced

    # -- scanning --------------------------------------------------------------------------

    def _known_files(self) -> Mapping[str, tuple[int, int]]:
        return self.store.live_file_index() if self.keep_file_index else self.store.file_index()

    def scan(self, known: Mapping[str, tuple[int, int]] | None = None) -> ScanDiff:
        """What changed on disk against ``known`` (default: the store's file index)."""
        known = self._known_files() if known is None else known
        roots, follow = self.config.articles, self.config.input.follow_symlinks
        # A chmod, or descriptors freed again, do not change the stamp: files refused for their
        # permissions or for a lack of descriptors are tried again at every full scan (few; an
        # unchanged rejection is not logged again).
        retry = self.store.rejected_for(RETRIED_REASONS)
        return scan_changes(roots, self.accept, follow, known, reread=self.forced, retry=retry)

    # -- processing ------------------------------------------------------------------------

    def process(self, paths: Iterable[str]) -> Iterator[Processed]:
        source = iter(paths)
        head = list(islice(source, PARALLEL_THRESHOLD))
        if self.workers <= 1 or len(head) < PARALLEL_THRESHOLD:
            limit, near = self.config.input.max_file_bytes, self.config.dedupe.near
            for path in chain(head, source):
                yield prepare(path, self.rules, limit, self.ingestor.topics, near)
            return
        with self._pool() as pool:
            yield from _bounded_map(pool, chain(head, source))

    def _pool(self) -> Executor:
        context = get_context("forkserver")
        # Workers fork from a server that has imported the pipeline already: they start at
        # once (no ~0.7 s import each) and share those pages with each other.
        context.set_forkserver_preload([__name__])
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self.config, os.getpid()),
        )

    def ingest(
        self,
        changed: Iterable[str],
        gone: Sequence[str] = (),
        progress: Callable[[int], None] | None = None,
        *,
        only_missing: bool = False,
        new_files: int | None = None,
    ) -> BatchReport:
        """Process and store changed files, then forget gone ones. Chunked transactions.

        ``only_missing``: forget only the gone paths still missing once the changed files are
        read (the watcher's news can be stale by then: a folder renamed and renamed back while
        its files were read must not leave the feeds for a batch). ``new_files``: how many of
        ``changed`` the store does not know, when the caller has counted them already."""
        if isinstance(changed, Sequence):
            self.ingestor.importing = self._is_import(changed, new_files, len(gone))
        try:
            return self._ingest(changed, gone, progress, only_missing)
        finally:
            self.ingestor.importing = False

    def _is_import(self, changed: Sequence[str], new_files: int | None, gone: int) -> bool:
        """More new files within ``IMPORT_WINDOW`` seconds than ``alert_bulk_files``: an
        archive copied or moved in after the first scan. Its stories are published but alert
        nobody: chat groups would otherwise get every story of the archive. Files that left
        in the same batch are taken off: a folder renamed or moved within the archive brings
        as many new paths as it takes away, and is no import."""
        limit = self.config.alert_bulk_files
        if not limit or not changed:
            return False
        if not self.keep_file_index and len(changed) <= limit:
            return False  # a one-off run: no window to keep, and too few files to matter
        new = self._count_new(changed) if new_files is None else new_files
        new = max(0, new - gone)
        now = time.monotonic()
        recent = self._recent_new
        while recent and recent[0][0] <= now - IMPORT_WINDOW:
            recent.popleft()
        recent.append((now, new))
        arrived = sum(count for _, count in recent)
        if new == 0 or arrived <= limit:
            return False
        # Only worth a warning where there are webhooks to hold back.
        log.log(
            logging.WARNING if self.config.webhooks else logging.INFO,
            "%d new files in %d s: taken as an archive import, their stories send no alerts "
            "(alert_bulk_files = %d)",
            arrived, IMPORT_WINDOW, limit,
        )  # fmt: skip
        return True

    def _count_new(self, paths: Iterable[str], known: Mapping[str, object] | None = None) -> int:
        known = self._known_files() if known is None else known
        return sum(1 for path in paths if path not in known)

    def _ingest(
        self,
        changed: Iterable[str],
        gone: Sequence[str],
        progress: Callable[[int], None] | None,
        only_missing: bool,
    ) -> BatchReport:
        report = BatchReport()
        chunk: list[Processed] = []
        with self.store.bulk_writes():
            for processed in self.process(changed):
                chunk.append(processed)
                if len(chunk) >= CHUNK:
                    report.add(self.ingestor.apply(chunk, ()))
                    if progress:
                        progress(len(chunk))
                    chunk = []
            if only_missing:
                gone = [path for path in gone if not os.path.lexists(path)]
            report.add(self.ingestor.apply(chunk, gone))
        if progress and chunk:
            progress(len(chunk))
        if report.vanished:
            log.info(
                "%d file(s) moved or deleted before they could be read; the next scan settles "
                "them", report.vanished,
            )  # fmt: skip
        return report

    # -- whole runs ------------------------------------------------------------------------

    def sync(
        self, progress_factory: Callable[[int], Callable[[int], None]] | None = None
    ) -> BuildReport:
        """Scan every root, ingest what changed, render what became dirty."""
        self.deferred = 0
        archive_there = self._archive_there()
        known = self._known_files()
        if not known:
            return self._first_build(progress_factory, archive_there)
        scan = self.scan(known)
        changed = [s.path for s in self._settled(scan.changed)]
        new_files = self._count_new(changed, known)  # for the import guard, while it is here
        del known  # not needed during the ingest (≈ 25 MB at 100,000 files)
        gone, unchanged, seen = scan.gone, scan.unchanged, scan.seen
        del scan  # its stamps: ~120 bytes a file, 12 MB for a first build of 100,000
        progress = progress_factory(len(changed)) if progress_factory else None
        self.ingestor.refresh_unchanged = self.forced
        try:
            batch = self._guarded_ingest(changed, gone, progress, new_files)
        finally:
            self.ingestor.refresh_unchanged = False
        batch.unchanged += unchanged
        batch.seen += unchanged
        self._after_full_scan(archive_there)
        return BuildReport(batch=batch, render=self.render(), scanned=seen)

    def _settled(self, stamps: Sequence[FileStamp]) -> Sequence[FileStamp]:
        """``stamps`` less the files modified within ``defer_fresh_seconds``: a file a slow
        writer is still writing would be published (and alerted) half written. The watcher
        sees its writes end; a later rescan reads it if the watcher missed them."""
        if not self.defer_fresh_seconds:
            return stamps
        now = time.time_ns()
        since = now - int(self.defer_fresh_seconds * 1e9)
        settled = [s for s in stamps if not since < s.mtime_ns <= now]
        self.deferred = len(stamps) - len(settled)
        if self.deferred:
            log.debug("%d file(s) still being written: left to the watcher", self.deferred)
        return settled

    def _first_build(
        self,
        progress_factory: Callable[[int], Callable[[int], None]] | None,
        archive_there: bool,
    ) -> BuildReport:
        """Nothing known yet: every file is new, none is gone, so files are ingested as the walk
        lists them (memory stays flat however large the archive; a progress bar costs one more
        walk, stat only, to count them)."""
        roots, follow = self.config.articles, self.config.input.follow_symlinks
        total = sum(1 for _ in every_path(roots, self.accept, follow)) if progress_factory else 0
        progress = progress_factory(total) if progress_factory else None
        self.ingestor.unseen_paths = not self.store.has_files()
        try:
            batch = self.ingest(every_path(roots, self.accept, follow), (), progress)
        finally:
            self.ingestor.unseen_paths = False
        self._after_full_scan(archive_there)
        return BuildReport(batch=batch, render=self.render(), scanned=batch.seen)

    def _guarded_ingest(
        self,
        changed: list[str],
        gone: Sequence[str],
        progress: Callable[[int], None] | None,
        new_files: int,
    ) -> BatchReport:
        """Ingest; when files disappeared, all in one transaction that the identity guard can
        roll back: stories vanishing while as many new ones appear means ids would change."""
        existing = self.store.count_items()
        if not gone or self.allow_reissue or existing < GUARD_MIN_ITEMS:
            return self.ingest(changed, gone, progress, new_files=new_files)
        with self.store.transaction():
            batch = self.ingest(changed, gone, progress, new_files=new_files)
            self._check_identity(batch, existing)
        return batch

    def _check_identity(self, batch: BatchReport, existing: int) -> None:
        reissued = min(batch.new, batch.removed)
        limit = self.config.dedupe.max_reissue_share
        if reissued > limit * existing:
            raise IdentityGuardError(
                f"refusing to re-issue ids: this run would replace {reissued} of {existing} "
                f"stories by new ones ({reissued / existing:.0%} > dedupe.max_reissue_share "
                f"{limit:.0%}), and feed readers would show them all again as new. Nothing was "
                "changed. Check the article folders and the config; if this is intended, run "
                "with --allow-reissue."
            )

    def _after_full_scan(self, archive_there: bool) -> None:
        with self.store.transaction():
            self.store.set_meta("normalize_digest", self._normalize_digest())
            if archive_there:
                self.store.set_meta("initialized", "1")
        self.forced = False

    def _archive_there(self) -> bool:
        """Whether any article folder exists (checked before a scan): a scan while none does (a
        share not mounted yet) has not seen the archive, so it does not end the backfill, and
        the archive arriving later does not alert for every story in it."""
        return any(root.is_dir() for root in self.config.articles)

    def render(self) -> RenderReport:
        return render_feeds(self.store, self.config)

    def warm(self) -> None:
        """Fill the render caches (a long-running service does it once, after catching up),
        and resolve every outlet already stored: the next article from an outlet that is not
        configured would otherwise pay for loading the pinyin tables (≈ 0.25 s) itself."""
        warm_caches(self.store, self.config)
        for name in self.store.sources().values():
            self.rules.sources.resolve(name)

    @property
    def backfilling(self) -> bool:
        """True until the first full scan of the archive has been stored."""
        return self.store.get_meta("initialized") is None
