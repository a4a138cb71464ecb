"""Render feeds (RSS 2.0, Atom 1.0), the OPML subscription list and the HTML index.

Pure functions: data in, bytes out. Nothing here reads the clock or touches files, so the
same input always gives the same bytes (readers and conditional GETs rely on that).

A feed is feedgen's document without entries with each entry's bytes spliced in before the
closing tag; an entry is cut from a one-entry document, once, and kept by item (``_EntryCache``),
so re-rendering a feed for one new item serializes that item only. The bytes are exactly
feedgen's for the whole feed: the entries sit at the same depth under the same namespace
declarations, and pretty printing indents an element by its depth alone.

Stable URL scheme, relative to ``Site.base_url`` (never change it):
``all.rss``/``all.atom``, ``sources/<slug>.rss|.atom``, ``topics/<slug>.rss|.atom``,
``feeds.opml`` and ``index.html``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final
from xml.etree import ElementTree as ET

from feedgen.feed import FeedGenerator
from lxml import etree

# isort: split
# After feedgen.feed: feedgen.util, which the extensions import, uses lxml.etree unimported.
from feedgen.ext.base import BaseExtension
from feedgen.ext.dc import DcEntryExtension, DcExtension
from feedgen.ext.media import MediaEntryExtension, MediaExtension

from feeds.model import FeedItem, FeedKey, FeedKind, FeedMeta, Site
from feeds.text import xml_safe

GENERATOR: Final = "feeds"
ATOM_NS: Final = "http://www.w3.org/2005/Atom"
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
INDEX_PATH: Final = "index.html"
OPML_PATH: Final = "feeds.opml"
UNTITLED: Final = "无标题"
MEDIA_TYPES: Final = {"rss": "application/rss+xml", "atom": "application/atom+xml"}
KIND_ORDER: Final[tuple[FeedKind, ...]] = ("all", "source", "topic")
KIND_LABELS: Final[dict[FeedKind, str]] = {"all": "全部", "source": "来源", "topic": "主题"}

ENTRY_CACHE_SIZE: Final = 1024  # serialized entries (~10 KB each) per format: 50 of 20 feeds

_HEX32 = re.compile(r"[0-9a-f]{32}")


# --- URLs and ids -----------------------------------------------------------------------------


def feed_url(key: FeedKey, fmt: str, site: Site) -> str:
    """Absolute URL of one feed in one format ("rss" or "atom")."""
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"unknown feed format: {fmt!r}")
    return site.url(f"{key.path_stem}.{fmt}")


def item_guid(item_id: str) -> str:
    """``urn:uuid:`` form of a 32-hex item id (RSS guid and Atom id of the item)."""
    hex_id = item_id.lower()
    if not _HEX32.fullmatch(hex_id):
        raise ValueError(f"item id is not 32 hex digits: {item_id!r}")
    parts = (hex_id[:8], hex_id[8:12], hex_id[12:16], hex_id[16:20], hex_id[20:])
    return "urn:uuid:" + "-".join(parts)


# --- shared helpers ---------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime in feed data: {moment!r}")
    return moment.astimezone(UTC)


def _ordered(items: Iterable[FeedItem]) -> list[FeedItem]:
    """Newest first, ties broken by id; a repeated id keeps only its first occurrence."""
    ranked = sorted(items, key=lambda item: (-_utc(item.published).timestamp(), item.id.lower()))
    seen: set[str] = set()
    unique: list[FeedItem] = []
    for item in ranked:
        if item.id.lower() not in seen:  # one guid per item: readers hide repeated ones
            seen.add(item.id.lower())
            unique.append(item)
    return unique


def _last_change(items: Sequence[FeedItem]) -> datetime | None:
    """When the feed last changed: the latest item ``updated`` (or ``published``, should an
    item claim an update before its publication); None for an empty feed."""
    moments = (max(_utc(item.updated), _utc(item.published)) for item in items)
    return max(moments, default=None)


def _title(item: FeedItem) -> str:
    return xml_safe(item.title).strip() or UNTITLED


def _creator(item: FeedItem) -> str:
    """The entry's author: the people its front matter names, else its outlet (one name, as
    readers that show one ``dc:creator`` would pick only one of several)."""
    return xml_safe(item.author).strip() or xml_safe(item.source_name).strip()


def _categories(item: FeedItem) -> list[dict[str, str]]:
    terms = (xml_safe(term).strip() for term in item.categories)
    return [{"term": term} for term in dict.fromkeys(terms) if term]


def _describe(meta: FeedMeta, site: Site) -> str:
    return xml_safe(meta.description).strip() or xml_safe(site.description).strip() or _name(meta)


def _name(meta: FeedMeta) -> str:
    return xml_safe(meta.title).strip() or meta.key.name


def _base_generator(meta: FeedMeta, site: Site, fmt: str) -> Any:
    fg = FeedGenerator()
    fg.title(_name(meta))
    fg.language(xml_safe(site.language))
    fg.generator(GENERATOR)
    fg.link(href=feed_url(meta.key, fmt, site), rel="self", type=MEDIA_TYPES[fmt])
    if fmt == "atom":
        for hub in site.hubs:
            fg.link(href=hub, rel="hub")
    elif site.hubs:  # feedgen writes only the "self" atom:link into RSS
        fg.register_extension("websub", HubLinks, atom=False, rss=True)
        fg.websub.hubs = site.hubs
    # Last: feedgen takes the RSS channel <link> from the last link given.
    fg.link(href=site.url(INDEX_PATH), rel="alternate", type="text/html")
    return fg


class HubLinks(BaseExtension):  # type: ignore[misc]
    """``<atom:link rel="hub">`` in an RSS channel (WebSub discovery, as Atom feeds carry it)."""

    hubs: tuple[str, ...] = ()

    def extend_rss(self, feed: Any) -> Any:
        channel = feed[0]
        for hub in self.hubs:
            etree.SubElement(channel, f"{{{ATOM_NS}}}link", href=hub, rel="hub")
        return feed


# --- entries, serialized once ---------------------------------------------------------------


# Entries are cut from a document of this feed; only its namespace declarations matter.
_SCRATCH_META: Final = FeedMeta(FeedKey("all"), GENERATOR, GENERATOR)
_SCRATCH_SITE: Final = Site("http://localhost/", GENERATOR, GENERATOR)


def _cut(document: bytes, start_tag: bytes, end_tag: bytes) -> bytes:
    """The one element of ``document`` that starts with ``start_tag``, from the start of its
    line to the end of its closing line. Text before it is escaped (never holds ``<``)."""
    start = document.rindex(b"\n", 0, document.index(start_tag)) + 1
    return document[start : document.rindex(end_tag) + len(end_tag)]


def _splice(document: bytes, closing_line: bytes, entries: Iterable[bytes]) -> bytes:
    """``entries`` inserted before the last ``closing_line`` of ``document``."""
    at = document.rindex(closing_line)
    return b"".join((document[:at], *entries, document[at:]))


# --- RSS 2.0 ----------------------------------------------------------------------------------


def render_rss(meta: FeedMeta, items: Sequence[FeedItem], site: Site) -> bytes:
    """RSS 2.0 with content:encoded, dc:creator and media:thumbnail."""
    ordered = _ordered(items)
    changed = _last_change(ordered)
    data: bytes = _rss_generator(meta, site, changed).rss_str(pretty=True)
    if changed is None:
        # feedgen always writes lastBuildDate (default: now); an empty feed must not carry one.
        return _drop_channel_child(data, "lastBuildDate")
    entries = (_rss_item_bytes(item) for item in ordered)
    return _splice(data, b"  </channel>\n", entries)


def _rss_generator(meta: FeedMeta, site: Site, changed: datetime | None) -> Any:
    fg = _base_generator(meta, site, "rss")
    fg.description(_describe(meta, site))
    # By class: load_extension imports by name, and retries a missing "dc_entry" module each time.
    fg.register_extension("dc", DcExtension, DcEntryExtension, atom=False, rss=True)
    fg.register_extension("media", MediaExtension, MediaEntryExtension, atom=False, rss=True)
    if changed is not None:
        fg.lastBuildDate(changed)
        fg.pubDate(changed)
    return fg


@lru_cache(maxsize=ENTRY_CACHE_SIZE)  # serialized once per item, then spliced
def _rss_item_bytes(item: FeedItem) -> bytes:
    fg = _rss_generator(_SCRATCH_META, _SCRATCH_SITE, _utc(item.published))
    _add_rss_item(fg, item)
    return _cut(fg.rss_str(pretty=True), b"<item>", b"</item>\n")


def _add_rss_item(fg: Any, item: FeedItem) -> None:
    entry = fg.add_entry(order="append")
    entry.guid(item_guid(item.id), permalink=False)
    entry.title(_title(item))
    if item.link:
        entry.link(href=xml_safe(item.link), rel="alternate")
    entry.published(_utc(item.published))
    entry.updated(_utc(item.updated))
    summary = xml_safe(item.summary).strip()
    content = xml_safe(item.content_html).strip()
    if summary:
        # <description> carries HTML in practice; escape the plain-text summary for it.
        entry.description(html.escape(summary, quote=False))
    if content:
        entry.content(content)
    if not summary and not content:
        entry.description(html.escape(_title(item), quote=False))
    creator = _creator(item)
    if creator:
        entry.dc.dc_creator(creator)
    categories = _categories(item)
    if categories:
        entry.category(categories)
    if item.image:
        entry.media.thumbnail({"url": xml_safe(item.image)}, group=None)


def _drop_channel_child(data: bytes, tag: str) -> bytes:
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    root = etree.fromstring(data, parser)
    for element in root.findall(f"channel/{tag}"):
        element.getparent().remove(element)
    serialized: bytes = etree.tostring(
        root, pretty_print=True, encoding="UTF-8", xml_declaration=True
    )
    return serialized


# --- Atom 1.0 ---------------------------------------------------------------------------------


def render_atom(meta: FeedMeta, items: Sequence[FeedItem], site: Site) -> bytes:
    """Atom 1.0; the feed id is its own URL, entry ids are ``item_guid`` URNs."""
    ordered = _ordered(items)
    data: bytes = _atom_generator(meta, site, _last_change(ordered) or EPOCH).atom_str(pretty=True)
    entries = (_atom_entry_bytes(item) for item in ordered)
    return _splice(data, b"</feed>\n", entries)


def _atom_generator(meta: FeedMeta, site: Site, updated: datetime) -> Any:
    fg = _base_generator(meta, site, "atom")
    fg.id(feed_url(meta.key, "atom", site))
    fg.subtitle(_describe(meta, site))
    fg.author({"name": xml_safe(site.author).strip() or GENERATOR})
    fg.updated(updated)
    fg.register_extension("media", MediaExtension, MediaEntryExtension, atom=True, rss=False)
    return fg


@lru_cache(maxsize=ENTRY_CACHE_SIZE)
def _atom_entry_bytes(item: FeedItem) -> bytes:
    fg = _atom_generator(_SCRATCH_META, _SCRATCH_SITE, _utc(item.updated))
    _add_atom_entry(fg, item)
    return _cut(fg.atom_str(pretty=True), b"<entry>", b"</entry>\n")


def _add_atom_entry(fg: Any, item: FeedItem) -> None:
    entry = fg.add_entry(order="append")
    entry.id(item_guid(item.id))
    entry.title(_title(item))
    entry.updated(_utc(item.updated))
    entry.published(_utc(item.published))
    creator = _creator(item)
    if creator:
        entry.author({"name": creator})
    summary = xml_safe(item.summary).strip()
    content = xml_safe(item.content_html).strip()
    if summary:
        entry.summary(summary)
    entry.content(content or html.escape(summary or _title(item), quote=False), type="html")
    if item.link:
        entry.link(href=xml_safe(item.link), rel="alternate", type="text/html")
    categories = _categories(item)
    if categories:
        entry.category(categories)
    if item.image:
        entry.media.thumbnail({"url": xml_safe(item.image)}, group=None)


# --- OPML 2.0 ---------------------------------------------------------------------------------


def _grouped(feeds: Iterable[FeedMeta]) -> list[tuple[FeedKind, list[FeedMeta]]]:
    """Feeds by kind (all, sources, topics), caller order kept inside a kind, keys unique."""
    unique: dict[FeedKey, FeedMeta] = {}
    for meta in feeds:
        unique.setdefault(meta.key, meta)
    groups = [
        (kind, [meta for meta in unique.values() if meta.key.kind == kind]) for kind in KIND_ORDER
    ]
    return [(kind, metas) for kind, metas in groups if metas]


def render_opml(feeds: Sequence[FeedMeta], site: Site) -> bytes:
    """OPML 2.0 subscription list: the ``all`` feed, then 来源 and 主题 folders (RSS URLs)."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    # No <docs>: optional, and the W3C validator's OPML grammar refuses it (an error).
    ET.SubElement(head, "title").text = xml_safe(site.title)
    body = ET.SubElement(root, "body")
    for kind, metas in _grouped(feeds):
        parent = body if kind == "all" else ET.SubElement(body, "outline", text=KIND_LABELS[kind])
        for meta in metas:
            _add_outline(parent, meta, site)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return data + b"\n"


