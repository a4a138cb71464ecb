"""Apply a batch of processed files to the store: dedupe decisions, topics, dirty feeds.

One call of ``Ingestor.apply`` is one transaction: an item, its files, its fingerprints, its
topics, the feeds it dirties and its alert rows are written together or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from feeds.classify import TopicMatcher
from feeds.dedupe import body_key, fingerprint, new_item_id, quality
from feeds.errors import ArticleError
from feeds.model import Article, FileStamp, TopicMatch
from feeds.store import FileRow, Store
from feeds.store.codec import decode_article, encode_article

log = logging.getLogger("feeds.ingest")


@dataclass(frozen=True, slots=True)
class ItemEvent:
    """Something that happened to an item in a batch (alerts subscribe to these)."""

    kind: str  # "item.new" | "item.updated"
    item_id: str
    article: Article
    topics: tuple[TopicMatch, ...]


@dataclass(slots=True)
class BatchReport:
    seen: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    merged: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    events: list[ItemEvent] = field(default_factory=list)

    def add(self, other: BatchReport) -> None:
        for name in ("seen", "new", "updated", "unchanged", "removed", "merged"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejected.extend(other.rejected)
        self.events.extend(other.events)


Processed = tuple[FileStamp, Article | ArticleError]
EventSink = Callable[[Store, ItemEvent], None]


class Ingestor:
    def __init__(
        self,
        store: Store,
        topics: TopicMatcher,
        *,
        keep_deleted: bool = False,
        on_event: EventSink | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.topics = topics
        self.keep_deleted = keep_deleted
        self.on_event = on_event
        self.now = now
        # After a config change every file is re-read: unchanged stories still need their
        # stored article, topics and feeds brought up to date with the new rules.
        self.refresh_unchanged = False

    def apply(self, processed: Sequence[Processed], gone: Sequence[str]) -> BatchReport:
        report = BatchReport()
        with self.store.transaction():
            for stamp, result in processed:
                report.seen += 1
                if isinstance(result, ArticleError):
                    self._reject(stamp, result, report)
                else:
                    self._accept(stamp, result, report)
            for path in gone:
                self._forget(path, report)
        return report

    # -- one file --------------------------------------------------------------------------

    def _reject(self, stamp: FileStamp, error: ArticleError, report: BatchReport) -> None:
        report.rejected.append((error.path, error.reason))
        if self.store.record_error(
            error.path, error.reason, stamp.size, stamp.mtime_ns, self.now()
        ):
            log.warning("rejected %s: %s", error.path, error.reason)

    def _accept(self, stamp: FileStamp, article: Article, report: BatchReport) -> None:
        self.store.clear_error(stamp.path)
        fp, key = fingerprint(article), body_key(article)
        old = self.store.file(stamp.path)
        if old is not None and old.fingerprint == fp:
            if self.refresh_unchanged:
                self._store_file(stamp, article, old.item_id, fp, key)
            else:
                self.store.touch_file(stamp.path, stamp.size, stamp.mtime_ns)
            if self.refresh_unchanged or not old.present:
                self._refresh(old.item_id, report, content_changed=False)
            report.unchanged += 1
            return
        owner = self.store.owner_of_fingerprint(fp) or (key and self.store.owner_of_body_key(key))
        owner = owner or (old.item_id if old is not None else None)
        created = owner is None
        item_id = owner or new_item_id(fp)
        joined_other = self._joins_live_item(item_id, old)
        self._store_file(stamp, article, item_id, fp, key)
        if old is not None and old.item_id != item_id:
            self._refresh(old.item_id, report, content_changed=False)
        kind = self._refresh(item_id, report, content_changed=True, created=created)
        if created:
            report.new += 1
        elif joined_other:
            report.merged += 1
        elif kind == "item.updated":
            report.updated += 1
        else:
            report.unchanged += 1

    def _store_file(
        self, stamp: FileStamp, article: Article, item_id: str, fp: str, key: str | None
    ) -> None:
        row = FileRow(
            stamp.path, stamp.size, stamp.mtime_ns, True, item_id, fp, quality(article),
            article.source_slug, article.source_name,
        )  # fmt: skip
        encoded = encode_article(article)
        self.store.put_file(row, body_key=key, published=article.published, article=encoded)
        self.store.remember_keys(item_id, fp, key)

    def _joins_live_item(self, item_id: str, old: FileRow | None) -> bool:
        members = [m for m in self.store.members(item_id) if m.present]
        return any(old is None or m.path != old.path for m in members)

    def _forget(self, path: str, report: BatchReport) -> None:
        self.store.clear_error(path)
        old = self.store.file(path)
        if old is None:
            return
        if self.keep_deleted:
            self.store.tombstone_file(path)
            return
        self.store.delete_file(path)
        self._refresh(old.item_id, report, content_changed=False)

    # -- one item --------------------------------------------------------------------------

    def _refresh(
        self, item_id: str, report: BatchReport, *, content_changed: bool, created: bool = False
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
        blob = self.store.file_article(rep.path)
        assert blob is not None
        article = decode_article(blob)
        first_seen = self.now()
        updated = article.updated or article.published
        kind: str | None = "item.new" if created else None
        if previous is not None:
            if previous.fingerprint != rep.fingerprint:
                updated = self._moved_updated(previous.updated, rep, article)
                kind = "item.updated" if content_changed and not previous.removed else None
            else:
                updated = previous.updated
        topics = self.topics.match(
            title=article.title,
            summary=article.summary,
            content=article.text,
            source_slug=article.source_slug,
        )
        self.store.save_item(
            item_id,
            rep_path=rep.path,
            fingerprint=rep.fingerprint,
            published=article.published,
            updated=updated,
            source_slug=article.source_slug,
            title=article.title,
            link=article.link,
            first_seen=first_seen,
        )
        self.store.set_topics(item_id, topics)
        dirty |= {f"topic:{m.topic}" for m in topics} | {f"source:{article.source_slug}"}
        self.store.mark_dirty(dirty)
        if kind is not None:
            self._emit(ItemEvent(kind, item_id, article, tuple(topics)), report)
        return kind

    @staticmethod
    def _moved_updated(previous: datetime, rep: FileRow, article: Article) -> datetime:
        """An edit moves ``updated`` forward: to the file's mtime, and never backwards."""
        edited = article.updated or datetime.fromtimestamp(rep.mtime_ns // 1_000_000_000, UTC)
        return max(edited, previous + timedelta(seconds=1))

    def _emit(self, event: ItemEvent, report: BatchReport) -> None:
        if self.refresh_unchanged and event.kind == "item.updated":
            return  # a config change re-read everything: new rules are not news
        report.events.append(event)
        if self.on_event is not None:
            self.on_event(self.store, event)
