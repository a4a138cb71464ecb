"""The alert and its Standard Webhooks payload: the data every other alert module builds on.

* ``Alert``: one event for one webhook: its id and type (``item.new``, ``item.updated``,
  ``alert.digest``, ``alert.test``), the ``AlertItem`` (title and summary cut to fixed byte
  bounds), the ``MatchReason`` (why it alerted) and the ``FeedLinks`` to subscribe to.
* ``alert_payload`` / ``alert_from_payload``: the Standard Webhooks JSON body
  ``{type, timestamp, data{item, match, feeds}}`` that the outbox stores, and its inverse;
  ``encode_body``: the exact bytes that are signed and sent.
* UTF-8 aware cutting (``truncate_utf8``, ``truncate_chars``): here, at the bottom, because the
  payload's bounds and the match snippets use it; fitting a whole message to a platform's limit
  is ``feeds.alert_messages``.

Pure (data in, data out). Imports no other alert module: ``feeds.alerts`` (matching, identity,
planning), ``feeds.alert_messages`` (chat formats, digests) and ``feeds.signing`` import this.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from feeds.model import Article, FeedKey, Site, TopicMatch
from feeds.render import feed_url, item_guid

EVENT_NEW: Final = "item.new"
EVENT_UPDATED: Final = "item.updated"
EVENT_DIGEST: Final = "alert.digest"
EVENT_TEST: Final = "alert.test"

ELLIPSIS: Final = "…"
TITLE_BYTES: Final = 600  # a title longer than this is not a title
SUMMARY_BYTES: Final = 1500  # keeps a JSON payload far below Standard Webhooks' 20 KB

# The fields a ``MatchReason`` can name, with their labels in chat messages.
FIELD_LABELS: Final = {"title": "标题", "summary": "摘要", "content": "正文", "source": "来源"}


# --- UTF-8 aware cutting ----------------------------------------------------------------------


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def truncate_utf8(text: str, max_bytes: int, ellipsis: str = ELLIPSIS) -> str:
    """At most ``max_bytes`` UTF-8 bytes, ellipsis included; never cuts inside a character."""
    if utf8_len(text) <= max_bytes:
        return text
    room = max_bytes - utf8_len(ellipsis)
    if room <= 0:
        return ""
    return text.encode("utf-8")[:room].decode("utf-8", "ignore") + ellipsis


def truncate_chars(text: str, max_chars: int, ellipsis: str = ELLIPSIS) -> str:
    if len(text) <= max_chars:
        return text
    room = max_chars - len(ellipsis)
    return text[:room] + ellipsis if room > 0 else ""


# --- the alert and its Standard Webhooks payload ----------------------------------------------


@dataclass(frozen=True, slots=True)
class MatchReason:
    """Why an item alerted: the rule ("topic:<slug>" or "keywords"), word, field, context."""

    rule: str
    word: str
    field: str
    snippet: str


@dataclass(frozen=True, slots=True)
class AlertItem:
    id: str
    title: str
    link: str | None
    published: datetime
    updated: datetime | None
    source_name: str
    source_slug: str
    sources: tuple[tuple[str, str], ...]  # every (slug, name) the story came from
    topics: tuple[tuple[str, str], ...]  # (slug, name) of every topic the item is in
    summary: str
    image: str | None


@dataclass(frozen=True, slots=True)
class FeedLinks:
    all: str
    source: str
    topics: tuple[tuple[str, str], ...] = ()  # (slug, url)


@dataclass(frozen=True, slots=True)
class Alert:
    id: str  # the event id
    type: str
    occurred: datetime
    item: AlertItem
    match: MatchReason
    feeds: FeedLinks


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def feed_links(site: Site, source_slug: str, topics: Iterable[str]) -> FeedLinks:
    """Absolute RSS URLs (swap ``.rss`` for ``.atom`` for Atom) of the item's feeds."""
    return FeedLinks(
        all=feed_url(FeedKey("all"), "rss", site),
        source=feed_url(FeedKey("source", source_slug), "rss", site),
        topics=tuple((slug, feed_url(FeedKey("topic", slug), "rss", site)) for slug in topics),
    )


def alert_item(
    item_id: str,
    article: Article,
    topics: Sequence[TopicMatch],
    sources: Sequence[tuple[str, str]] = (),
    updated: datetime | None = None,
    topic_names: Mapping[str, str] | None = None,
) -> AlertItem:
    names = topic_names or {}
    return AlertItem(
        id=item_id,
        title=truncate_utf8(article.title, TITLE_BYTES),
        link=article.link,
        published=article.published,
        updated=updated,
        source_name=article.source_name,
        source_slug=article.source_slug,
        sources=tuple(sources) or ((article.source_slug, article.source_name),),
        topics=tuple(dict.fromkeys((m.topic, names.get(m.topic, m.topic)) for m in topics)),
        summary=truncate_utf8(article.summary, SUMMARY_BYTES),
        image=article.image,
    )


def _guid(item_id: str) -> str | None:
    try:
        return item_guid(item_id)
    except ValueError:
        return None


def item_json(item: AlertItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "guid": _guid(item.id),
        "title": item.title,
        "link": item.link,
        "published": iso(item.published),
        "updated": None if item.updated is None else iso(item.updated),
        "source": {"name": item.source_name, "slug": item.source_slug},
        "sources": [{"slug": slug, "name": name} for slug, name in item.sources],
        "topics": [{"slug": slug, "name": name} for slug, name in item.topics],
        "summary": item.summary,
        "image": item.image,
    }


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The Standard Webhooks body: ``{type, timestamp, data{item, match, feeds}}``."""
    data: dict[str, Any] = {
        "item": item_json(alert.item),
        "match": {
            "rule": alert.match.rule,
            "word": alert.match.word,
            "field": alert.match.field,
            "snippet": alert.match.snippet,
        },
        "feeds": {
            "all": alert.feeds.all,
            "source": alert.feeds.source,
            "topics": dict(alert.feeds.topics),
        },
    }
    return {"type": alert.type, "timestamp": iso(alert.occurred), "data": data}


def _item_from_json(data: dict[str, Any]) -> AlertItem:
    updated = data.get("updated")
    return AlertItem(
        id=data["id"],
        title=data["title"],
        link=data.get("link"),
        published=datetime.fromisoformat(data["published"]),
        updated=None if updated is None else datetime.fromisoformat(updated),
        source_name=data["source"]["name"],
        source_slug=data["source"]["slug"],
        sources=tuple((s["slug"], s["name"]) for s in data.get("sources", [])),
        topics=tuple((t["slug"], t["name"]) for t in data.get("topics", [])),
        summary=data.get("summary", ""),
        image=data.get("image"),
    )


def alert_from_payload(event: str, payload: str | dict[str, Any]) -> Alert:
    """The inverse of ``alert_payload`` (the outbox stores the payload as JSON text)."""
    body = json.loads(payload) if isinstance(payload, str) else payload
    data = body["data"]
    feeds = data["feeds"]
    return Alert(
        id=event,
        type=body["type"],
        occurred=datetime.fromisoformat(body["timestamp"]),
        item=_item_from_json(data["item"]),
        match=MatchReason(**data["match"]),
        feeds=FeedLinks(feeds["all"], feeds["source"], tuple(feeds.get("topics", {}).items())),
    )


def encode_body(message: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: exactly the bytes that are signed and sent."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
