"""Plain, immutable data passed between pipeline stages.

Nothing here does I/O. Datetimes are always timezone-aware (UTC once normalized).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

BodyFormat = Literal["html", "markdown"]
FrontMatterKind = Literal["yaml", "toml", "json", "none"]
Dialect = Literal["hexo", "jekyll", "plain"]
DateOrigin = Literal["front-matter", "file-name", "mtime"]


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What a stat() tells about an article file; enough to know whether it changed."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class RawArticle:
    """A file split into front matter and body; nothing interpreted yet."""

    path: str
    meta: Mapping[str, Any]
    body: str
    body_format: BodyFormat
    front_matter: FrontMatterKind
    encoding: str
    mtime_ns: int
    size: int


@dataclass(frozen=True, slots=True)
class CleanBody:
    """The result of cleaning an article body (see ``feeds.clean``)."""

    html: str  # sanitized HTML, boilerplate removed, URLs absolute
    text: str  # plain text of ``html`` (paragraphs joined by newlines)
    first_image: str | None  # first usable <img src>, absolute
    original_link: str | None  # an "original article" autolink found in the body (then removed)
    source_line: str | None  # outlet named by a "（文章来源：X）" line


@dataclass(frozen=True, slots=True)
class Article:
    """One normalized article file. ``feeds.normalize`` builds it from a RawArticle."""

    path: str
    title: str
    title_derived: bool  # True when front matter had no usable title
    link: str | None
    published: datetime  # aware, UTC
    date_origin: DateOrigin
    updated: datetime | None  # aware, UTC; from front matter only
    source_name: str
    source_slug: str
    categories: tuple[str, ...]
    language: str
    content_html: str
    text: str  # plain text of the content, used for fingerprints and topic matching
    summary: str
    image: str | None
    author: str = ""  # the people front-matter ``author`` names (never the outlet's name)


@dataclass(frozen=True, slots=True)
class TopicMatch:
    """Why an item belongs to a topic: which rule, which word, in which field."""

    topic: str  # topic slug
    rule: str  # "keywords" | "all" | "regex" | "source"
    word: str
    field: str  # "title" | "summary" | "content" | "source"


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One entry as a feed shows it. Built by the store for ``feeds.render``."""

    id: str  # stable item id (hex); never changes once issued
    title: str
    link: str | None
    published: datetime
    updated: datetime
    source_name: str
    source_slug: str
    categories: tuple[str, ...]
    content_html: str
    summary: str
    image: str | None
    language: str = "zh-CN"
    sources: tuple[tuple[str, str], ...] = ()  # every (slug, name) the story came from
    author: str = ""  # the people who wrote it, when its front matter names them


FeedKind = Literal["all", "source", "topic"]
FEED_FORMATS = ("rss", "atom")  # every feed is written in each: <path_stem>.rss, .atom
FEED_SUFFIXES = tuple(f".{fmt}" for fmt in FEED_FORMATS)


@dataclass(frozen=True, slots=True)
class FeedKey:
    """Identifies one feed; ``path_stem`` is its place in the output tree (never changes)."""

    kind: FeedKind
    slug: str = ""

    @property
    def name(self) -> str:
        return "all" if self.kind == "all" else f"{self.kind}:{self.slug}"

    @property
    def path_stem(self) -> str:
        return "all" if self.kind == "all" else f"{self.kind}s/{self.slug}"

    @classmethod
    def parse(cls, name: str) -> FeedKey:
        if name == "all":
            return cls("all")
        kind, _, slug = name.partition(":")
        if kind not in ("source", "topic") or not slug:
            raise ValueError(f"not a feed name: {name!r}")
        return cls(kind, slug)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class FeedMeta:
    """Feed-level fields for rendering one feed."""

    key: FeedKey
    title: str
    description: str
    count: int = 0  # items in the store for this feed (the index shows it)
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Site:
    """Site-wide facts every rendered document needs."""

    base_url: str  # absolute, ends with "/"
    title: str
    description: str
    language: str = "zh-CN"
    author: str = "feeds"
    hubs: tuple[str, ...] = ()  # WebSub hubs every feed names

    def url(self, relpath: str) -> str:
        return self.base_url + relpath.lstrip("/")
