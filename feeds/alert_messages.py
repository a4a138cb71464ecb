"""Chat messages: one alert, or a digest of several, in a webhook's format (before signing).

* ``format_message``: WeCom and DingTalk markdown, a Feishu ``post``, Slack blocks, or the
  Standard Webhooks JSON itself (``feeds.alert_payload``), built at send time from the stored
  payload.
* ``format_digest``: one message listing many alerts when more are due than a target's rate
  limit allows (the JSON ``alert.digest`` carries every event in full).
* Fitting to each platform's limit (``fit``): the summary and then the title are cut, by UTF-8
  bytes or characters as the platform counts, never inside a character.

Pure. Does not sign (``feeds.signing``) or send (``feeds.delivery``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Final, TypeVar

from feeds.alert_payload import (
    EVENT_DIGEST,
    EVENT_UPDATED,
    FIELD_LABELS,
    Alert,
    alert_payload,
    encode_body,
    iso,
    truncate_chars,
    truncate_utf8,
    utf8_len,
)
from feeds.config import WebhookFormat
from feeds.text import collapse_whitespace

WORD_BYTES: Final = 90
# Fields every chat message shows in full anyway: a snippet of them would say it twice.
SHOWN_FIELDS: Final = ("title", "summary")
UPDATE_MARK: Final = "·更新"  # after the word in an ``item.updated`` alert's headline

# Platform limits (conservative where the documentation is vague).
WECOM_MARKDOWN_BYTES: Final = 4096  # markdown.content, UTF-8 bytes
DINGTALK_MARKDOWN_BYTES: Final = 20000  # markdown.text
DINGTALK_TITLE_BYTES: Final = 200  # markdown.title (the notification line)
FEISHU_BODY_BYTES: Final = 20000  # the whole request body ("不能超过 20 K")
SLACK_TEXT_CHARS: Final = 3000  # one section block's text, and the fallback text
SIGNATURE_RESERVE: Final = 128  # bytes kept free in a Feishu body for timestamp and sign

TIME_FORMAT: Final = "%Y-%m-%d %H:%M"

T = TypeVar("T")


# --- fitting to a platform's limit (UTF-8 bytes or characters) --------------------------------


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


# --- chat messages ----------------------------------------------------------------------------

_MD_SPECIALS = str.maketrans({"[": "［", "]": "］", "*": "＊", "`": "｀", "<": "＜", ">": "＞"})


def md_text(text: str) -> str:
    """Plain text that cannot break WeCom/DingTalk markdown (full-width look-alikes)."""
    return collapse_whitespace(text).translate(_MD_SPECIALS)


def md_url(url: str) -> str:
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


# Slack mrkdwn has no escape for its formatting marks: "*ST甲与*ST乙" would turn bold.
_SLACK_MARKS = str.maketrans({"*": "＊", "_": "＿", "~": "～", "`": "｀"})


def slack_text(text: str) -> str:
    """Plain text for Slack mrkdwn: its three control characters escaped as Slack documents,
    formatting marks replaced by full-width look-alikes (as ``md_text`` does)."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return collapse_whitespace(escaped).translate(_SLACK_MARKS)


def follow_link(alert: Alert) -> tuple[str, str]:
    """(label, URL) of the feed to subscribe to: the matched topic's, else the source's."""
    topics = dict(alert.feeds.topics)
    slug = alert.match.rule.removeprefix("topic:")
    if alert.match.rule.startswith("topic:") and slug in topics:
        return f"订阅「{dict(alert.item.topics).get(slug, slug)}」", topics[slug]
    return f"订阅「{alert.item.source_name}」", alert.feeds.source


def headline(alert: Alert, title: str) -> str:
    """``【word】title``; ``【word·更新】title`` for an edit of a story alerted before, so that a
    group hearing about updates can tell the second message from a repeat of the first."""
    word = truncate_utf8(alert.match.word, WORD_BYTES)
    mark = UPDATE_MARK if alert.type == EVENT_UPDATED else ""
    return f"【{word}{mark}】{title}"


def byline(alert: Alert, zone: tzinfo) -> str:
    when = alert.item.published.astimezone(zone).strftime(TIME_FORMAT)
    return f"{alert.item.source_name} · {when}"


