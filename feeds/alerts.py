"""Keyword webhook alerts: which item events alert which webhook, and queueing them.

Everything here is pure (data in, data out) except ``AlertPlanner``, the Ingestor's
``on_event`` sink, which writes outbox rows through the store inside the ingest transaction.

* Matching: a webhook's topics (by slug, from the item's ``TopicMatch``es) and keywords (folded
  like topics: NFKC, traditional -> simplified, case-folded), optional sources and event kinds;
  an excluded keyword in the webhook's fields mutes the item for it.
* Identity: ``event_id`` is a stable hash of (item id, webhook name, event type), plus the new
  fingerprint and updated time for ``item.updated``; the outbox refuses a second copy.
* Planning: ``AlertPlanner`` queues one Standard Webhooks payload per (event, matching webhook);
  ``sample_alert`` is the alert behind ``feeds alerts test``.

The alert data and its payload live in ``feeds.alert_payload``; the chat formats and digests in
``feeds.alert_messages``; signatures in ``feeds.signing``; delivery (HTTP, retries, rate limits)
in ``feeds.delivery``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Final

from feeds.alert_payload import (
    ELLIPSIS,
    EVENT_TEST,
    EVENT_UPDATED,
    FIELD_LABELS,
    Alert,
    AlertItem,
    MatchReason,
    alert_item,
    alert_payload,
    feed_links,
    truncate_chars,
)
from feeds.classify import topic_slug
from feeds.config import Config, WebhookConfig
from feeds.ingest import ItemEvent
from feeds.model import Article, Site, TopicMatch
from feeds.outputs import site_of
from feeds.store import Store
from feeds.store.outbox import NewAlert
from feeds.text import collapse_whitespace, defang, fold

SNIPPET_CHARS: Final = 40


def utc_now() -> datetime:
    return datetime.now(UTC)


# --- matching ---------------------------------------------------------------------------------


def field_text(article: Article, name: str) -> str:
    texts = {"title": article.title, "summary": article.summary, "content": article.text}
    return texts.get(name, "")


def locate(text: str, folded_word: str) -> tuple[int, int]:
    """(start, length) in ``text`` of a folded word, or (-1, 0)."""
    if not folded_word:
        return -1, 0
    folded = fold(text)
    if len(folded) == len(text):
        return folded.find(folded_word), len(folded_word)
    offsets: list[int] = []  # folding changed lengths (NFKC): map folded chars to originals
    for index, char in enumerate(text):
        offsets.extend([index] * len(fold(char)))
    found = "".join(fold(char) for char in text).find(folded_word)
    if found < 0:
        return -1, 0
    end = offsets[found + len(folded_word) - 1] + 1
    return offsets[found], end - offsets[found]


def snippet(text: str, folded_word: str, width: int = SNIPPET_CHARS) -> str:
    """About ``width`` characters of ``text`` around the word, whitespace collapsed, defanged
    (article text may quote markup: no receiver may read a tag from it)."""
    flat = defang(collapse_whitespace(text))
    start, length = locate(flat, folded_word)
    if start < 0:
        return truncate_chars(flat, width)
    span = max(width, length)
    low = max(0, min(start - (width - length) // 2, len(flat) - span))
    high = min(len(flat), low + span)
    return (ELLIPSIS if low else "") + flat[low:high] + (ELLIPSIS if high < len(flat) else "")


class WebhookRule:
    """One webhook's filter, compiled once (keywords folded)."""

    def __init__(self, webhook: WebhookConfig) -> None:
        self.webhook = webhook
        self.keywords = tuple((fold(k), k) for k in webhook.keywords if k.strip())
        self.excluded = tuple(fold(k) for k in webhook.exclude if k.strip())
        self.topics = frozenset(webhook.topics)
        self.sources = frozenset(webhook.sources)

    @property
    def name(self) -> str:
        return self.webhook.name

    def match(
        self,
        kind: str,
        article: Article,
        topics: Sequence[TopicMatch],
        sources: Iterable[str] = (),
    ) -> MatchReason | None:
        """The reason this event alerts this webhook, or None. ``sources`` are every source
        slug of the item (the representative article's slug always counts)."""
        if kind not in self.webhook.events:
            return None
        if self.sources and not self.sources & {article.source_slug, *sources}:
            return None
        if self.excluded and self._is_excluded(article):
            return None
        return self._by_topic(article, topics) or self._by_keyword(article)

    def _is_excluded(self, article: Article) -> bool:
        """An excluded word in any of the webhook's ``fields`` mutes the item for it."""
        texts = [fold(field_text(article, name)) for name in self.webhook.fields]
        return any(word in text for text in texts for word in self.excluded)

    def _by_topic(self, article: Article, topics: Sequence[TopicMatch]) -> MatchReason | None:
        for match in topics:
            if match.topic in self.topics:
                context = snippet(field_text(article, match.field), fold(match.word))
                text = context if match.field in FIELD_LABELS and match.field != "source" else ""
                return MatchReason(f"topic:{match.topic}", match.word, match.field, text)
        return None

    def _by_keyword(self, article: Article) -> MatchReason | None:
        for name in self.webhook.fields:
            text = field_text(article, name)
            folded = fold(text)
            for word, original in self.keywords:
                if word in folded:
                    return MatchReason("keywords", original, name, snippet(text, word))
        return None


