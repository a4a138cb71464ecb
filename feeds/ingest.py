"""Apply a batch of processed files to the store: dedupe decisions, topics, dirty feeds.

One call of ``Ingestor.apply`` is one transaction: an item, its files, its fingerprints, its
near-duplicate anchors, its topics, the feeds it dirties and its alert rows are written together
or not at all.

How a file finds its story (first match wins): the same file unchanged; any item that ever had
this exact fingerprint; any item that ever had this body text; for a *new* path, a near-duplicate
story published within the window; the item this path belonged to (an edit); else a new item.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from feeds.classify import TopicMatcher
from feeds.config import DedupeConfig
from feeds.dedupe import Identity, identity, new_item_id, quality
from feeds.errors import ArticleError
from feeds.model import Article, FileStamp, TopicMatch
from feeds.neardup import NO_ANCHORS, Anchors, Shingles, anchors, shingles, similarity
from feeds.store import FileRow, Store
from feeds.store.codec import decode_article, encode_article

log = logging.getLogger("feeds.ingest")
T = TypeVar("T")
HAS_FRONT_MATTER_DATE = 1  # the quality bit set by dedupe.quality
# Recently stored or compared files, kept for near-duplicate checks: canonical texts are small
# (a few KB); shingle sets are not (≈ 100 KB of Python objects per article).
TEXT_CACHE = 1024
SHINGLE_CACHE = 64
MIN_SHARED_ANCHORS = 3  # a candidate shares this many sampled runs (or the title)
MAX_ANCHOR_POSTINGS = 8  # an anchor held by more stories is a common phrase: skipped


@dataclass(frozen=True, slots=True)
class ItemEvent:
    """Something that happened to an item in a batch (alerts subscribe to these)."""

    kind: str  # "item.new" | "item.updated"
    item_id: str
    article: Article
    topics: tuple[TopicMatch, ...]


@dataclass(frozen=True, slots=True)
class Analysis:
    """The pure per-file work before ingest; done in worker processes for big batches."""

    identity: Identity
    anchors: Anchors
    topics: tuple[TopicMatch, ...]
    blob: bytes  # the article as stored


def analyze(article: Article, topics: TopicMatcher, near: bool = True) -> Analysis:
    ident = identity(article)
    keys = anchors(ident) if near else NO_ANCHORS
    return Analysis(ident, keys, topics.match_article(article), encode_article(article))


@dataclass(frozen=True, slots=True)
class Processed:
    """One file after parse + normalize (+ its analysis, where the work is parallel)."""

    stamp: FileStamp
    result: Article | ArticleError
    analysis: Analysis | None = None


@dataclass(slots=True)
class BatchReport:
    seen: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    merged: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    events: int = 0  # item events emitted (alert sinks got them; a build may emit 100,000)

    def add(self, other: BatchReport) -> None:
        for name in ("seen", "new", "updated", "unchanged", "removed", "merged", "events"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejected.extend(other.rejected)


EventSink = Callable[[Store, ItemEvent], None]


@dataclass(frozen=True, slots=True)
class _Placement:
    item_id: str
    created: bool
    near_score: float | None = None


class Ingestor:
    def __init__(
        self,
        store: Store,
        topics: TopicMatcher,
        *,
        keep_deleted: bool = False,
        dedupe: DedupeConfig | None = None,
        on_event: EventSink | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.topics = topics
        self.keep_deleted = keep_deleted
        self.dedupe = dedupe or DedupeConfig()
        self.on_event = on_event
        self.now = now
        # After a config change every file is re-read: unchanged stories still need their
        # stored article, topics and feeds brought up to date with the new rules.
        self.refresh_unchanged = False
        # Articles of this batch, by path: a representative that was just read is not decoded.
        self._fresh: dict[str, tuple[Article, tuple[TopicMatch, ...]]] = {}
        # Shingles of recently compared files: candidates for the next near-duplicate checks.
        self._texts: _Recent[Identity] = _Recent(TEXT_CACHE)
        self._shingles: _Recent[Shingles] = _Recent(SHINGLE_CACHE)

    def apply(self, processed: Sequence[Processed], gone: Sequence[str]) -> BatchReport:
        report = BatchReport()
        try:
            with self.store.transaction():
                for item in processed:
                    report.seen += 1
                    if isinstance(item.result, ArticleError):
                        self._reject(item.stamp, item.result, report)
                    else:
                        self._accept(item.stamp, item.result, item.analysis, report)
                for path in gone:
                    self._forget(path, report)
        finally:
            self._fresh.clear()
        return report

    # -- one file --------------------------------------------------------------------------

    def _reject(self, stamp: FileStamp, error: ArticleError, report: BatchReport) -> None:
        report.rejected.append((error.path, error.reason))
        if self.store.record_error(
            error.path, error.reason, stamp.size, stamp.mtime_ns, self.now()
        ):
            log.warning("rejected %s: %s", error.path, error.reason)

    def _accept(
        self, stamp: FileStamp, article: Article, done: Analysis | None, report: BatchReport
    ) -> None:
        self.store.clear_error(stamp.path)
        done = done or analyze(article, self.topics, self.dedupe.near)
        self._fresh[stamp.path] = (article, done.topics)
        fp = done.identity.fingerprint
        old = self.store.file(stamp.path)
        if old is not None and old.fingerprint == fp:
            self._unchanged(stamp, article, old, done, report)
            return
        place = self._place(article, done, old)
        joined_other = self._joins_live_item(place.item_id, old)
        self._store_file(stamp, article, place, done)
        if old is not None and old.item_id != place.item_id:
            self._refresh(old.item_id, report)
        edited = old is not None and old.item_id == place.item_id
        kind = self._refresh(place.item_id, report, edited=edited, created=place.created)
        if place.created:
            report.new += 1
        elif joined_other:
            report.merged += 1
        elif kind == "item.updated":
            report.updated += 1
        else:
            report.unchanged += 1

    def _unchanged(
        self, stamp: FileStamp, article: Article, old: FileRow, done: Analysis, report: BatchReport
    ) -> None:
        if self.refresh_unchanged:
            place = _Placement(old.item_id, False, old.near_score)
            self._store_file(stamp, article, place, done)
        else:
            self.store.touch_file(stamp.path, stamp.size, stamp.mtime_ns)
        if self.refresh_unchanged or not old.present:
            self._refresh(old.item_id, report)
        report.unchanged += 1

    def _place(self, article: Article, done: Analysis, old: FileRow | None) -> _Placement:
        """Which story this content belongs to (see the module docstring for the order)."""
        fp, key = done.identity.fingerprint, done.identity.body_key
        owner = self.store.owner_of_fingerprint(fp) or (key and self.store.owner_of_body_key(key))
        if owner:
            return _Placement(owner, False)
        if old is None and self.dedupe.near:
            near = self._near_story(article, done)
            if near is not None:
                return near
        if old is not None:
            return _Placement(old.item_id, False)
        return _Placement(new_item_id(fp), True)

    def _near_story(self, article: Article, done: Analysis) -> _Placement | None:
        window = timedelta(hours=self.dedupe.window_hours)
        found = self.store.items_by_anchors(
            done.anchors.runs,
            () if done.anchors.title is None else (done.anchors.title,),
            (article.published - window, article.published + window),
            min_shared=MIN_SHARED_ANCHORS,
            max_postings=MAX_ANCHOR_POSTINGS,
            limit=self.dedupe.max_candidates,
        )
        if not found:
            return None
        sh = shingles(done.identity)
        best: tuple[float, str] | None = None
        for item_id in found:
            score = max((self._similarity(m, sh) for m in self._live(item_id)), default=0.0)
            if score >= self.dedupe.threshold and (best is None or score > best[0]):
                best = (score, item_id)
        return None if best is None else _Placement(best[1], False, round(best[0], 4))

    def _similarity(self, member: FileRow, sh: Shingles) -> float:
        cached = self._shingles.get(member.path)
        if cached is None:
            ident = self._texts.get(member.path)
            if ident is None:
                blob = self.store.file_article(member.path)
                if blob is None:
                    return 0.0
                ident = identity(decode_article(blob))
            cached = shingles(ident)
            self._shingles.put(member.path, cached)
        return similarity(sh, cached)

    def _live(self, item_id: str) -> list[FileRow]:
        return [m for m in self.store.members(item_id) if m.present]

    def _store_file(
        self, stamp: FileStamp, article: Article, place: _Placement, done: Analysis
    ) -> None:
        fp, key = done.identity.fingerprint, done.identity.body_key
        row = FileRow(
            stamp.path, stamp.size, stamp.mtime_ns, True, place.item_id, fp, quality(article),
            article.source_slug, article.source_name, article.published, place.near_score,
        )  # fmt: skip
        self.store.put_file(row, body_key=key, article=done.blob)
        self._shingles.pop(stamp.path)  # derived from the content this replaces
        if self.dedupe.near:
            self._texts.put(stamp.path, done.identity)
        self.store.remember_keys(place.item_id, fp, key)
        if self.dedupe.near:
            self.store.add_anchors(place.item_id, done.anchors.all)

    def _joins_live_item(self, item_id: str, old: FileRow | None) -> bool:
        return any(old is None or m.path != old.path for m in self._live(item_id))

    def _forget(self, path: str, report: BatchReport) -> None:
        self.store.clear_error(path)
        old = self.store.file(path)
        if old is None:
            return
        if self.keep_deleted:
            self.store.tombstone_file(path)
            return
        self.store.delete_file(path)
        self._refresh(old.item_id, report)

    # -- one item --------------------------------------------------------------------------

    def _refresh(
        self, item_id: str, report: BatchReport, *, edited: bool = False, created: bool = False
    ) -> str | None:
        """Re-derive an item from its member files; returns the event kind, if any."""
        previous = self.store.item(item_id)
        members = self.store.members(item_id)
        old_topics = {m.topic for m in self.store.topics_of(item_id)} if previous else set()
        dirty = {"all"} | {f"topic:{t}" for t in old_topics}
        dirty |= {f"source:{m.source_slug}" for m in members}
        if previous is not None:
            dirty.add(f"source:{previous.source_slug}")
        if not members:
            if previous is not None and not previous.removed:
                self.store.remove_item(item_id, self.now())
                report.removed += 1
                self.store.mark_dirty(dirty)
            return None
        rep = max(members, key=lambda m: (m.present, m.quality, m.mtime_ns, m.path))
        article, topics = self._representative(rep.path)
        updated = article.updated or article.published
        kind: str | None = "item.new" if created else None
        if previous is not None:
            changed = previous.fingerprint != rep.fingerprint or edited
            updated = (
                self._moved_updated(previous.updated, rep, article)
                if changed
                else (previous.updated)
            )
            kind = "item.updated" if changed and edited and not previous.removed else None
        self.store.save_item(
            item_id,
            rep_path=rep.path,
            fingerprint=rep.fingerprint,
            published=_earliest(members, article.published),
            updated=updated,
            source_slug=article.source_slug,
            title=article.title,
            link=article.link,
            first_seen=self.now(),
        )
        self.store.set_topics(item_id, topics)
        dirty |= {f"topic:{m.topic}" for m in topics} | {f"source:{article.source_slug}"}
        self.store.mark_dirty(dirty)
        if kind is not None:
            self._emit(ItemEvent(kind, item_id, article, tuple(topics)), report)
        return kind

    def _representative(self, path: str) -> tuple[Article, tuple[TopicMatch, ...]]:
        if path in self._fresh:
            return self._fresh[path]
        blob = self.store.file_article(path)
        assert blob is not None
        article = decode_article(blob)
        return article, self.topics.match_article(article)

    @staticmethod
    def _moved_updated(previous: datetime, rep: FileRow, article: Article) -> datetime:
        """An edit moves ``updated`` forward: to the file's mtime, and never backwards."""
        edited = article.updated or datetime.fromtimestamp(rep.mtime_ns // 1_000_000_000, UTC)
        return max(edited, previous + timedelta(seconds=1))

    def _emit(self, event: ItemEvent, report: BatchReport) -> None:
        if self.refresh_unchanged and event.kind == "item.updated":
            return  # a config change re-read everything: new rules are not news
        report.events += 1
        if self.on_event is not None:
            self.on_event(self.store, event)


class _Recent(Generic[T]):
    """A small least-recently-used map from file paths."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, T] = OrderedDict()

    def get(self, path: str) -> T | None:
        found = self._entries.get(path)
        if found is not None:
            self._entries.move_to_end(path)
        return found

    def put(self, path: str, value: T) -> None:
        self._entries[path] = value
        self._entries.move_to_end(path)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def pop(self, path: str) -> None:
        self._entries.pop(path, None)


def _earliest(members: Sequence[FileRow], fallback: datetime) -> datetime:
    """A story was published when its first outlet published it (real dates only)."""
    dated = [m.published for m in members if m.present and m.quality & HAS_FRONT_MATTER_DATE]
    return min(dated, default=fallback)
