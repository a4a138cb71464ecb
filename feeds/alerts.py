"""Keyword webhook alerts: which item events alert which webhook, and what is sent.

Everything here is pure (data in, data out) except ``AlertPlanner``, the Ingestor's
``on_event`` sink, which writes outbox rows through the store inside the ingest transaction.
Delivery (HTTP, retries, rate limits) lives in ``feeds.delivery``.

* Matching: a webhook's topics (by slug, from the item's ``TopicMatch``es) and keywords (folded
  like topics: NFKC, traditional -> simplified, case-folded), optional sources and event kinds.
* Identity: ``event_id`` is a stable hash of (item id, webhook name, event type), plus the new
  fingerprint and updated time for ``item.updated``; the outbox refuses a second copy.
* Payloads: the Standard Webhooks JSON body is what the outbox stores; the chat formats (WeCom,
  DingTalk, Feishu, Slack) are built from it at send time, cut by bytes to each platform's limit.
* Signing: Standard Webhooks ``v1,<base64>``, DingTalk 加签 (query) and Feishu 签名校验 (body).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Final, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

from feeds.classify import topic_slug
from feeds.config import Config, WebhookConfig, WebhookFormat
from feeds.ingest import ItemEvent
from feeds.model import Article, FeedKey, Site, TopicMatch
from feeds.outputs import site_of
from feeds.render import feed_url, item_guid
from feeds.store import Store
from feeds.store.outbox import NewAlert
from feeds.text import collapse_whitespace, fold

EVENT_NEW: Final = "item.new"
EVENT_UPDATED: Final = "item.updated"
EVENT_DIGEST: Final = "alert.digest"
EVENT_TEST: Final = "alert.test"

SNIPPET_CHARS: Final = 40
ELLIPSIS: Final = "…"
TITLE_BYTES: Final = 600  # a title longer than this is not a title
SUMMARY_BYTES: Final = 1500  # keeps a JSON payload far below Standard Webhooks' 20 KB
WORD_BYTES: Final = 90

# Platform limits (conservative where the documentation is vague).
WECOM_MARKDOWN_BYTES: Final = 4096  # markdown.content, UTF-8 bytes
DINGTALK_MARKDOWN_BYTES: Final = 20000  # markdown.text
DINGTALK_TITLE_BYTES: Final = 200  # markdown.title (the notification line)
FEISHU_BODY_BYTES: Final = 20000  # the whole request body ("不能超过 20 K")
SLACK_TEXT_CHARS: Final = 3000  # one section block's text, and the fallback text
SIGNATURE_RESERVE: Final = 128  # bytes kept free in a Feishu body for timestamp and sign

FIELD_LABELS: Final = {"title": "标题", "summary": "摘要", "content": "正文", "source": "来源"}
TIME_FORMAT: Final = "%Y-%m-%d %H:%M"

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


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


@dataclass(frozen=True, slots=True)
class Unit:
    """How a platform counts: UTF-8 bytes or characters."""

    measure: Callable[[str], int]
    cut: Callable[[str, int], str]


BYTES: Final = Unit(utf8_len, truncate_utf8)
CHARS: Final = Unit(len, truncate_chars)
FIT_ROUNDS: Final = 8


def fit(
    render: Callable[[str, str], T],
    size: Callable[[T], int],
    unit: Unit,
    texts: tuple[str, str],
    limit: int,
) -> T:
    """Render (title, summary), shortening the summary and then the title until ``size`` of
    the result is within ``limit`` (bounded rounds; the fixed parts are small by design)."""
    title, summary = texts
    built = render(title, summary)
    for _ in range(FIT_ROUNDS):
        excess = size(built) - limit
        if excess <= 0:
            break
        if summary:
            summary = unit.cut(summary, max(0, unit.measure(summary) - excess))
        else:
            title = unit.cut(title, max(0, unit.measure(title) - excess))
        built = render(title, summary)
    return built


# --- matching ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MatchReason:
    """Why an item alerted: the rule ("topic:<slug>" or "keywords"), word, field, context."""

    rule: str
    word: str
    field: str
    snippet: str


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
    """About ``width`` characters of ``text`` around the word, whitespace collapsed."""
    flat = collapse_whitespace(text)
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
        return self._by_topic(article, topics) or self._by_keyword(article)

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


# --- the alert and its Standard Webhooks payload ----------------------------------------------


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


# --- chat messages ----------------------------------------------------------------------------

_MD_SPECIALS = str.maketrans({"[": "［", "]": "］", "*": "＊", "`": "｀", "<": "＜", ">": "＞"})


def md_text(text: str) -> str:
    """Plain text that cannot break WeCom/DingTalk markdown (full-width look-alikes)."""
    return collapse_whitespace(text).translate(_MD_SPECIALS)


def md_url(url: str) -> str:
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def slack_text(text: str) -> str:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return collapse_whitespace(escaped)


def follow_link(alert: Alert) -> tuple[str, str]:
    """(label, URL) of the feed to subscribe to: the matched topic's, else the source's."""
    topics = dict(alert.feeds.topics)
    slug = alert.match.rule.removeprefix("topic:")
    if alert.match.rule.startswith("topic:") and slug in topics:
        return f"订阅「{dict(alert.item.topics).get(slug, slug)}」", topics[slug]
    return f"订阅「{alert.item.source_name}」", alert.feeds.source


def headline(alert: Alert, title: str) -> str:
    word = truncate_utf8(alert.match.word, WORD_BYTES)
    return f"【{word}】{title}"


def byline(alert: Alert, zone: tzinfo) -> str:
    when = alert.item.published.astimezone(zone).strftime(TIME_FORMAT)
    return f"{alert.item.source_name} · {when}"


def reason_line(alert: Alert) -> str:
    label = FIELD_LABELS.get(alert.match.field, alert.match.field)
    word = truncate_utf8(alert.match.word, WORD_BYTES)
    found = f"命中「{word}」（{label}）"
    if not alert.match.snippet or alert.match.field == "title":  # the title is shown anyway
        return found
    return f"{found}：{alert.match.snippet}"


def _md_links(alert: Alert) -> str:
    label, url = follow_link(alert)
    links = [f"[阅读原文]({md_url(alert.item.link)})"] if alert.item.link else []
    return " ｜ ".join([*links, f"[{md_text(label)}]({md_url(url)})"])


def wecom_message(alert: Alert, zone: tzinfo) -> dict[str, Any]:
    """WeCom group bot: ``msgtype: markdown``; content at most 4096 bytes."""

    def render(title: str, summary: str) -> str:
        lines = [
            f"**{md_text(headline(alert, title))}**",
            f"> {md_text(byline(alert, zone))}",
            f"> {md_text(reason_line(alert))}",
            "",
            md_text(summary),
            "",
            _md_links(alert),
        ]
        return "\n".join(lines)

    texts = (alert.item.title, alert.item.summary)
    content = fit(render, utf8_len, BYTES, texts, WECOM_MARKDOWN_BYTES)
    return {"msgtype": "markdown", "markdown": {"content": content}}


def dingtalk_message(alert: Alert, zone: tzinfo) -> dict[str, Any]:
    """DingTalk custom robot: ``msgtype: markdown`` with ``title`` and ``text``."""

    def render(title: str, summary: str) -> str:
        quote = f"> {md_text(byline(alert, zone))} · {md_text(reason_line(alert))}"
        head = f"#### {md_text(headline(alert, title))}"
        return "\n\n".join([head, quote, md_text(summary), _md_links(alert)])

    texts = (alert.item.title, alert.item.summary)
    text = fit(render, utf8_len, BYTES, texts, DINGTALK_MARKDOWN_BYTES)
    title = truncate_utf8(md_text(headline(alert, alert.item.title)), DINGTALK_TITLE_BYTES)
    return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}


def _feishu_body(size_title: str, rows: list[list[dict[str, str]]]) -> dict[str, Any]:
    post = {"zh_cn": {"title": size_title, "content": rows}}
    return {"msg_type": "post", "content": {"post": post}}


def _feishu_links(alert: Alert) -> list[dict[str, str]]:
    label, url = follow_link(alert)
    links = [{"tag": "a", "text": "阅读原文", "href": alert.item.link}] if alert.item.link else []
    if links:
        links.append({"tag": "text", "text": "  "})
    return [*links, {"tag": "a", "text": label, "href": url}]


def feishu_size(message: dict[str, Any]) -> int:
    return len(encode_body(message)) + SIGNATURE_RESERVE


def feishu_message(alert: Alert, zone: tzinfo) -> dict[str, Any]:
    """Feishu custom bot: ``msg_type: post`` (rich text); body at most 20 KB."""

    def render(title: str, summary: str) -> dict[str, Any]:
        rows = [[{"tag": "text", "text": f"{byline(alert, zone)} · {reason_line(alert)}"}]]
        if summary.strip():
            rows.append([{"tag": "text", "text": collapse_whitespace(summary)}])
        rows.append(_feishu_links(alert))
        return _feishu_body(headline(alert, collapse_whitespace(title)), rows)

    texts = (alert.item.title, alert.item.summary)
    return fit(render, feishu_size, BYTES, texts, FEISHU_BODY_BYTES)


def slack_size(message: dict[str, Any]) -> int:
    blocks = message["blocks"]
    return max(len(message["text"]), len(blocks[0]["text"]["text"]))


def slack_message(alert: Alert, zone: tzinfo) -> dict[str, Any]:
    """Slack incoming webhook: fallback ``text`` plus ``blocks`` (3000 chars per section)."""
    label, url = follow_link(alert)
    context = f"{slack_text(byline(alert, zone))} · {slack_text(reason_line(alert))}"
    context += f" · <{url}|{slack_text(label)}>"

    def render(title: str, summary: str) -> dict[str, Any]:
        name = slack_text(headline(alert, title))
        head = f"*<{alert.item.link}|{name}>*" if alert.item.link else f"*{name}*"
        section = {"type": "mrkdwn", "text": f"{head}\n{slack_text(summary)}"}
        blocks = [
            {"type": "section", "text": section},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ]
        return {"text": name, "blocks": blocks}

    texts = (alert.item.title, alert.item.summary)
    return fit(render, slack_size, CHARS, texts, SLACK_TEXT_CHARS)


def format_message(fmt: WebhookFormat, alert: Alert, zone: tzinfo) -> dict[str, Any]:
    """The request body (before signing) of one alert in a webhook's format."""
    if fmt == "json":
        return alert_payload(alert)
    builders = {
        "wecom": wecom_message,
        "dingtalk": dingtalk_message,
        "feishu": feishu_message,
        "slack": slack_message,
    }
    return builders[fmt](alert, zone)


