"""``RawArticle`` -> ``Article``: every field cleaned and typed. Pure: no I/O; rules are args."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from functools import lru_cache
from itertools import islice
from pathlib import PurePath
from typing import Any
from zoneinfo import ZoneInfo

from feeds.classify import UNKNOWN_SOURCE, Outlet, SourceResolver
from feeds.clean import (
    clean_body,
    html_to_text,
    markdown_to_html,
    story_lead,
    summarize,
    without_template_tags,
)
from feeds.config import Config
from feeds.dates import date_from_filename, parse_date
from feeds.errors import DRAFT_REASON, ArticleError, Unpublished
from feeds.model import Article, CleanBody, DateOrigin, RawArticle
from feeds.text import collapse_whitespace, defang, fold, xml_safe

LINK_KEYS = ("link", "url", "permalink", "source_url", "original_url", "canonical_url")
DATE_KEYS = ("date", "published", "pubDate", "pubdate", "created", "created_at")
UPDATED_KEYS = ("updated", "lastmod", "last_modified_at", "modified", "updated_at")
IMAGE_KEYS = ("headimg", "thumbnail", "image", "cover", "banner")
SUMMARY_KEYS = ("description", "summary", "excerpt")
SOURCE_KEYS = ("source", "author")
# Every front-matter field normalization reads: a post's front matter names at least one.
FRONT_MATTER_KEYS = frozenset(
    (
        "title", "categories", "tags", "draft", "published", "lang", "language",
        *LINK_KEYS, *DATE_KEYS, *UPDATED_KEYS, *IMAGE_KEYS, *SUMMARY_KEYS, *SOURCE_KEYS,
    )
)  # fmt: skip
# What reading a file yields (parse and normalize): raised when a release reads existing files
# differently, so that a store built before re-reads every file once. 2: Hexo's unopened and
# JSON front matter, Jekyll's "...", authors naming people, category hierarchies.
READ_VERSION = "2"
TITLE_FROM_BODY_CHARS = 60
# Bounds on front-matter fields (a 4 MB title or 200,000 tags would be copied into every feed).
TITLE_MAX_CHARS = 300
NAME_MAX_CHARS = 100  # an outlet name, a category or a tag
LIST_MAX_ITEMS = 50  # categories, tags
URL_MAX_CHARS = 2048  # longer links and images are dropped: no server takes them
# Markup in a title is stripped, but only markup: "<关注>", "<A股>" or "a<b" are text a scraper
# kept, and stay (defanged where a reader could take them for a tag).
_MARKUP_TAGS = (
    "a|abbr|b|big|br|cite|code|del|div|em|font|h[1-6]|i|img|ins|kbd|mark|p|q|s|small|span|"
    "strike|strong|sub|sup|time|tt|u|var|wbr"
)
_MARKUP_TAG = rf"</?(?:{_MARKUP_TAGS})(?:\s[^<>]*)?/?>"
_TAG = re.compile(rf"<!--.*?-->|{_MARKUP_TAG}", re.IGNORECASE | re.DOTALL)
_TAG_NOT_COMMENT = re.compile(_MARKUP_TAG, re.IGNORECASE)
# One character that is neither space nor "/" after the "//", then no space: "[^\s/]+\S*$"
# says the same, but backtracks over every split of a long spaced value (quadratic).
_URL = re.compile(r"^(?:https?:)?//[^\s/]\S*$", re.IGNORECASE)
# Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): in one
# line of plain text they turn what follows around ("Trojan Source"), in a reader's list or a
# chat message beyond the title itself; no Chinese headline needs them.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
_NOT_IN_URLS = re.compile('[\x00-\x20"<>\\\\^`{|}\x7f]')


@dataclass(frozen=True, slots=True)
class NormalizeRules:
    """The slice of config normalization needs (picklable, for worker processes)."""

    zone: ZoneInfo
    language: str
    summary_chars: int
    sources: SourceResolver

    @classmethod
    def from_config(cls, config: Config) -> NormalizeRules:
        return cls(
            zone=config.zone,
            language=config.language,
            summary_chars=config.feed.summary_chars,
            sources=SourceResolver(config.sources, config.cleanup),
        )


NOTHING_TO_PUBLISH = "nothing to publish: no title and an empty body"


def normalize(raw: RawArticle, rules: NormalizeRules) -> Article:
    meta = raw.meta
    draft = _draft_flag(meta)
    if draft:
        raise Unpublished(raw.path, f"{DRAFT_REASON} ({draft} in its front matter): not published")
    byline = _byline(meta.get("author"), rules.sources)
    declared_outlet = _declared_outlet(meta, byline, rules.sources)
    link = _meta_link(meta)
    if raw.body_format == "markdown":
        html_body = markdown_to_html(without_template_tags(raw.body))
    else:
        html_body = raw.body
    cleanup = (declared_outlet or rules.sources.resolve(UNKNOWN_SOURCE)).cleanup
    body = clean_body(html_body, cleanup, base_url=link)
    outlet = declared_outlet or _outlet_from_body_or_path(meta, body, rules.sources)
    title, derived = _title(meta, body, raw.path)
    if not derived:
        title = _without_site_suffix(title, cleanup.title_suffixes, rules.sources)
    titled = _without_title_heading(body, title)
    if titled is not body:  # the post's own "# 标题" line: a real title, whatever its source
        body, derived = titled, False
    if derived and not body.text.strip() and body.first_image is None:
        # A shell a scraper left (title " ", empty body): an item would be a blank "无标题".
        raise ArticleError(raw.path, NOTHING_TO_PUBLISH)
    published, origin = _published(raw, rules.zone, outlet)
    image = _meta_image(meta, cleanup.ignore_images) or _bounded_url(body.first_image)
    return Article(
        path=raw.path,
        title=title,
        title_derived=derived,
        link=link or _bounded_url(body.original_link),
        published=published,
        date_origin=origin,
        updated=_first_date(meta, UPDATED_KEYS, rules.zone, outlet.gmt_is_local),
        source_name=outlet.name,
        source_slug=outlet.slug,
        author=_item_author(byline, outlet),
        categories=_categories(meta),
        language=_text(meta.get("lang") or meta.get("language")) or rules.language,
        content_html=body.html,
        text=body.text,
        summary=defang(_line_text(_summary(meta, body.text, title, rules.summary_chars)))
        or summarize(title, 200),
        image=image,
    )


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _draft_flag(meta: Mapping[str, Any]) -> str | None:
    """``draft: true`` (Hexo, Hugo) or ``published: false`` (Jekyll, Hexo), as written; None for
    a post to publish. YAML 1.1 reads yes/no/on/off as booleans; quoted words count too."""
    draft = str(meta.get("draft", "")).strip().lower()  # True -> "true", as YAML reads it
    if draft in _TRUE:
        return f"draft: {draft}"
    published = str(meta.get("published", "")).strip().lower()
    if published in _FALSE:
        return f"published: {published}"
    return None


def plain(value: object) -> str:
    """Front-matter value -> one line of plain text (tags stripped, entities decoded, and no
    tag left that a reader treating it as HTML could see: ``defang``)."""
    if isinstance(value, str) and len(value) <= _REMEMBERED_CHARS:
        return _plain_name(value)
    return _plain(_text(value))


# Outlet names, categories and tags recur from article to article (and each is read twice).
_REMEMBERED_CHARS = 100


@lru_cache(maxsize=4096)
def _plain_name(text: str) -> str:
    return _plain(text)


def _plain(text: str) -> str:
    if "<" in text:
        text = _without_markup(text)
    if "&" in text:
        text = html.unescape(text)
        if "&" in text:  # escaped twice on its way ("&amp;amp;"): a reader would see "&amp;"
            text = html.unescape(text)
    return defang(collapse_whitespace(_line_text(text)))


def _line_text(text: str) -> str:
    """``text`` without what XML cannot carry and without bidirectional controls."""
    return _BIDI_CONTROLS.sub("", xml_safe(text))


def _without_markup(text: str) -> str:
    """``text`` without comments and markup tags. A comment is only removed up to the last
    "-->": past it, ``<!--.*?-->`` would search the rest of the text from every "<!--" in
    vain (a title of 75,000 of them took minutes)."""
    end = text.rfind("-->") + 3 if "<!--" in text else 0  # 2 when there is none
    if end < 3:
        return _TAG_NOT_COMMENT.sub("", text)
    return _TAG.sub("", text[:end]) + _TAG_NOT_COMMENT.sub("", text[end:])


def _text(value: object) -> str:
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, str | int | float):
        return str(value)
    return ""


def _title(meta: Mapping[str, Any], body: CleanBody, path: str) -> tuple[str, bool]:
    value = meta.get("title")
    if isinstance(value, date):  # "title: 2024-03-05", a daily report: YAML reads a date
        value = value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    title = plain(value)
    if len(title) > TITLE_MAX_CHARS:
        title = summarize(title, TITLE_MAX_CHARS)
    if title:
        return title, False
    first_line = next((line.strip() for line in body.text.splitlines() if line.strip()), "")
    if first_line:
        return defang(_line_text(summarize(first_line, TITLE_FROM_BODY_CHARS))), True
    stem = PurePath(path).stem.strip().lstrip("-").strip()
    return (plain(stem.replace("_", " ")) or "无标题"), True


# The heading a Markdown post opens with ("# 标题"), after any wrappers of the whole body.
_OPENING_HEADING = re.compile(r"((?:<div>\s*)*)<h([1-6])>(.*?)</h\2>\s*", re.DOTALL)
_NOT_WORD = re.compile(r"[\W_]+")


def _without_title_heading(body: CleanBody, title: str) -> CleanBody:
    """The body without an opening heading that repeats the title (a reader shows the title
    right above it): in front matter and again as "# 标题", or the title taken from it."""
    heading = _OPENING_HEADING.match(body.html)
    if heading is None:
        return body
    first_line, _, rest = body.text.partition("\n")
    if not rest or _comparable(first_line) != _comparable(title):
        return body
    if _comparable(html.unescape(_without_markup(heading[3]))) != _comparable(first_line):
        return body
    return replace(body, html=heading[1] + body.html[heading.end() :], text=rest)


def _comparable(text: str) -> str:
    return _NOT_WORD.sub("", fold(text))


_SUFFIX_SEPARATORS = "_|｜—–-"
_LAST_SEPARATOR = re.compile(rf".*[{re.escape(_SUFFIX_SEPARATORS)}]", re.DOTALL)
_SITE_SUFFIXES_MAX = 3  # "标题_新浪财经_新浪网"


def _without_site_suffix(title: str, suffixes: tuple[str, ...], sources: SourceResolver) -> str:
    """``title`` without the site names a scraped <title> ends with (``_新浪财经_新浪网``,
    `` - 东方财富网``): a last segment after a separator that is a configured site name or a
    known outlet's spelling."""
    for _ in range(_SITE_SUFFIXES_MAX):
        last = _LAST_SEPARATOR.match(title)
        cut = last.end() - 1 if last else -1
        head = title[:cut].rstrip(_SUFFIX_SEPARATORS + " ")
        name = title[cut + 1 :].strip()
        if cut < 0 or not head or not name or not _is_site_name(name, suffixes, sources):
            break
        title = head
    return title