# --- identity ---------------------------------------------------------------------------------


def event_id(item_id: str, webhook: str, event_type: str, version: str = "") -> str:
    """Stable id of one event for one webhook (the ``webhook-id`` header, on every retry)."""
    joined = "\x1f".join(("alert", item_id, webhook, event_type, version))
    return "evt_" + hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


def update_version(fingerprint: str, updated: datetime) -> str:
    """What makes each real update of an item a distinct ``item.updated`` event."""
    return f"{fingerprint}@{int(updated.timestamp())}"


def digest_id(event_ids: Sequence[str]) -> str:
    joined = "\x1f".join(("digest", *event_ids))
    return "dig_" + hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


# --- planning: the Ingestor's event sink ------------------------------------------------------


def store_is_backfilling(store: Store) -> bool:
    """The same test as ``Pipeline.backfilling``: no full scan has been stored yet."""
    return store.get_meta("initialized") is None


class AlertPlanner:
    """``on_event`` sink: one outbox row per (event, matching webhook), written in the ingest
    transaction. Skips everything while the archive's first scan is stored, unless
    ``alert_on_backfill``. ``backfilling`` defaults to ``store_is_backfilling``; pass
    ``lambda: pipeline.backfilling`` where the pipeline exists first."""

    def __init__(
        self,
        config: Config,
        *,
        backfilling: Callable[[], bool] | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.rules = tuple(WebhookRule(webhook) for webhook in config.webhooks)
        self.site = site_of(config)
        self.topic_names = {topic_slug(rule): rule.name for rule in config.topics}
        self.alert_on_backfill = config.alert_on_backfill
        self.backfilling = backfilling
        self.now = now
        self.queued = 0
        self._initialized = False

    def __call__(self, store: Store, event: ItemEvent) -> None:
        if not self.rules or self._skipping(store):
            return
        sources = _item_sources(store, event)
        for rule in self.rules:
            reason = rule.match(event.kind, event.article, event.topics, [s for s, _ in sources])
            if reason is not None:
                self._queue(store, event, rule.name, reason, sources)

    def _skipping(self, store: Store) -> bool:
        if self.alert_on_backfill or self._initialized:
            return False
        backfilling = self.backfilling() if self.backfilling else store_is_backfilling(store)
        self._initialized = not backfilling  # a store never goes back to backfilling
        return backfilling

    def _queue(
        self,
        store: Store,
        event: ItemEvent,
        webhook: str,
        reason: MatchReason,
        sources: Sequence[tuple[str, str]],
    ) -> None:
        alert = self.alert_for(store, event, webhook, reason, sources)
        payload = json.dumps(alert_payload(alert), ensure_ascii=False, separators=(",", ":"))
        row = NewAlert(alert.id, webhook, event.kind, event.item_id, payload, alert.occurred)
        if store.enqueue_alert(row):
            self.queued += 1

    def alert_for(
        self,
        store: Store,
        event: ItemEvent,
        webhook: str,
        reason: MatchReason,
        sources: Sequence[tuple[str, str]],
    ) -> Alert:
        stored = store.item(event.item_id)
        updated = stored.updated if stored is not None else None
        version = ""
        if event.kind == EVENT_UPDATED and stored is not None:
            version = update_version(stored.fingerprint, stored.updated)
        item = alert_item(
            event.item_id, event.article, event.topics, sources, updated, self.topic_names
        )
        return Alert(
            id=event_id(event.item_id, webhook, event.kind, version),
            type=event.kind,
            occurred=self.now(),
            item=item,
            match=reason,
            feeds=feed_links(self.site, event.article.source_slug, [s for s, _ in item.topics]),
        )


def _item_sources(store: Store, event: ItemEvent) -> tuple[tuple[str, str], ...]:
    found = store.item_sources(event.item_id)
    return found or ((event.article.source_slug, event.article.source_name),)


# --- the sample behind `feeds alerts test` ----------------------------------------------------


def sample_alert(
    webhook: WebhookConfig, site: Site, now: datetime, topic_names: Mapping[str, str] | None = None
) -> Alert:
    """A realistic alert that matches the webhook (its first keyword, else its first topic),
    whose links all exist: the subscribe link is the topic's feed, else the ``all`` feed."""
    slug = webhook.topics[0] if webhook.topics else None
    topics = ((slug, (topic_names or {}).get(slug, slug)),) if slug else ()
    word = webhook.keywords[0] if webhook.keywords else topics[0][1] if topics else "北交所"
    item = AlertItem(
        id="0" * 32,
        title=f"测试消息：{word} 告警通道连通性检查",
        link=site.url("index.html"),
        published=now,
        updated=None,
        source_name=site.title,
        source_slug="feeds",
        sources=(("feeds", site.title),),
        topics=topics,
        summary=f"这是一条由 feeds alerts test 发送的测试消息，用于确认「{word}」告警可以送达。",
        image=None,
    )
    rule = "keywords" if webhook.keywords or not slug else f"topic:{slug}"
    links = feed_links(site, "feeds", [slug for slug, _ in topics])
    return Alert(
        id=f"evt_test_{int(now.timestamp() * 1000)}",
        type=EVENT_TEST,
        occurred=now,
        item=item,
        match=MatchReason(rule, word, "title", ""),
        feeds=replace(links, source=links.all),  # there is no "feeds" outlet feed
    )