# --- digests (more alerts due than the rate limit allows) -------------------------------------


def digest_title(count: int) -> str:
    return f"【快讯汇总】{count} 条新闻命中关注词"


def _digest_line(alert: Alert) -> str:
    word = truncate_utf8(alert.match.word, WORD_BYTES)
    return f"{alert.item.title} · {alert.item.source_name} ·「{word}」"


def _largest_prefix(
    alerts: Sequence[Alert], build: Callable[[Sequence[Alert], int], T], fits: Callable[[T], bool]
) -> T:
    """``build(shown, hidden_count)`` with as many alerts shown as fit (at least one)."""
    for shown in range(len(alerts), 0, -1):
        built = build(alerts[:shown], len(alerts) - shown)
        if fits(built) or shown == 1:
            return built
    return build(alerts, 0)


def _more_line(hidden: int) -> list[str]:
    return [f"…另有 {hidden} 条"] if hidden else []


def _md_digest_lines(shown: Sequence[Alert], hidden: int) -> list[str]:
    lines = []
    for alert in shown:
        text = md_text(truncate_utf8(_digest_line(alert), 600))
        url = alert.item.link or alert.feeds.source
        lines.append(f"- [{text}]({md_url(url)})")
    return lines + _more_line(hidden)


def wecom_digest(alerts: Sequence[Alert], zone: tzinfo) -> dict[str, Any]:
    def build(shown: Sequence[Alert], hidden: int) -> str:
        head = f"**{md_text(digest_title(len(alerts)))}**"
        return "\n".join([head, *_md_digest_lines(shown, hidden)])

    content = _largest_prefix(alerts, build, lambda t: utf8_len(t) <= WECOM_MARKDOWN_BYTES)
    content = truncate_utf8(content, WECOM_MARKDOWN_BYTES)
    return {"msgtype": "markdown", "markdown": {"content": content}}


