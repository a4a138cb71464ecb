"""Subscribers' own filters on a served feed: ``all.rss?filter=北交所|北证&filterout=广告&limit=9``.

The parameter names are RSSHub's (``filter``, ``filter_title``, ``filterout``,
``filterout_title``, ``limit``), so links people already write keep working. Values are plain
words, ``|`` between alternatives, matched the way topic keywords are (NFKC, case and
traditional/simplified Chinese folded): no regular expressions, so no query can make the
server slow. Every ``filter*`` given must match and no ``filterout*`` may; ``filter`` and
``filterout`` look at the title, summary, content, categories and outlet, the ``_title`` forms
at the title only. ``limit`` keeps the newest N. A filtered feed is cut from the feed file as
written (its newest ``feed.limit`` items), names the filtered URL as its own, and names no
WebSub hub (hubs are told of the unfiltered feeds only). Its dates (RSS ``lastBuildDate`` and
``pubDate``, Atom ``updated``) are those of the items it kept, so an item it drops changes
none of its bytes and a reader polling it gets ``304``.

``opencc=s2t`` (also RSSHub's) serves the feed in traditional Chinese: ``s2t``, ``s2tw``
(Taiwan), ``s2twp`` (Taiwan, with its phrases), ``s2hk`` (Hong Kong) or ``t2s``, with OpenCC.
Only what people read is converted — titles, summaries, the text of the content (not its
markup, links or image addresses), authors, categories, the feed's title and description —
and the feed's language says which script it is in.

Pure: bytes in, bytes out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from urllib.parse import parse_qsl, urlencode

import opencc
from lxml import etree
from lxml import html as lxml_html

from feeds.text import fold

ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
DC = "{http://purl.org/dc/elements/1.1/}"
WORD_PARAMS = ("filter", "filter_title", "filterout", "filterout_title")
PARAMS = (*WORD_PARAMS, "limit", "opencc")
# OpenCC conversions offered, with the language the converted feed declares.
CONVERSIONS = {"s2t": "zh-Hant", "s2tw": "zh-TW", "s2twp": "zh-TW", "s2hk": "zh-HK", "t2s": "zh-CN"}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
READABLE_ATTRIBUTES = ("alt", "title")  # in content: converted; every other attribute is kept
MAX_WORDS = 64  # alternatives over all parameters
_TAG = re.compile(r"<[^>]*>")
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)
ATOM_EPOCH = "1970-01-01T00:00:00+00:00"  # an empty Atom feed's <updated>, as render writes it


class FilterError(ValueError):
    """A filter parameter that cannot be used (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class FeedFilter:
    include: tuple[str, ...] = ()  # folded alternatives: one must be in the item's text
    include_title: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()  # none may be in the item's text
    exclude_title: tuple[str, ...] = ()
    limit: int | None = None
    opencc: str | None = None  # one of CONVERSIONS

    @classmethod
    def from_query(cls, query: bytes) -> FeedFilter | None:
        """The filter a query string asks for; None when it names no filter parameter (other
        parameters, such as a reader's cache buster, are ignored). Values are UTF-8, as
        readers percent-encode what the subscriber typed."""
        text = query.decode("utf-8", "surrogateescape")
        given: dict[str, list[str]] = {}
        for name, value in parse_qsl(text, keep_blank_values=True, errors="surrogateescape"):
            if name in PARAMS:
                if _NOT_UTF8.search(value):  # GBK from an old tool, a cut-off character
                    raise FilterError(f"{name} is not UTF-8 text")
                given.setdefault(name, []).append(value)
        if not given:
            return None
        words = {name: _alternatives(given.get(name, ())) for name in WORD_PARAMS}
        if sum(len(found) for found in words.values()) > MAX_WORDS:
            raise FilterError(f"at most {MAX_WORDS} words in all filter parameters")
        wanted = cls(
            include=words["filter"],
            include_title=words["filter_title"],
            exclude=words["filterout"],
            exclude_title=words["filterout_title"],
            limit=_limit(given.get("limit", ())),
            opencc=_conversion(given.get("opencc", ())),
        )
        return None if wanted == cls() else wanted  # "?filter=" (a form left empty): none

    def query(self) -> str:
        """The canonical query string of this filter (the filtered feed's own URL ends so)."""
        pairs = [
            (name, "|".join(words))
            for name, words in zip(
                WORD_PARAMS,
                (self.include, self.include_title, self.exclude, self.exclude_title),
                strict=True,
            )
            if words
        ]
        if self.limit is not None:
            pairs.append(("limit", str(self.limit)))
        if self.opencc is not None:
            pairs.append(("opencc", self.opencc))
        return urlencode(pairs)

    def keeps(self, title: str, text: str) -> bool:
        """``title`` and ``text`` (title, summary, content, categories, outlet) are folded."""
        return (
            _any_in(self.include, text, default=True)
            and _any_in(self.include_title, title, default=True)
            and not _any_in(self.exclude, text, default=False)
            and not _any_in(self.exclude_title, title, default=False)
        )


def _alternatives(values: Iterable[str]) -> tuple[str, ...]:
    words = (fold(word).strip() for value in values for word in value.split("|"))
    return tuple(dict.fromkeys(word for word in words if word))


def _limit(values: Iterable[str]) -> int | None:
    found = None
    for value in values:
        if not (value.isascii() and value.strip().isdigit()) or int(value) < 1:
            raise FilterError(f"limit must be a whole number above 0, not {value!r}")
        found = int(value) if found is None else min(found, int(value))
    return found


def _conversion(values: Iterable[str]) -> str | None:
    found = None
    for value in values:
        wanted = value.strip().lower()
        if wanted not in CONVERSIONS:
            raise FilterError(f"opencc must be one of {', '.join(CONVERSIONS)}, not {value!r}")
        if found is not None and found != wanted:
            raise FilterError("opencc given twice with different values")
        found = wanted
    return found


def _any_in(words: tuple[str, ...], text: str, *, default: bool) -> bool:
    return any(word in text for word in words) if words else default


def filter_feed(document: bytes, wanted: FeedFilter, own_url: str) -> bytes:
    """The RSS 2.0 or Atom ``document`` with only the items ``wanted`` keeps."""
    root = etree.fromstring(document, _PARSER)
    fields: Callable[[etree._Element], tuple[str, str]]
    if root.tag == "rss":
        parent, item_tag, fields = root.find("channel"), "item", _rss_fields
        if parent is None:
            raise FilterError("not an RSS 2.0 feed")
    elif root.tag == f"{ATOM}feed":
        parent, item_tag, fields = root, f"{ATOM}entry", _atom_fields
        feed_id = root.find(f"{ATOM}id")
        if feed_id is not None:
            feed_id.text = own_url
    else:
        raise FilterError("not a feed")
    items = parent.findall(item_tag)
    kept: list[etree._Element] = []
    for item in items:
        title, text = fields(item)
        if len(kept) == wanted.limit or not wanted.keeps(fold(title), fold(text)):
            parent.remove(item)
        else:
            kept.append(item)
    if len(kept) < len(items):
        (_date_rss if root.tag == "rss" else _date_atom)(parent, kept)
    if wanted.opencc is not None:
        (_convert_rss if root.tag == "rss" else _convert_atom)(parent, wanted.opencc)
    for link in parent.findall(f"{ATOM}link"):
        if link.get("rel") == "hub":
            parent.remove(link)
        elif link.get("rel") == "self":
            link.set("href", own_url)
    data: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    return data + b"\n"


def _date_rss(channel: etree._Element, kept: list[etree._Element]) -> None:
    """The channel dated by its newest kept item (RSS items carry no update time), undated
    when empty, as an unfiltered feed is."""
    newest = _newest((item.findtext("pubDate") or "" for item in kept), parsedate_to_datetime)
    for tag in ("lastBuildDate", "pubDate"):
        element = channel.find(tag)
        if element is None:
            continue
        if newest is None:
            channel.remove(element)
        else:
            element.text = newest


def _date_atom(feed: etree._Element, kept: list[etree._Element]) -> None:
    """The feed's ``updated``: the latest ``updated`` or ``published`` of its kept entries."""
    dates = (
        entry.findtext(f"{ATOM}{tag}") or "" for entry in kept for tag in ("updated", "published")
    )
    element = feed.find(f"{ATOM}updated")
    if element is not None:
        element.text = _newest(dates, datetime.fromisoformat) or ATOM_EPOCH


def _newest(texts: Iterable[str], parse: Callable[[str], datetime]) -> str | None:
    """The latest of these dates, as written; one that cannot be read (a feed file not written
    by ``render``) is passed over, one without a zone taken as UTC."""
    dated: list[tuple[datetime, str]] = []
    for text in (text.strip() for text in texts):
        try:
            moment = parse(text)
        except (TypeError, ValueError, IndexError):
            continue
        dated.append((moment if moment.tzinfo else moment.replace(tzinfo=UTC), text))
    return max(dated)[1] if dated else None


def _plain(markup: str | None) -> str:
    return html.unescape(_TAG.sub(" ", markup or ""))


def _rss_fields(item: etree._Element) -> tuple[str, str]:
    title = item.findtext("title") or ""
    parts = [
        title,
        _plain(item.findtext("description")),
        _plain(item.findtext(f"{CONTENT}encoded")),
        item.findtext(f"{DC}creator") or "",
        *(category.text or "" for category in item.findall("category")),
    ]
    return title, "\n".join(parts)


def _atom_fields(entry: etree._Element) -> tuple[str, str]:
    title = entry.findtext(f"{ATOM}title") or ""
    parts = [
        title,
        _plain(entry.findtext(f"{ATOM}summary")),
        _plain(entry.findtext(f"{ATOM}content")),
        *(name.text or "" for name in entry.findall(f"{ATOM}author/{ATOM}name")),
        *(category.get("term", "") for category in entry.findall(f"{ATOM}category")),
    ]
    return title, "\n".join(parts)


# --- simplified/traditional Chinese ------------------------------------------------------------


@cache
def _converter(conversion: str) -> Callable[[str], str]:
    """OpenCC's conversion; shared by the request threads, as ``fold``'s is (it only reads)."""
    return opencc.OpenCC(conversion).convert


def _convert_rss(channel: etree._Element, conversion: str) -> None:
    convert = _converter(conversion)
    language = channel.find("language")
    if language is not None:
        language.text = CONVERSIONS[conversion]
    _convert_texts(channel, ("title", "description"), convert)
    for item in channel.iter("item"):
        _convert_texts(item, ("title", "description", f"{DC}creator", "category"), convert)
        for content in item.iter(f"{CONTENT}encoded"):
            content.text = _convert_markup(content.text, convert)


def _convert_atom(feed: etree._Element, conversion: str) -> None:
    convert = _converter(conversion)
    feed.set(XML_LANG, CONVERSIONS[conversion])
    _convert_texts(feed, (f"{ATOM}title", f"{ATOM}subtitle"), convert)
    for entry in feed.iter(f"{ATOM}entry"):
        _convert_texts(entry, (f"{ATOM}title", f"{ATOM}author/{ATOM}name"), convert)
        for element in (*entry.findall(f"{ATOM}summary"), *entry.findall(f"{ATOM}content")):
            if element.get("type") == "html":
                element.text = _convert_markup(element.text, convert)
            else:
                element.text = convert(element.text or "")
        for category in entry.findall(f"{ATOM}category"):
            for attribute in ("term", "label"):
                if category.get(attribute):
                    category.set(attribute, convert(category.get(attribute, "")))


def _convert_texts(
    parent: etree._Element, paths: Iterable[str], convert: Callable[[str], str]
) -> None:
    for path in paths:
        for element in parent.findall(path):
            if element.text:
                element.text = convert(element.text)


def _convert_markup(markup: str | None, convert: Callable[[str], str]) -> str:
    """The text of an HTML fragment converted; its tags, links and image addresses kept."""
    if not markup or markup.isascii():
        return markup or ""
    holder = lxml_html.fragment_fromstring(markup, create_parent="div")
    for element in holder.iter():
        if element.text:
            element.text = convert(element.text)
        if element.tail and element is not holder:
            element.tail = convert(element.tail)
        for attribute in READABLE_ATTRIBUTES:
            value = element.get(attribute)
            if value:
                element.set(attribute, convert(value))
    return (holder.text or "") + "".join(
        lxml_html.tostring(child, encoding="unicode") for child in holder
    )
