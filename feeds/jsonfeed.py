"""JSON Feed 1.1 (https://jsonfeed.org/version/1.1) of a feed, made from the Atom file render wrote.

The server answers ``all.json``, ``sources/<slug>.json`` and ``topics/<slug>.json`` with this
conversion of the ``.atom`` beside them (after the subscriber's own filters, if any), so the
JSON holds exactly what the Atom feed holds: the same ids, dates, content and order. Nothing is
written to the output folder for it. Readers that take JSON Feed (NetNewsWire, Miniflux,
Feedbin) and scripts that would rather not read XML get it this way.

Pure: Atom bytes in, JSON bytes out.
"""

from __future__ import annotations

import json
from typing import Any

from lxml import etree

VERSION = "https://jsonfeed.org/version/1.1"
ATOM = "{http://www.w3.org/2005/Atom}"
MEDIA = "{http://search.yahoo.com/mrss/}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


class NotAtom(ValueError):
    """The document is not an Atom feed."""


def json_feed(atom: bytes, feed_url: str) -> bytes:
    """The JSON Feed of the Atom document ``atom``, naming ``feed_url`` as its own URL."""
    root = etree.fromstring(atom, _PARSER)
    if root.tag != f"{ATOM}feed":
        raise NotAtom("not an Atom feed")
    feed: dict[str, Any] = {"version": VERSION, "title": root.findtext(f"{ATOM}title") or ""}
    _put(feed, "home_page_url", _link(root, "alternate"))
    feed["feed_url"] = feed_url
    _put(feed, "description", root.findtext(f"{ATOM}subtitle"))
    _put(feed, "language", root.get(XML_LANG))
    _put(feed, "authors", _authors(root))
    feed["items"] = [_item(entry) for entry in root.iterfind(f"{ATOM}entry")]
    text = json.dumps(feed, ensure_ascii=False, indent=2)
    return (text + "\n").encode("utf-8")


def _item(entry: etree._Element) -> dict[str, Any]:
    item: dict[str, Any] = {"id": entry.findtext(f"{ATOM}id") or ""}
    _put(item, "url", _link(entry, "alternate"))
    _put(item, "title", entry.findtext(f"{ATOM}title"))
    content = entry.find(f"{ATOM}content")
    body = "" if content is None else content.text or ""
    if content is not None and content.get("type") == "html":
        item["content_html"] = body
    else:
        item["content_text"] = body
    _put(item, "summary", entry.findtext(f"{ATOM}summary"))
    thumbnail = entry.find(f"{MEDIA}thumbnail")
    _put(item, "image", thumbnail.get("url") if thumbnail is not None else None)
    _put(item, "date_published", entry.findtext(f"{ATOM}published"))
    _put(item, "date_modified", entry.findtext(f"{ATOM}updated"))
    _put(item, "authors", _authors(entry))
    terms = [c.get("term", "") for c in entry.iterfind(f"{ATOM}category")]
    _put(item, "tags", [term for term in dict.fromkeys(terms) if term])
    return item


def _link(element: etree._Element, rel: str) -> str | None:
    """The href of ``element``'s link with ``rel`` (Atom's default rel is ``alternate``)."""
    for link in element.iterfind(f"{ATOM}link"):
        if link.get("rel", "alternate") == rel and link.get("href"):
            return str(link.get("href"))
    return None


def _authors(element: etree._Element) -> list[dict[str, str]]:
    names = (author.findtext(f"{ATOM}name") for author in element.iterfind(f"{ATOM}author"))
    return [{"name": name} for name in names if name]


def _put(target: dict[str, Any], key: str, value: object) -> None:
    """JSON Feed leaves out what is unknown rather than writing empty values."""
    if value:
        target[key] = value