def dingtalk_digest(alerts: Sequence[Alert], zone: tzinfo) -> dict[str, Any]:
    title = digest_title(len(alerts))

    def build(shown: Sequence[Alert], hidden: int) -> str:
        return "\n".join([f"#### {md_text(title)}", "", *_md_digest_lines(shown, hidden)])

    text = _largest_prefix(alerts, build, lambda t: utf8_len(t) <= DINGTALK_MARKDOWN_BYTES)
    text = truncate_utf8(text, DINGTALK_MARKDOWN_BYTES)
    return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}


def feishu_digest(alerts: Sequence[Alert], zone: tzinfo) -> dict[str, Any]:
    def build(shown: Sequence[Alert], hidden: int) -> dict[str, Any]:
        rows = [
            [{"tag": "a", "text": _digest_line(a), "href": a.item.link or a.feeds.source}]
            for a in shown
        ]
        rows += [[{"tag": "text", "text": line}] for line in _more_line(hidden)]
        return _feishu_body(digest_title(len(alerts)), rows)

    return _largest_prefix(alerts, build, lambda m: feishu_size(m) <= FEISHU_BODY_BYTES)


def slack_digest(alerts: Sequence[Alert], zone: tzinfo) -> dict[str, Any]:
    title = digest_title(len(alerts))

    def build(shown: Sequence[Alert], hidden: int) -> dict[str, Any]:
        lines = [
            f"• <{a.item.link or a.feeds.source}|{slack_text(_digest_line(a))}>" for a in shown
        ]
        text = "\n".join([f"*{slack_text(title)}*", *lines, *_more_line(hidden)])
        section = {"type": "mrkdwn", "text": truncate_chars(text, SLACK_TEXT_CHARS)}
        return {"text": title, "blocks": [{"type": "section", "text": section}]}

    return _largest_prefix(alerts, build, lambda m: slack_size(m) < SLACK_TEXT_CHARS)