def _is_site_name(name: str, suffixes: tuple[str, ...], sources: SourceResolver) -> bool:
    return sources.lookup(name) is not None or _folded_name(name) in _folded(suffixes)


@lru_cache(maxsize=4096)  # title segments recur ("新浪网"); folding one costs microseconds
def _folded_name(name: str) -> str:
    return fold(name)


@lru_cache(maxsize=64)
def _folded(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(fold(name) for name in names)


def _meta_link(meta: Mapping[str, Any]) -> str | None:
    for key in LINK_KEYS:
        value = _text(meta.get(key)).strip()
        if _URL.match(value):
            return _bounded_url("https:" + value if value.startswith("//") else value)
    return None


def _bounded_url(url: str | None) -> str | None:
    """A usable URL: not absurdly long, and the characters no URL may hold (RFC 3986: space,
    controls, ``"<>\\^`{|}``) percent-encoded, so that no feed, chat markup or page that
    quotes it can be broken out of."""
    if url is None or len(url) > URL_MAX_CHARS:
        return None
    return _NOT_IN_URLS.sub(lambda m: f"%{ord(m.group()):02X}", url)


def _meta_image(meta: Mapping[str, Any], ignored: Iterable[str]) -> str | None:
    for key in IMAGE_KEYS:
        value = _text(meta.get(key)).strip()
        if not _URL.match(value):
            continue
        url = _bounded_url("https:" + value if value.startswith("//") else value)
        if url is not None and not any(fragment in url for fragment in ignored):
            return url
    return None


def _first_date(
    meta: Mapping[str, Any], keys: Iterable[str], zone: ZoneInfo, gmt_is_local: bool
) -> datetime | None:
    for key in keys:
        if key in meta:
            found = parse_date(meta[key], zone, gmt_is_local=gmt_is_local)
            if found is not None:
                return found
    return None


def _published(raw: RawArticle, zone: ZoneInfo, outlet: Outlet) -> tuple[datetime, DateOrigin]:
    found = _first_date(raw.meta, DATE_KEYS, zone, outlet.gmt_is_local)
    if found is not None:
        return found, "front-matter"
    from_name = date_from_filename(PurePath(raw.path).name, zone)
    if from_name is not None:
        return from_name, "file-name"
    return datetime.fromtimestamp(raw.mtime_ns / 1e9, UTC).replace(microsecond=0), "mtime"


@dataclass(frozen=True, slots=True)
class Byline:
    """What front-matter ``author`` says: the people who wrote the article, or an outlet."""

    written: str  # the value as written (plain text)
    people: str  # the names, without a role word ("张三、李四"); "" when it names an outlet
    outlet: Outlet | None  # the outlet ``author`` names, if any: "新浪财经", or "证券时报记者 张三"


# A reporter's byline: an optional outlet ("证券时报", "本报"), a role word, then the names
# ("记者 张三", "本报记者：李四", "作者/王五", "记者张三"). "文/" and "图/" credits need the slash.
_ROLES = "责任编辑|实习记者|特约记者|记者|作者|编辑|责编|撰稿|撰文|采写|编译|整理|主笔"
_ROLE_BYLINE = re.compile(
    rf"^(?P<outlet>[^\s：:/／|]{{0,12}}?)\s*(?:{_ROLES})"
    r"(?P<separator>\s*[：:/／|]\s*|\s+)?(?P<people>\S.*)$"
)
_CREDIT_BYLINE = re.compile(r"^(?:文|图|摄影|口述)\s*[/／：:|]\s*(?P<people>\S.*)$")
# Several people: names of two to four Chinese characters, listed with "、" "，" "," "/" ";"
# (or spaces, for names of two or three characters that do not end like an outlet's name).
_NAME = re.compile(r"[\u4e00-\u9fff]{2,4}")
_NAME_LIST_SEPARATORS = re.compile(r"\s*[、，,/／;；|]\s*")
_OUTLET_ENDINGS = (*"网社报台刊站所部会局院", "财经", "新闻", "资讯", "快讯")


def _byline(value: object, sources: SourceResolver) -> Byline | None:
    if isinstance(value, Mapping):  # Hexo themes' "author: {name: 张三, link: …}": a person
        value = [value.get("name")]
    if isinstance(value, list | tuple):  # "author: [张三, 李四]": an outlet is never a list
        names = "、".join(_string_list(value))
        return Byline(names, names, None) if names else None
    written = plain(value)[:NAME_MAX_CHARS].strip()
    if not written:
        return None
    credit = _CREDIT_BYLINE.match(written)
    if credit is not None:
        return Byline(written, credit["people"], None)
    role = _ROLE_BYLINE.match(written)
    if role is not None and (role["separator"] or _is_name(role["people"])):
        outlet = role["outlet"]
        return Byline(written, role["people"], sources.lookup(outlet) if outlet else None)
    if _is_name_list(written):
        return Byline(written, written, None)
    return Byline(written, "", sources.resolve(written))


def _is_name_list(text: str) -> bool:
    names = _NAME_LIST_SEPARATORS.split(text)
    if len(names) < 2:
        names = text.split()
        if any(len(name) > 3 for name in names):
            return False
    return len(names) >= 2 and all(_is_name(name) for name in names)


def _is_name(text: str) -> bool:
    return _NAME.fullmatch(text) is not None and not text.endswith(_OUTLET_ENDINGS)


def _declared_outlet(
    meta: Mapping[str, Any], byline: Byline | None, sources: SourceResolver
) -> Outlet | None:
    """The outlet ``source`` names, else the one ``author`` names (never a person's name)."""
    name = plain(meta.get("source"))[:NAME_MAX_CHARS].strip()
    if name:
        return sources.resolve(name)
    return byline.outlet if byline is not None else None


def _item_author(byline: Byline | None, outlet: Outlet) -> str:
    """Who the entry names as its author instead of its outlet: the people ``author`` names,
    or what ``author`` says when ``source`` named another outlet."""
    if byline is None:
        return ""
    if byline.people:
        return byline.people
    if byline.outlet is not None and byline.outlet.slug != outlet.slug:
        return byline.written
    return ""


def _outlet_from_body_or_path(
    meta: Mapping[str, Any], body: CleanBody, sources: SourceResolver
) -> Outlet:
    if body.source_line:
        return sources.resolve(body.source_line)
    path = _category_path(meta.get("categories"))
    if len(path) >= 3:  # Hexo category path: 金融/<outlet>/<feed>
        return sources.resolve(path[1])
    for candidate in (*_string_list(meta.get("tags")), *_category_names(meta)):
        known = sources.lookup(candidate)
        if known is not None:
            return known
    tags = _string_list(meta.get("tags"))
    return sources.resolve(tags[0] if tags else UNKNOWN_SOURCE)


_LIST_SEPARATORS = re.compile("[,，、]")


def _string_list(value: object) -> list[str]:
    """Categories or tags: at most ``LIST_MAX_ITEMS`` names of ``NAME_MAX_CHARS`` each. A string
    is split at commas (``,`` ``，`` ``、``), else at spaces (Jekyll's lists); nested lists
    (Hexo's category hierarchies, ``[[金融, 证券时报网], 快讯]``) give all their names."""
    if isinstance(value, str):
        split = _LIST_SEPARATORS.split if _LIST_SEPARATORS.search(value) else str.split
        parts: list[object] = list(split(value))
    elif isinstance(value, list | tuple):
        parts = [part for item in value for part in _nested(item)]
    else:
        return []
    names = (plain(part)[:NAME_MAX_CHARS].strip() for part in parts)
    return list(islice((name for name in names if name), LIST_MAX_ITEMS))


def _nested(item: object) -> list[object]:
    return list(item[:LIST_MAX_ITEMS]) if isinstance(item, list | tuple) else [item]


def _category_path(value: object) -> list[str]:
    """The hierarchy a Hexo post is filed under: its category list, or the first of several
    (``[[金融, 证券时报网, 快讯], [专题]]``; a plain name among them is a hierarchy of one)."""
    if isinstance(value, list | tuple) and any(isinstance(item, list | tuple) for item in value):
        return _string_list(_nested(value[0]))
    return _string_list(value)


def _category_names(meta: Mapping[str, Any]) -> list[str]:
    """``categories``, and Jekyll's singular ``category`` (one name, as Jekyll reads it)."""
    return [*_string_list(meta.get("categories")), *_string_list([meta.get("category")])]


def _categories(meta: Mapping[str, Any]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in (*_category_names(meta), *_string_list(meta.get("tags"))):
        seen.setdefault(value, None)
    return tuple(seen)


def _summary(meta: Mapping[str, Any], text: str, title: str, limit: int) -> str:
    for key in SUMMARY_KEYS:
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            return summarize(collapse_whitespace(html_to_text(value)), limit)
    return summarize(_without_title_tag(story_lead(text), title), limit)


# Weibo-style "【#标题#】" or "[标题：#话题#]" opening the text: the title again, as a tag.
_TITLE_TAG = re.compile(r"[【\[]([^】\]\n]{1,120})[】\]]\s*")


def _without_title_tag(text: str, title: str) -> str:
    if text[:1] not in "【[" or not title:
        return text
    tag = _TITLE_TAG.match(text)
    if tag is None or not _comparable(tag[1]).startswith(_comparable(title)):
        return text
    return text[tag.end() :] or text