def _add_outline(parent: ET.Element, meta: FeedMeta, site: Site) -> None:
    name = _name(meta)
    ET.SubElement(
        parent,
        "outline",
        type="rss",
        version="RSS2",
        text=name,
        title=name,
        description=_describe(meta, site),
        xmlUrl=feed_url(meta.key, "rss", site),
        htmlUrl=site.url(INDEX_PATH),
    )


# --- HTML index -------------------------------------------------------------------------------

_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;max-width:56rem;margin:2rem auto;padding:0 1rem}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left}"
    "td.count{text-align:right;font-variant-numeric:tabular-nums}"
    "tbody th{background:#f4f4f4}"
)
# What a browser may do with a page the server sends: show the index with its own style sheet
# (by its hash), and nothing else: no script, frame, form, plug-in, image or base URL, from
# anywhere. Feed readers ignore it; a feed or OPML file opened in a browser gets it too.
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode("ascii")
CONTENT_SECURITY_POLICY: Final = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def _esc(text: str) -> str:
    return html.escape(xml_safe(text), quote=True)


def render_index(feeds: Sequence[FeedMeta], site: Site, *, limit: int) -> bytes:
    """A small static HTML5 page listing every feed, with autodiscovery links; no scripts.
    Each feed's count is what a subscriber gets (a feed holds its newest ``limit`` items),
    with how many the feed has in all when that is more."""
    groups = _grouped(feeds)
    metas = [meta for _, group in groups for meta in group]
    lines = [
        "<!DOCTYPE html>",
        f'<html lang="{_esc(site.language)}">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(site.title)}</title>",
        *(link for meta in metas for link in _discovery_links(meta, site)),
        f'<link rel="alternate" type="text/x-opml" title="OPML" href="{_esc(_opml_url(site))}">',
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{_esc(site.title)}</h1>",
        f"<p>{_esc(site.description)}</p>",
        f'<p>全部订阅（OPML）：<a href="{_esc(_opml_url(site))}">{OPML_PATH}</a></p>',
        *_feed_table(groups, site, limit),
        "</body>",
        "</html>",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _opml_url(site: Site) -> str:
    return site.url(OPML_PATH)


def _discovery_links(meta: FeedMeta, site: Site) -> list[str]:
    return [
        f'<link rel="alternate" type="{MEDIA_TYPES[fmt]}" title="{_esc(_name(meta))} ({label})"'
        f' href="{_esc(feed_url(meta.key, fmt, site))}">'
        for fmt, label in (("rss", "RSS"), ("atom", "Atom"))
    ]


def _feed_table(groups: list[tuple[FeedKind, list[FeedMeta]]], site: Site, limit: int) -> list[str]:
    lines = [
        "<table>",
        f'<thead><tr><th>订阅</th><th title="{_esc(_COUNT_HEADING.format(limit=limit))}">条目'
        "</th><th>RSS</th><th>Atom</th></tr></thead>",
    ]
    for kind, metas in groups:
        lines.append("<tbody>")
        lines.append(f'<tr><th colspan="4" scope="rowgroup">{KIND_LABELS[kind]}</th></tr>')
        lines.extend(_feed_row(meta, site, limit) for meta in metas)
        lines.append("</tbody>")
    lines.append("</table>")
    return lines


_COUNT_HEADING: Final = "订阅中的条目（每个订阅最多最新 {limit} 条）；更多时括号里是全部条目数"


def _count_cell(count: int, limit: int) -> str:
    """What a subscriber gets: the feed's items up to ``limit``, and how many there are in all
    when the feed holds only the newest of them ("50（共 1,234）")."""
    count = max(count, 0)
    if count <= limit:
        return f"{count:,}"
    return f"{limit:,}（共 {count:,}）"


def _feed_row(meta: FeedMeta, site: Site, limit: int) -> str:
    cells = [
        f'<td title="{_esc(_describe(meta, site))}">{_esc(_name(meta))}</td>',
        f'<td class="count">{_count_cell(meta.count, limit)}</td>',
        f'<td><a href="{_esc(feed_url(meta.key, "rss", site))}">RSS</a></td>',
        f'<td><a href="{_esc(feed_url(meta.key, "atom", site))}">Atom</a></td>',
    ]
    return "<tr>" + "".join(cells) + "</tr>"