def json_digest(alerts: Sequence[Alert], occurred: datetime) -> dict[str, Any]:
    """``alert.digest``: every carried event in full, each with its own stable ``id``."""
    events = [{"id": alert.id, **alert_payload(alert)} for alert in alerts]
    data = {"count": len(alerts), "events": events}
    return {"type": EVENT_DIGEST, "timestamp": iso(occurred), "data": data}


def format_digest(
    fmt: WebhookFormat, alerts: Sequence[Alert], zone: tzinfo, occurred: datetime
) -> dict[str, Any]:
    """One message listing several alerts (titles and links; the JSON digest carries all)."""
    if fmt == "json":
        return json_digest(alerts, occurred)
    builders = {
        "wecom": wecom_digest,
        "dingtalk": dingtalk_digest,
        "feishu": feishu_digest,
        "slack": slack_digest,
    }
    return builders[fmt](alerts, zone)


# --- signing ----------------------------------------------------------------------------------


def standard_webhook_key(secret: str) -> bytes:
    """A ``whsec_`` secret is base64 after the prefix; any other secret is used as UTF-8."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode("utf-8")


def _hmac_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def standard_webhook_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + _hmac_b64(standard_webhook_key(secret), signed)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk 加签: base64 HMAC-SHA256 keyed by the secret over "timestamp\\nsecret" (not yet
    URL-encoded: ``dingtalk_signed_url`` encodes it as a query parameter)."""
    return _hmac_b64(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode())


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    parts = urlsplit(url)
    extra = urlencode({"timestamp": str(timestamp_ms), "sign": dingtalk_sign(secret, timestamp_ms)})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def feishu_sign(secret: str, timestamp: int) -> str:
    """Feishu 签名校验: base64 HMAC-SHA256 keyed by "timestamp\\nsecret" over an empty message."""
    return _hmac_b64(f"{timestamp}\n{secret}".encode(), b"")


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    url: str
    headers: dict[str, str]
    body: bytes


USER_AGENT: Final = "feeds-alerts/1"


def prepare_request(
    fmt: WebhookFormat,
    url: str,
    secret: str | None,
    message_id: str,
    message: dict[str, Any],
    now: datetime,
) -> OutgoingRequest:
    """Sign one attempt. Every format carries ``webhook-id`` (stable) and ``webhook-timestamp``
    (this attempt); the signature goes where the platform expects it."""
    seconds = int(now.timestamp())
    if fmt == "feishu" and secret:
        message = {**message, "timestamp": str(seconds), "sign": feishu_sign(secret, seconds)}
    if fmt == "dingtalk" and secret:
        url = dingtalk_signed_url(url, secret, int(now.timestamp() * 1000))
    body = encode_body(message)
    headers = {
        "content-type": "application/json; charset=utf-8",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(seconds),
    }
    if fmt == "json" and secret:
        headers["webhook-signature"] = standard_webhook_signature(secret, message_id, seconds, body)
    return OutgoingRequest(url, headers, body)


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
    present = [m for m in store.members(event.item_id) if m.present]
    found = dict.fromkeys((m.source_slug, m.source_name) for m in present)
    return tuple(found) or ((event.article.source_slug, event.article.source_name),)


# --- the sample behind `feeds alerts test` ----------------------------------------------------


def sample_alert(webhook: WebhookConfig, site: Site, now: datetime) -> Alert:
    """A realistic alert that matches the webhook (its first keyword or topic)."""
    word = (webhook.keywords or webhook.topics or ("北交所",))[0]
    topics = tuple((slug, slug) for slug in webhook.topics[:1])
    item = AlertItem(
        id="0" * 32,
        title=f"测试消息：{word} 告警通道连通性检查",
        link=site.url("index.html"),
        published=now,
        updated=None,
        source_name="feeds",
        source_slug="feeds",
        sources=(("feeds", "feeds"),),
        topics=topics,
        summary=f"这是一条由 feeds alerts test 发送的测试消息，用于确认「{word}」告警可以送达。",
        image=None,
    )
    reason = MatchReason(f"topic:{topics[0][0]}" if topics else "keywords", word, "title", "")
    return Alert(
        id=f"evt_test_{int(now.timestamp() * 1000)}",
        type=EVENT_TEST,
        occurred=now,
        item=item,
        match=reason,
        feeds=feed_links(site, "feeds", [slug for slug, _ in topics]),
    )
