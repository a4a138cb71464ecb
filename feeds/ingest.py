"""Apply a batch of processed files to the store: dedupe decisions, topics, dirty feeds.

One call of ``Ingestor.apply`` is one transaction: an item, its files, its fingerprints, its
near-duplicate anchors, its topics, the feeds it dirties and its alert rows are written together
or not at all.

How a file finds its story (first match wins): the same file unchanged; any item that ever had
this exact fingerprint; any item that ever had this body text; the item this path belonged to
(an edit; a file rewritten with another story leaves a story other files still carry); a
near-duplicate story published within the window; else a new item.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from feeds.classify import TopicMatcher, homophone_slug, outlet_key
from feeds.config import DedupeConfig
from feeds.dedupe import Identity, identity, is_complete, new_item_id, quality
from feeds.errors import ArticleError, Unpublished, Vanished
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
class Parsed:
    """A parsed file as the ingest sees it: the fields its decisions read and the analysis.

    ``article`` is kept where the file was parsed in this process. Pickled (a worker's result)
    it is left out, and so is every other field of the article: the ingest needs only these,
    and an item event decodes the article from the stored blob. Pickling is flat (a dataclass's
    default pickling looks up its fields for every object it rebuilds)."""

    title: str
    link: str | None
    published: datetime
    updated: datetime | None
    source_slug: str
    source_name: str
    quality: int
    analysis: Analysis
    article: Article | None = None

    @classmethod
    def of(cls, article: Article, analysis: Analysis) -> Parsed:
        return cls(
            article.title, article.link, article.published, article.updated, article.source_slug,
            article.source_name, quality(article), analysis, article,
        )  # fmt: skip

    def full_article(self) -> Article:
        return self.article if self.article is not None else decode_article(self.analysis.blob)

    def __reduce__(self) -> tuple[Callable[..., Parsed], tuple[object, ...]]:
        done, ident = self.analysis, self.analysis.identity
        topics = tuple((m.topic, m.rule, m.word, m.field) for m in done.topics)
        return _parsed, (
            self.title, self.link, self.published, self.updated, self.source_slug,
            self.source_name, self.quality, ident.fingerprint, ident.body_key, ident.title,
            ident.body, done.anchors.runs, done.anchors.title, topics, done.blob,
        )  # fmt: skip


def _parsed(
    title: str, link: str | None, published: datetime, updated: datetime | None,
    source_slug: str, source_name: str, quality: int, fingerprint: str, body_key: str | None,
    canonical_title: str, canonical_body: str, runs: tuple[int, ...], title_anchor: int | None,
    topics: tuple[tuple[str, str, str, str], ...], blob: bytes,
) -> Parsed:  # fmt: skip
    ident = Identity(fingerprint, body_key, canonical_title, canonical_body)
    matches = tuple(TopicMatch(*m) for m in topics)
    done = Analysis(ident, Anchors(runs, title_anchor), matches, blob)
    return Parsed(title, link, published, updated, source_slug, source_name, quality, done)


@dataclass(frozen=True, slots=True)
class Processed:
    """One file after parse + normalize + analysis (in worker processes for big batches)."""

    stamp: FileStamp
    result: Parsed | ArticleError

    def __reduce__(self) -> tuple[Callable[..., Processed], tuple[object, ...]]:
        return _processed, (self.stamp.path, self.stamp.size, self.stamp.mtime_ns, self.result)


def _processed(path: str, size: int, mtime_ns: int, result: Parsed | ArticleError) -> Processed:
    return Processed(FileStamp(path, size, mtime_ns), result)


@dataclass(slots=True)
class BatchReport:
    seen: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    merged: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    rejected_news: int = 0  # of those, new files or new reasons (not a retry failing again)
    restored: int = 0  # removed items back in the feeds (a file restored, a draft published)
    vanished: int = 0  # files moved or deleted before they were read: left to the next scan
    events: int = 0  # item events emitted (alert sinks got them; a build may emit 100,000)

    def add(self, other: BatchReport) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejected.extend(other.rejected)


_COUNTS = tuple(f.name for f in fields(BatchReport) if f.name != "rejected")  # the int fields
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
        configured_slugs: Collection[str] = frozenset(),
    ) -> None:
        """``configured_slugs``: the slugs of the configured outlets (``[sources]`` and the
        built-in ones); every other outlet claims its slug in the store (``_outlet_slug``)."""
        self.store = store
        self.topics = topics
        self.configured_slugs = frozenset(configured_slugs)
        self.keep_deleted = keep_deleted
        self.dedupe = dedupe or DedupeConfig()
        self.on_event = on_event
        self.now = now
        # After a config change every file is re-read: unchanged stories still need their
        # stored article, topics and feeds brought up to date with the new rules.
        self.refresh_unchanged = False
        # Set by a first build over a store without file rows: every path it applies is new
        # (a walk lists each path once), so no stored row of it is looked up.
        self.unseen_paths = False
        # Set for a batch that is an archive import (``alert_bulk_files``): its new stories
        # are stored and published, but announce nothing.
        self.importing = False
        # Files of this batch, by path: a representative that was just read is not decoded.
        self._fresh: dict[str, Parsed] = {}
        # Items created in this batch: no feed has shown them yet, so a copy joining them
        # (and becoming their representative) is no update of what readers saw.
        self._born: set[str] = set()
        # Written once per batch, at its end: feeds marked dirty, outlets seen (slug -> name).
        self._dirty: set[str] = set()
        self._sources: dict[str, str] = {}
        # Unconfigured outlets' slugs looked up or claimed in this batch: (name, slug) -> slug.
        self._claims: dict[tuple[str, str], str] = {}
        self._errors_possible = True  # False while file_errors is known to be empty
        # Shingles of recently compared files: candidates for the next near-duplicate checks.
        self._texts: _Recent[Identity] = _Recent(TEXT_CACHE)
        self._shingles: _Recent[Shingles] = _Recent(SHINGLE_CACHE)

    def apply(self, processed: Sequence[Processed], gone: Sequence[str]) -> BatchReport:
        report = BatchReport()
        try:
            with self.store.transaction():
                self._errors_possible = self.store.has_errors()
                for item in processed:
                    report.seen += 1
                    if isinstance(item.result, Vanished):
                        report.vanished += 1
                    elif isinstance(item.result, ArticleError):
                        self._reject(item.stamp, item.result, report)
                    else:
                        self._accept(item.stamp, item.result, report)
                for path in gone:
                    self._forget(path, report)
                self.store.save_sources(self._sources)
                self.store.mark_dirty(self._dirty)
        finally:
            self._fresh.clear()
            self._born.clear()
            self._dirty.clear()
            self._sources.clear()
            self._claims.clear()  # a rolled-back claim must not be remembered
        return report

    def adopt_stored_outlets(self) -> None:
        """A state from before outlets claimed their slugs: every unconfigured outlet with a
        feed keeps its slug, claimed under the name its feed shows (where homophones shared a
        feed, the others get their own slug as their files are read again)."""
        if self.store.has_outlet_slugs():
            return
        sources = sorted(self.store.sources().items())
        unconfigured = [(slug, name) for slug, name in sources if slug not in self.configured_slugs]
        if not unconfigured:
            return  # nothing to claim (and no write)
        with self.store.transaction():
            for slug, name in unconfigured:
                key = outlet_key(name)
                if self.store.outlet_slug(key) is None and self.store.slug_claimant(slug) is None:
                    self.store.claim_outlet_slug(key, slug)

    # -- one file --------------------------------------------------------------------------

    def _reject(self, stamp: FileStamp, error: ArticleError, report: BatchReport) -> None:
        report.rejected.append((error.path, error.reason))
        self._errors_possible = True
        unpublished = isinstance(error, Unpublished)
        if unpublished:
            self._withdraw(error.path, report)
        if self.store.record_error(
            error.path, error.reason, stamp.size, stamp.mtime_ns, self.now()
        ):
            report.rejected_news += 1
            (log.info if unpublished else log.warning)("rejected %s: %s", error.path, error.reason)

    def _accept(self, stamp: FileStamp, parsed: Parsed, report: BatchReport) -> None:
        if self._errors_possible:
            self.store.clear_error(stamp.path)
        parsed = self._with_outlet_slug(parsed)
        self._fresh[stamp.path] = parsed
        old = None if self.unseen_paths else self.store.file(stamp.path)
        if old is not None and old.source_slug != parsed.source_slug:
            self._dirty.add(f"source:{old.source_slug}")  # the file left that outlet's feed
        if old is not None and old.fingerprint == parsed.analysis.identity.fingerprint:
            self._unchanged(stamp, parsed, old, report)
            return
        place = self._place(parsed, old)
        # A new item's id comes from a fingerprint never stored: it has no rows yet to look up.
        joined_other = not place.created and self._joins_live_item(place.item_id, old)
        row = self._store_file(stamp, parsed, place, old)
        if old is not None and old.item_id != place.item_id:
            self._refresh(old.item_id, report)
        edited = old is not None and old.item_id == place.item_id
        # Re-read with the same stamp: only the rules changed (a forced re-read), not the story.
        rules_only = old is not None and (old.size, old.mtime_ns) == (stamp.size, stamp.mtime_ns)
        kind = self._refresh(
            place.item_id,
            report,
            edited=edited,
            created=row if place.created else None,
            news=not rules_only,
        )
        if place.created:
            report.new += 1
        elif joined_other:
            report.merged += 1
        elif kind == "item.updated":
            report.updated += 1
        else:
            report.unchanged += 1

    def _with_outlet_slug(self, parsed: Parsed) -> Parsed:
        """The file with its outlet's slug as stored: the worker resolved it from the config
        alone, which cannot tell two unconfigured outlets whose names read the same apart."""
        slug = self._outlet_slug(parsed.source_name, parsed.source_slug)
        if slug == parsed.source_slug:
            return parsed
        article = replace(parsed.full_article(), source_slug=slug)
        topics = tuple(self.topics.match_article(article))  # a topic may name outlets
        done = replace(parsed.analysis, topics=topics, blob=encode_article(article))
        return replace(parsed, source_slug=slug, analysis=done, article=article)

    def _outlet_slug(self, name: str, proposed: str) -> str:
        """A configured outlet's slug is its own. Any other outlet keeps the slug it claimed
        first; a new one claims the slug its name gives unless another outlet holds it (财信网
        after 财新网), then its name's hash after it. The claim is written in this batch's
        transaction, with the files that made it."""
        if proposed in self.configured_slugs:
            return proposed
        found = self._claims.get((name, proposed))
        if found is None:
            found = self._claims[(name, proposed)] = self._claim(name, proposed)
        return found

    def _claim(self, name: str, proposed: str) -> str:
        key = outlet_key(name)
        held = self.store.outlet_slug(key)
        if held is not None and held not in self.configured_slugs:
            return held
        # A slug configured since it was claimed belongs to the configured outlet now. (The last
        # candidate, the name's whole SHA-1, is taken only by a name with the same hash.)
        candidates = [proposed, *(homophone_slug(proposed, name, n) for n in (6, 12, 40))]
        slug = next(
            (c for c in candidates if c not in self.configured_slugs
             and self.store.slug_claimant(c) in (None, key)),
            candidates[-1],
        )  # fmt: skip
        self.store.claim_outlet_slug(key, slug)
        return slug

    def _unchanged(
        self, stamp: FileStamp, parsed: Parsed, old: FileRow, report: BatchReport
    ) -> None:
        if self.refresh_unchanged:
            place = _Placement(old.item_id, False, old.near_score)
            self._store_file(stamp, parsed, place, old)
        else:
            self.store.touch_file(stamp.path, stamp.size, stamp.mtime_ns)
        if self.refresh_unchanged or not old.present:
            self._refresh(old.item_id, report)
        report.unchanged += 1

    def _place(self, parsed: Parsed, old: FileRow | None) -> _Placement:
        """Which story this content belongs to (see the module docstring for the order)."""
        fp, key = parsed.analysis.identity.fingerprint, parsed.analysis.identity.body_key
        owner = self.store.owner_of_fingerprint(fp) or (key and self.store.owner_of_body_key(key))
        if owner:
            return _Placement(owner, False)
        if old is not None and self._still_in_story(parsed, old):
            return _Placement(old.item_id, False)
        if self.dedupe.near:
            near = self._near_story(parsed)
            if near is not None:
                return near
        return _Placement(new_item_id(fp), True)

    def _still_in_story(self, parsed: Parsed, old: FileRow) -> bool:
        """An edited file stays in its story unless other files carry that story and its new
        text is no longer theirs (a file rewritten with another story): kept, that story would
        vanish behind the new one, which a fresh build shows as two items."""
        others = [m for m in self._live(old.item_id) if m.path != old.path]
        if not others:
            return True
        sh = shingles(parsed.analysis.identity)
        return any(self._similarity(m, sh) >= self.dedupe.threshold for m in others)

    def _near_story(self, parsed: Parsed) -> _Placement | None:
        window, done = timedelta(hours=self.dedupe.window_hours), parsed.analysis
        found = self.store.items_by_anchors(
            done.anchors.runs,
            () if done.anchors.title is None else (done.anchors.title,),
            (parsed.published - window, parsed.published + window),
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
        self, stamp: FileStamp, parsed: Parsed, place: _Placement, old: FileRow | None
    ) -> FileRow:
        done = parsed.analysis
        fp, key = done.identity.fingerprint, done.identity.body_key
        row = FileRow(
            stamp.path, stamp.size, stamp.mtime_ns, True, place.item_id, fp, parsed.quality,
            parsed.source_slug, parsed.source_name, self._file_published(parsed, old),
            place.near_score, len(done.identity.body),
        )  # fmt: skip
        self.store.put_file(row, body_key=key, article=done.blob)
        self._sources[parsed.source_slug] = parsed.source_name
        self._shingles.pop(stamp.path)  # derived from the content this replaces
        self.store.remember_keys(place.item_id, fp, key)
        if self.dedupe.near:
            self._texts.put(stamp.path, done.identity)
            self.store.add_anchors(place.item_id, done.anchors.all)
        return row

    def _joins_live_item(self, item_id: str, old: FileRow | None) -> bool:
        return any(old is None or m.path != old.path for m in self._live(item_id))

    def _forget(self, path: str, report: BatchReport) -> None:
        """A file that is gone: its item keeps it as a tombstone with ``keep_deleted``."""
        self.store.clear_error(path)
        self._drop_file(path, report, keep=self.keep_deleted)

    def _withdraw(self, path: str, report: BatchReport) -> None:
        """A file turned into a draft leaves its item, whatever ``keep_deleted`` says: it was
        unpublished, not cleaned away. (A broken file, by contrast, keeps its last good version.)"""
        self._drop_file(path, report, keep=False)

    def _drop_file(self, path: str, report: BatchReport, *, keep: bool) -> None:
        old = None if self.unseen_paths else self.store.file(path)
        if old is None:
            return
        if keep:
            self.store.tombstone_file(path)
            return
        self.store.delete_file(path)
        self._refresh(old.item_id, report)

    # -- one item --------------------------------------------------------------------------

    def _refresh(
        self,
        item_id: str,
        report: BatchReport,
        *,
        edited: bool = False,
        created: FileRow | None = None,
        news: bool = True,
    ) -> str | None:
        """Re-derive an item from its member files; returns the event kind, if any.
        ``created``: the item is new and this is its only file (just stored). ``news``: False
        when only the rules changed (an update is then no event)."""
        previous = None if created else self.store.item(item_id)
        members = [created] if created else self.store.members(item_id)
        old_topics = {m.topic for m in self.store.topics_of(item_id)} if previous else set()
        dirty = {"all"} | {f"topic:{t}" for t in old_topics}
        dirty |= {f"source:{m.source_slug}" for m in members}
        if previous is not None:
            dirty.add(f"source:{previous.source_slug}")
        if not members:
            if previous is not None and not previous.removed:
                self.store.remove_item(item_id, self.now())
                report.removed += 1
                self._dirty |= dirty
            return None
        if previous is not None and previous.removed:
            report.restored += 1
        rep = self._best_member(members)
        article, topics = self._representative(rep.path)
        published = min(article.published, rep.published)  # rep's is kept from the future
        updated = self._not_ahead(article.updated or published)
        kind: str | None = "item.new" if created else None
        if created:
            self._born.add(item_id)
        if previous is not None:
            changed = previous.fingerprint != rep.fingerprint or edited
            if not (self.unseen_paths or item_id in self._born):
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
            published=_earliest(members, published),
            updated=updated,
            source_slug=article.source_slug,
            title=article.title,
            link=article.link,
            first_seen=self.now(),
        )
        self.store.set_topics(item_id, topics, replace=previous is not None)
        dirty |= {f"topic:{m.topic}" for m in topics} | {f"source:{article.source_slug}"}
        self._dirty |= dirty
        if kind is not None and (news or kind != "item.updated"):
            self._emit(kind, item_id, article, topics, report)
        return kind

    def _best_member(self, members: Sequence[FileRow]) -> FileRow:
        """The member that represents its story: present, the best ``quality``, then not a flash
        of a longer member as good (``is_complete``), the newest edit, the last path. It
        depends on the members alone, never on the order they came in."""
        top = max((m.present, m.quality) for m in members)
        tied = [m for m in members if (m.present, m.quality) == top]
        chars = {m.path: self._body_chars(m) for m in tied}
        longest = max(chars.values())
        return max(tied, key=lambda m: (is_complete(chars[m.path], longest), m.mtime_ns, m.path))

    def _body_chars(self, member: FileRow) -> int:
        """A member's text length; a row stored before lengths were kept is measured from its
        stored article once (and the length kept)."""
        if member.body_chars is not None:
            return member.body_chars
        blob = self.store.file_article(member.path)
        chars = 0 if blob is None else len(identity(decode_article(blob)).body)
        self.store.set_body_chars(member.path, chars)
        return chars

    def _representative(self, path: str) -> tuple[Parsed | Article, tuple[TopicMatch, ...]]:
        """The representative's article, or what the ingest needs of it when it was just read."""
        parsed = self._fresh.get(path)
        if parsed is not None:
            return parsed, parsed.analysis.topics
        blob = self.store.file_article(path)
        assert blob is not None
        article = decode_article(blob)
        return article, self.topics.match_article(article)

    def _moved_updated(
        self, previous: datetime, rep: FileRow, article: Parsed | Article
    ) -> datetime:
        """An edit moves ``updated`` forward: to the file's mtime, and never backwards."""
        edited = article.updated or datetime.fromtimestamp(rep.mtime_ns // 1_000_000_000, UTC)
        return max(self._not_ahead(edited), previous + timedelta(seconds=1))

    def _file_published(self, parsed: Parsed, old: FileRow | None) -> datetime:
        """The file's date, unless it is still to come: then when the file was first read (its
        row keeps that), so that reading it again (an edit, changed rules) does not move it."""
        if parsed.published <= (now := self.now()):
            return parsed.published
        return min(old.published, now) if old is not None else now

    def _not_ahead(self, moment: datetime) -> datetime:
        """A date still to come (a wrong year or zone, a post scheduled ahead) is taken as now,
        when the file is read: dated ahead, an item would sit atop every reader's list until
        that date, and pin the feed's own date there."""
        return min(moment, self.now())

    def _emit(
        self,
        kind: str,
        item_id: str,
        article: Parsed | Article,
        topics: Sequence[TopicMatch],
        report: BatchReport,
    ) -> None:
        if kind == "item.new" and self.importing:
            return
        report.events += 1
        if self.on_event is not None:
            full = article.full_article() if isinstance(article, Parsed) else article
            self.on_event(self.store, ItemEvent(kind, item_id, full, tuple(topics)))


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
