"""Sources (outlet names -> one display name and slug) and topics (keyword rules). Pure."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import _lru_cache_wrapper, lru_cache

from feeds.config import CleanupRules, SourceRule, TopicRule
from feeds.model import Article, TopicMatch
from feeds.text import fold, slugify

UNKNOWN_SOURCE = "未知来源"
# What the outlet slugs stored in the state (each unconfigured outlet's claim) mean: another
# version re-reads every file (pipeline.CODE_VERSIONS), so every file gets its outlet's claim.
OUTLET_SLUGS_VERSION = "2"  # 2: unconfigured outlets claim their slug; a later homophone hashes
_NEWS_SUFFIX = re.compile(r"(新闻|快讯|资讯)$")
_NOT_WORD = re.compile(r"[\W_]+")
_REMEMBERED_NAMES = 4096  # outlet spellings answered from memory, per resolver


@dataclass(frozen=True, slots=True)
class Outlet:
    name: str
    slug: str
    gmt_is_local: bool
    cleanup: CleanupRules


class SourceResolver:
    """Maps any spelling of an outlet (name, alias, slug, "X新闻" tag) to one ``Outlet``.

    ``lookup`` and ``resolve`` remember their answers by the name as given (bounded, least
    recently used): every article asks about a handful of spellings, and each answer folds the
    name (NFKC, traditional -> simplified)."""

    def __init__(self, rules: Sequence[SourceRule], global_cleanup: CleanupRules) -> None:
        self._global = global_cleanup
        self._by_key: dict[str, Outlet] = {}
        self._configured_slugs: set[str] = set()
        for rule in rules:
            outlet = Outlet(
                name=rule.name,
                slug=rule.slug or slugify(rule.name),
                gmt_is_local=rule.gmt_is_local,
                cleanup=global_cleanup.merged(rule.cleanup),
            )
            for spelling in (rule.name, outlet.slug, *rule.aliases):
                self._by_key.setdefault(fold(spelling), outlet)
            self._configured_slugs.add(outlet.slug)
        self.lookup: _lru_cache_wrapper[Outlet | None] = lru_cache(_REMEMBERED_NAMES)(self._lookup)
        self.resolve: _lru_cache_wrapper[Outlet] = lru_cache(_REMEMBERED_NAMES)(self._resolve)

    def _lookup(self, name: str) -> Outlet | None:
        """A configured outlet for this spelling, or None."""
        key = fold(name.strip())
        if not key:
            return None
        return self._by_key.get(key) or self._by_key.get(_NEWS_SUFFIX.sub("", key))

    def _resolve(self, name: str) -> Outlet:
        """Always an outlet: configured, or one made from the name itself."""
        known = self.lookup(name)
        if known is not None:
            return known
        display = _NEWS_SUFFIX.sub("", name.strip()) or name.strip() or UNKNOWN_SOURCE
        slug = slugify(display) or "unknown"
        if slug in self._configured_slugs:
            # Another outlet whose name reads the same in pinyin (中正网 beside 中证网) must
            # not share its feed: the name's own hash tells them apart, the same every time.
            # (Two unconfigured ones: the first stored keeps the slug, see ingest.)
            slug = homophone_slug(slug, display)
        return Outlet(display, slug, False, self._global)

    @property
    def configured_slugs(self) -> frozenset[str]:
        return frozenset(self._configured_slugs)


def homophone_slug(slug: str, name: str, digits: int = 6) -> str:
    """The slug of an outlet whose name reads like another's: its pinyin and its name's hash."""
    return f"{slug}-{hashlib.sha1(fold(name).encode()).hexdigest()[:digits]}"


def outlet_key(name: str) -> str:
    """One unconfigured outlet's name however it is written (script, width, case, spaces and
    punctuation): what its slug is stored under."""
    folded = fold(name.strip())
    return _NOT_WORD.sub("", folded) or folded


@dataclass(frozen=True, slots=True)
class _CompiledTopic:
    slug: str
    rule: TopicRule
    keywords: tuple[tuple[str, str], ...]  # (folded, original)
    required: tuple[tuple[str, str], ...]
    excluded: tuple[str, ...]
    regex: re.Pattern[str] | None


def topic_slug(rule: TopicRule) -> str:
    return rule.slug or slugify(rule.name)


class TopicMatcher:
    """Chinese-aware topic rules: NFKC, case-folded, traditional folded to simplified."""

    def __init__(self, rules: Sequence[TopicRule]) -> None:
        self._topics = tuple(self._compile(rule) for rule in rules)

    @staticmethod
    def _compile(rule: TopicRule) -> _CompiledTopic:
        return _CompiledTopic(
            slug=topic_slug(rule),
            rule=rule,
            keywords=tuple((fold(k), k) for k in rule.keywords if k.strip()),
            required=tuple((fold(k), k) for k in rule.all if k.strip()),
            excluded=tuple(fold(k) for k in rule.exclude if k.strip()),
            regex=re.compile(rule.regex, re.IGNORECASE) if rule.regex else None,
        )

    @property
    def slugs(self) -> tuple[str, ...]:
        return tuple(t.slug for t in self._topics)

    def match_article(self, article: Article) -> tuple[TopicMatch, ...]:
        """Every topic a normalized article belongs to (its title, summary and text)."""
        found = self.match(
            title=article.title,
            summary=article.summary,
            content=article.text,
            source_slug=article.source_slug,
        )
        return tuple(found)

    def match(
        self, *, title: str, summary: str, content: str, source_slug: str
    ) -> list[TopicMatch]:
        """Every topic this text belongs to, each with the first reason found."""
        folded = {"title": fold(title), "summary": fold(summary), "content": fold(content)}
        matches = []
        for topic in self._topics:
            found = _match_topic(topic, folded, source_slug)
            if found is not None:
                matches.append(found)
        return matches


def _match_topic(
    topic: _CompiledTopic, folded: dict[str, str], source_slug: str
) -> TopicMatch | None:
    rule = topic.rule
    if rule.sources and source_slug not in rule.sources:
        return None
    fields = [(name, folded[name]) for name in rule.fields]
    if any(word in text for word in topic.excluded for _, text in fields):
        return None
    for word, _ in topic.required:
        if not any(word in text for _, text in fields):
            return None
    reason = _first_reason(topic, fields)
    if reason is not None:
        return reason
    if topic.required and not (topic.keywords or topic.regex):
        word, original = topic.required[0]
        field = next(name for name, text in fields if word in text)
        return TopicMatch(topic.slug, "all", original, field)
    if rule.sources and not (topic.keywords or topic.regex or topic.required):
        return TopicMatch(topic.slug, "source", source_slug, "source")
    return None


def _first_reason(topic: _CompiledTopic, fields: Iterable[tuple[str, str]]) -> TopicMatch | None:
    for field, text in fields:
        for word, original in topic.keywords:
            if word in text:
                return TopicMatch(topic.slug, "keywords", original, field)
        if topic.regex is not None:
            found = topic.regex.search(text)
            if found:
                return TopicMatch(topic.slug, "regex", found.group(0), field)
    return None