def reason_line(alert: Alert) -> str:
    label = FIELD_LABELS.get(alert.match.field, alert.match.field)
    word = truncate_utf8(alert.match.word, WORD_BYTES)
    found = f"命中「{word}」（{label}）"
    if not alert.match.snippet or alert.match.field in SHOWN_FIELDS:
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
    mark = UPDATE_MARK if alert.type == EVENT_UPDATED else ""
    return f"{alert.item.title} · {alert.item.source_name} ·「{word}」{mark}"


Listed = tuple[dict[str, Any], int]  # a digest message and how many alerts it lists


def _largest_prefix(
    alerts: Sequence[Alert], build: Callable[[Sequence[Alert], int], T], fits: Callable[[T], bool]
) -> tuple[T, int]:
    """``build(shown, hidden_count)`` with as many alerts shown as fit (at least one), and how
    many that is."""
    for shown in range(len(alerts), 0, -1):
        built = build(alerts[:shown], len(alerts) - shown)
        if fits(built) or shown == 1:
            return built, shown
    return build(alerts, 0), len(alerts)


def _more_line(hidden: int) -> list[str]:
    return [f"…另有 {hidden} 条"] if hidden else []


def _md_digest_lines(shown: Sequence[Alert], hidden: int) -> list[str]:
    lines = []
    for alert in shown:
        text = md_text(truncate_utf8(_digest_line(alert), 600))
        url = alert.item.link or alert.feeds.source
        lines.append(f"- [{text}]({md_url(url)})")
    return lines + _more_line(hidden)


def wecom_digest(alerts: Sequence[Alert], zone: tzinfo) -> Listed:
    def build(shown: Sequence[Alert], hidden: int) -> str:
        head = f"**{md_text(digest_title(len(alerts)))}**"
        return "\n".join([head, *_md_digest_lines(shown, hidden)])

    content, shown = _largest_prefix(alerts, build, lambda t: utf8_len(t) <= WECOM_MARKDOWN_BYTES)
    content = truncate_utf8(content, WECOM_MARKDOWN_BYTES)
    return {"msgtype": "markdown", "markdown": {"content": content}}, shown


def dingtalk_digest(alerts: Sequence[Alert], zone: tzinfo) -> Listed:
    title = digest_title(len(alerts))

    def build(shown: Sequence[Alert], hidden: int) -> str:
        return "\n".join([f"#### {md_text(title)}", "", *_md_digest_lines(shown, hidden)])

    text, shown = _largest_prefix(alerts, build, lambda t: utf8_len(t) <= DINGTALK_MARKDOWN_BYTES)
    text = truncate_utf8(text, DINGTALK_MARKDOWN_BYTES)
    return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}, shown


def feishu_digest(alerts: Sequence[Alert], zone: tzinfo) -> Listed:
    def build(shown: Sequence[Alert], hidden: int) -> dict[str, Any]:
        rows = [
            [{"tag": "a", "text": _digest_line(a), "href": a.item.link or a.feeds.source}]
            for a in shown
        ]
        rows += [[{"tag": "text", "text": line}] for line in _more_line(hidden)]
        return _feishu_body(digest_title(len(alerts)), rows)

    return _largest_prefix(alerts, build, lambda m: feishu_size(m) <= FEISHU_BODY_BYTES)


def slack_digest(alerts: Sequence[Alert], zone: tzinfo) -> Listed:
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
    return _listed_digest(fmt, alerts, zone, occurred)[0]


def digest_capacity(fmt: WebhookFormat, alerts: Sequence[Alert], zone: tzinfo) -> int:
    """How many of ``alerts`` (from the first) one digest message can list within the
    platform's limit; a digest of more ends in '…另有 N 条'. Every one for ``json``."""
    return _listed_digest(fmt, alerts, zone, datetime.now(zone))[1]


def _listed_digest(
    fmt: WebhookFormat, alerts: Sequence[Alert], zone: tzinfo, occurred: datetime
) -> Listed:
    if fmt == "json":
        return json_digest(alerts, occurred), len(alerts)
    builders = {
        "wecom": wecom_digest,
        "dingtalk": dingtalk_digest,
        "feishu": feishu_digest,
        "slack": slack_digest,
    }
    return builders[fmt](alerts, zone)
