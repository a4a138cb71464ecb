"""Property-based tests over parse -> normalize -> store codec -> render.

* Arbitrary bytes, and arbitrary Unicode in every front-matter field and in the body, never
  raise out of ``process_file``: the result is an ``Article`` or an ``ArticleError`` with a
  reason, and never the catch-all "internal error" (that would be a bug the safety net hid).
  An article that comes out can be stored (codec round trip) and fingerprinted.
* Normalizing twice equals normalizing once: ``clean_body`` of its own output, ``fold``,
  the canonical texts, ``collapse_whitespace``, ``xml_safe``, ``summarize``.
* Every rendered feed built from arbitrary strings is well-formed XML that feedparser reads
  with bozo 0, with one entry per item.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import re
import tempfile
import unicodedata
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import feedparser
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lxml import etree

from feeds import render as render_module
from feeds.clean import clean_body, html_to_text, summarize
from feeds.config import CleanupRules, load_config
from feeds.dedupe import Identity, body_key, canonical_text, canonical_title, fingerprint
from feeds.errors import ArticleError, Unpublished
from feeds.model import Article, FeedItem, FeedKey, FeedMeta, Site
from feeds.neardup import ANCHOR_RUN, SAMPLED_ANCHORS, Anchors, anchors
from feeds.normalize import (
    DATE_KEYS,
    IMAGE_KEYS,
    LINK_KEYS,
    LIST_MAX_ITEMS,
    NAME_MAX_CHARS,
    NOTHING_TO_PUBLISH,
    SOURCE_KEYS,
    SUMMARY_KEYS,
    TITLE_MAX_CHARS,
    UPDATED_KEYS,
    URL_MAX_CHARS,
    NormalizeRules,
    _draft_flag,
    plain,
)
from feeds.pipeline import process_file
from feeds.render import render_atom, render_index, render_opml, render_rss
from feeds.store.codec import decode_article, encode_article
from feeds.text import collapse_whitespace, fold, nfkc, xml_safe
from tests.conftest import TOPICS

SETTINGS = settings(
    # FEEDS_HYPOTHESIS_EXAMPLES=5000 for a deep run; the suite's 200 keep it under half a minute
    max_examples=int(os.environ.get("FEEDS_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FIELDS = sorted(
    {
        "title", "categories", "tags", "lang", "language", "layout",
        *LINK_KEYS, *DATE_KEYS, *UPDATED_KEYS, *IMAGE_KEYS, *SUMMARY_KEYS, *SOURCE_KEYS,
    }
)  # fmt: skip
RULES = NormalizeRules.from_config(load_config(None, {"topics": TOPICS}, environ={}))
BUILTIN = RULES.sources.resolve("未知来源").cleanup
MAX_BYTES = 1 << 20

# Markup that attacks parsers: tags, entities, CDATA ends, comments, scripts, broken nesting.
TOKENS = [
    "<p>", "</p>", "<div>", "</div>", "<a href='", "javascript:alert(1)", "'>", "</a>",
    "<img src=x onerror=alert(1)>", "<script>", "</script>", "<svg onload=x>", "<!--", "-->",
    "]]>", "<![CDATA[", "&#0;", "&amp;", "&#x1F4C8;", "&#123;", "<", ">", "&", "\"", "'",
    "<table><tr><td>", "<br/>", "\n", "\r\n", "\t", "\u3000", "\u200b", "\x00", "\x0b", "\ufeff",
    "北交所", "正文。", "http://example.com/a", "<http://example.com/a>", "[返回](../)", "---",
    "+++", "# 标题", "> 引用", "*", "`", "\ud7ff", "\U0001f4c8", "\x7f", "\x85", "\u2028",
]  # fmt: skip
markup = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=8)), max_size=60).map("".join),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    markup,
    st.dates(),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())),
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
front_matter = st.dictionaries(st.sampled_from(FIELDS), yaml_values, min_size=1, max_size=8)


@contextmanager
def no_safety_net() -> Iterator[list[logging.LogRecord]]:
    """Collects warnings the catch-alls log ("clean_body failed", "unexpected error")."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.WARNING)
    logger = logging.getLogger("feeds")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
    caught = [r.getMessage() for r in records if r.exc_info or "failed" in r.getMessage()]
    assert not caught, f"a catch-all hid an exception: {caught}"


def run(data: bytes, name: str = "post.md") -> Article | ArticleError:
    with tempfile.TemporaryDirectory() as folder, no_safety_net():
        path = Path(folder) / name
        path.write_bytes(data)
        stamp, result = process_file(str(path), RULES, MAX_BYTES)
        assert stamp.path == str(path)
        check_result(result, str(path))
        return result


def check_result(result: Article | ArticleError, path: str) -> None:
    assert isinstance(result, Article | ArticleError)
    if isinstance(result, ArticleError):
        assert result.path == path
        assert result.reason.strip() and "\n" not in result.reason
        assert not result.reason.startswith("internal error"), result.reason
        return
    check_article(result)


def check_article(article: Article) -> None:
    for text in (article.title, article.summary, article.source_name, *article.categories):
        assert text == xml_safe(text)
        assert text == text.strip() and "\n" not in text
    assert article.title and article.source_name and article.source_slug
    assert len(article.title) <= TITLE_MAX_CHARS and len(article.source_name) <= NAME_MAX_CHARS
    assert len(article.categories) <= 2 * LIST_MAX_ITEMS
    assert all(len(name) <= NAME_MAX_CHARS for name in article.categories)
    for url in (article.link, article.image):
        assert url is None or len(url) <= URL_MAX_CHARS
    assert article.source_slug.isascii()
    assert article.published.tzinfo is not None and article.published.utcoffset() == timedelta(0)
    if article.updated is not None:
        assert article.updated.utcoffset() == timedelta(0)
    for url in (article.link, article.image):
        assert url is None or url.lower().startswith(("http://", "https://"))
    assert "<script" not in article.content_html.lower()
    assert decode_article(encode_article(article)) == article  # storable as is
    fingerprint(article)
    body_key(article)


def loadable(meta: dict[str, Any]) -> bool:
    """PyYAML cannot read back all it dumps (e.g. a timestamp with a seconds offset)."""
    try:
        yaml.safe_load(yaml.safe_dump(meta, allow_unicode=True))
    except Exception:
        return False
    return True


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are not all valid TOML: no surrogate pairs)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return (
        '"'
        + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in escaped)
        + '"'
    )


def yaml_post(meta: dict[str, Any], body: str) -> bytes:
    head = yaml.safe_dump(meta, allow_unicode=True, default_flow_style=False)
    return f"---\n{head}---\n\n{body}\n".encode("utf-8", "surrogatepass")


# --- parse and normalize never raise ----------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=3000))
def test_arbitrary_bytes(data: bytes) -> None:
    run(data)


@SETTINGS
@given(st.binary(max_size=1500), st.sampled_from(["---\n", "+++\n", "\ufeff---\r\n", "\n\n---\n"]))
def test_arbitrary_bytes_after_a_front_matter_marker(data: bytes, marker: str) -> None:
    run(marker.encode() + data)


@SETTINGS
@given(front_matter, markup, st.sampled_from(["post.md", "post.html", "2024-05-14-x.txt"]))
def test_any_value_in_any_front_matter_field(meta: dict[str, Any], body: str, name: str) -> None:
    result = run(yaml_post(meta, body), name)
    if "\x00" not in body and loadable(meta):  # NUL: a binary file
        assert_an_item_unless_empty(result, meta)


@SETTINGS
@given(st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=60), max_size=6), markup)
def test_raw_unescaped_text_in_yaml_lines(meta: dict[str, str], body: str) -> None:
    # Values pasted as-is: YAML syntax (":", "&", "*", "[", "!", "|", "%") from scraped text.
    lines = [f"{key}: {value}".replace("\n", " ") for key, value in meta.items()]
    run(("---\n" + "\n".join(lines) + "\n---\n" + body).encode("utf-8", "surrogatepass"))


@SETTINGS
@given(st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=60), max_size=6), markup)
def test_any_text_in_toml_front_matter(meta: dict[str, str], body: str) -> None:
    lines = [f"{key} = {toml_string(value)}" for key, value in meta.items()]
    data = ("+++\n" + "\n".join(lines) + "\n+++\n" + body).encode("utf-8", "surrogatepass")
    result = run(data)
    if "\x00" not in body:
        assert_an_item_unless_empty(result, meta)


def assert_an_item_unless_empty(result: Article | ArticleError, meta: dict[str, Any]) -> None:
    """Always an item, but for a post without a title and without anything in its body, and a
    draft ("published" is one of the date keys drawn: ``published: false`` is a Jekyll draft)."""
    if isinstance(result, ArticleError) and result.reason == NOTHING_TO_PUBLISH:
        assert not plain(meta.get("title"))
    elif isinstance(result, Unpublished):
        assert _draft_flag(meta) is not None
    else:
        assert isinstance(result, Article), result


@SETTINGS
@given(markup, st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "gb18030"]))
def test_any_body_in_any_supported_encoding(body: str, encoding: str) -> None:
    assume(encoding != "gb18030" or "\x00" not in body)
    text = f"---\ntitle: 标题\n---\n{body}"
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        assume(False)
    run(data)


# --- normalizing twice equals normalizing once ------------------------------------------------


@SETTINGS
@given(markup, st.sampled_from([CleanupRules(), BUILTIN]))
def test_clean_body_is_idempotent(html: str, rules: CleanupRules) -> None:
    with no_safety_net():
        once = clean_body(html, rules)
        twice = clean_body(once.html, rules)
    assert twice.html == once.html
    assert twice.text == once.text
    assert html_to_text(once.html) == once.text


@SETTINGS
@given(st.text(max_size=200))
def test_text_normalizers_are_idempotent(text: str) -> None:
    assert fold(fold(text)) == fold(text)
    assert canonical_title(canonical_title(text)) == canonical_title(text)
    assert collapse_whitespace(collapse_whitespace(text)) == collapse_whitespace(text)
    assert xml_safe(xml_safe(text)) == xml_safe(text)


def mark_after_removed_space(text: str) -> bool:
    """A combining mark right after whitespace, once NFKC made."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return any(
        unicodedata.category(mark).startswith("M") and (prev.isspace() or prev in INVISIBLE)
        for prev, mark in itertools.pairwise(text)
    )


INVISIBLE = "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
# Wire boilerplate is stripped once (a second dateline or attribution is text); plain text
# without it must be a fixed point.
plain_text = st.text(
    st.characters(blacklist_characters="讯()（）:：,，。原", blacklist_categories=["Cs"]),
    max_size=200,
).filter(lambda t: not mark_after_removed_space(t))


@SETTINGS
@given(plain_text)
def test_canonical_text_is_an_nfkc_fixed_point(text: str) -> None:
    canonical = canonical_text(text)
    assert unicodedata.is_normalized("NFKC", canonical)
    assert canonical_text(canonical) == canonical


# Full-width forms next to combining marks, compatibility characters and Chinese text: where a
# shortcut for NFKC could go wrong.
nfkc_text = st.text(
    st.one_of(
        st.characters(min_codepoint=0xFF00, max_codepoint=0xFFEF),
        st.characters(min_codepoint=0x0300, max_codepoint=0x036F),
        st.sampled_from("A e\u3000①㈠ｶﾞ\ufb01\u2126中國證券，。（）…"),
        st.characters(blacklist_categories=["Cs"]),
    ),
    max_size=80,
)


@SETTINGS
@given(nfkc_text)
def test_fast_nfkc_is_nfkc(text: str) -> None:
    assert nfkc(text) == unicodedata.normalize("NFKC", text)


@SETTINGS
@given(nfkc_text.filter(bool))
def test_fast_nfkc_is_nfkc_on_long_text_twice(text: str) -> None:
    long = text * (300 // len(text) + 1)  # long enough to be remembered
    assert nfkc(long) == unicodedata.normalize("NFKC", long)
    assert nfkc(long) == unicodedata.normalize("NFKC", long)


def reference_canonical_text(text: str) -> str:
    """``dedupe.canonical_text`` as first written: fingerprints must never change unnoticed."""
    lines = [
        re.sub(r"[\s\u200b-\u200f\u2060\ufeff]+", "", line)
        for line in nfkc(text).casefold().splitlines()
    ]
    lines = [line for line in lines if line and not re.match(r"^原标题[:\s]", line)]
    if lines:
        lines[0] = re.sub(r"^[^,。:!?()]{1,16}讯(\(记者[^)]{0,20}\))?[,:]?", "", lines[0], count=1)
        lines[-1] = re.sub(r"(\([^()]{1,16}\)|(文章)?来源:[^,。]{1,20})$", "", lines[-1])
    return unicodedata.normalize("NFKC", "".join(lines))


canonical_input = st.text(
    st.one_of(
        st.sampled_from(
            "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff \t\n\r\x0b\x1c\x85\u2028\u3000\xa0"
        ),
        st.sampled_from("证券时报网讯，原标题：（）(来源:新华社)"),
        st.characters(blacklist_categories=["Cs"]),
    ),
    max_size=300,
)


@SETTINGS
@given(canonical_input)
def test_canonical_text_is_the_reference_canonical_text(text: str) -> None:
    assert canonical_text(text) == reference_canonical_text(text)


def test_str_split_splits_at_exactly_the_regex_whitespace() -> None:
    chars = "".join(map(chr, range(0x110000)))
    assert re.findall(r"\s", chars) == [char for char in chars if not "".join(char.split())]


def reference_summarize(text: str, limit: int) -> str:
    """``clean.summarize`` as first written (joining every line before cutting)."""
    flat = ""
    for line in text.split("\n"):
        line = " ".join(re.sub("[\u200b\u200c\u200d\u2060\ufeff]", "", line).split())
        if line:
            flat += (" " if flat and flat[-1] not in "。！？；…」』”’）)】.!?;" else "") + line
    if len(flat) <= limit:
        return flat
    if limit <= 1:
        return "…" if limit == 1 else ""
    budget = limit - 1
    head = flat[:budget]
    ends = [m.end() for m in re.finditer(r"(?:[。！？!?；;…]+|\.(?=\s))[”’」』）)\"']*", head)]
    breaks = [m.start() for m in re.finditer(r"[\s，、,：:]", head)]
    if ends and ends[-1] >= budget // 2:
        head = head[: ends[-1]]
    elif breaks and breaks[-1] >= budget // 2:
        head = head[: breaks[-1]]
    return head.rstrip(" ，、,：:") + "…"


@SETTINGS
@given(
    st.text(st.one_of(st.sampled_from("\n \u200b。，.!"), st.characters()), max_size=400),
    st.integers(min_value=0, max_value=300),
)
def test_summarize_is_the_reference_summarize(text: str, limit: int) -> None:
    assert summarize(text, limit) == reference_summarize(text, limit)


def reference_anchors(ident: Identity) -> Anchors:
    """``neardup.anchors`` as first written: stored anchors must never change unnoticed."""
    text = ident.title + ident.body
    starts = [0, *(m.end() for m in re.finditer(r"[,.;:!?。、]", text))]
    runs = {text[i : i + ANCHOR_RUN] for i in starts}
    hashes = {zlib.crc32(run.encode()) for run in runs if len(run) == ANCHOR_RUN}
    title = zlib.crc32(("title\x1f" + ident.title).encode()) if len(ident.title) >= 4 else None
    return Anchors(tuple(sorted(heapq.nsmallest(SAMPLED_ANCHORS, hashes))), title)


anchor_text = st.text(
    st.one_of(
        st.sampled_from(",.;:!?。、\n\r\x1c\u2028"), st.characters(blacklist_categories=["Cs"])
    ),
    max_size=300,
)


@SETTINGS
@given(anchor_text, anchor_text)
def test_anchors_are_the_reference_anchors(title: str, body: str) -> None:
    ident = Identity("", None, title, body)
    assert anchors(ident) == reference_anchors(ident)
    canonical = Identity("", None, canonical_title(title), canonical_text(body))
    assert anchors(canonical) == reference_anchors(canonical)


@pytest.mark.parametrize("text", ["A \u0301", "A\u00b4", "e\u200b\u0301"])
def test_canonical_text_of_a_mark_after_a_space_is_composed(text: str) -> None:
    assert unicodedata.is_normalized("NFKC", canonical_text(text))
    assert canonical_text(canonical_text(text)) == canonical_text(text)


@SETTINGS
@given(st.text(max_size=400), st.integers(min_value=0, max_value=300))
def test_summarize_is_idempotent_and_bounded(text: str, limit: int) -> None:
    once = summarize(text, limit)
    assert len(once) <= max(limit, 0)
    assert summarize(once, limit) == once


@SETTINGS
@given(front_matter, markup)
def test_an_article_reread_from_its_own_output_is_the_same(meta: dict[str, Any], body: str) -> None:
    """Normalizing the normalized article again (as a new file) changes nothing of substance."""
    first = run(yaml_post(meta, body), "post.html")
    assume(isinstance(first, Article))
    assert isinstance(first, Article)
    again_meta = {"title": first.title, "date": first.published.isoformat()}
    second = run(yaml_post(again_meta, first.content_html), "post.html")
    assert isinstance(second, Article)
    assert second.content_html == first.content_html
    assert second.text == first.text
    if not first.title_derived:
        assert second.title == first.title
    assert second.published == first.published


# --- every rendered feed is well-formed and readable ------------------------------------------

SITE = Site("https://feeds.example.org/", "财经新闻", "test")
moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))
any_text = st.one_of(st.text(max_size=120), markup)
url = st.one_of(st.none(), st.text(max_size=40).map(lambda s: "https://example.com/" + s))
items = st.builds(
    FeedItem,
    id=st.text("0123456789abcdef", min_size=32, max_size=32),
    title=any_text,
    link=url,
    published=moments,
    updated=moments,
    source_name=any_text,
    source_slug=st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
    categories=st.lists(any_text, max_size=4).map(tuple),
    content_html=any_text,
    summary=any_text,
    image=url,
)
slugs = st.from_regex(r"[a-z]{1,9}", fullmatch=True)
keys = st.one_of(
    st.just(FeedKey("all")), st.builds(FeedKey, st.sampled_from(["source", "topic"]), slugs)
)
metas = st.builds(FeedMeta, key=keys, title=any_text, description=any_text)


def parse_xml(data: bytes) -> Any:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    return etree.fromstring(data, parser)  # raises on anything not well-formed


@SETTINGS
@given(metas, st.lists(items, max_size=5, unique_by=lambda i: i.id))
def test_rendered_feeds_are_well_formed_and_read_cleanly(
    meta: FeedMeta, entries: list[FeedItem]
) -> None:
    for render in (render_rss, render_atom):
        data = render(meta, entries, SITE)
        parse_xml(data)
        parsed = feedparser.parse(data)
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        assert len(parsed.entries) == len(entries)
        ids = {entry.get("id") for entry in parsed.entries}
        assert len(ids) == len(entries)


def whole_document(fmt: str, meta: FeedMeta, entries: list[FeedItem]) -> bytes:
    """What feedgen writes when it serializes the whole feed in one go."""
    ordered = render_module._ordered(entries)
    changed = render_module._last_change(ordered)
    if fmt == "atom":
        fg = render_module._atom_generator(meta, SITE, changed or render_module.EPOCH)
        for item in ordered:
            render_module._add_atom_entry(fg, item)
        return bytes(fg.atom_str(pretty=True))
    fg = render_module._rss_generator(meta, SITE, changed)
    for item in ordered:
        render_module._add_rss_item(fg, item)
    data = bytes(fg.rss_str(pretty=True))
    return data if changed else render_module._drop_channel_child(data, "lastBuildDate")


@SETTINGS
@given(metas, st.lists(items, max_size=5, unique_by=lambda i: i.id), st.randoms())
def test_spliced_feeds_are_feedgens_whole_documents(
    meta: FeedMeta, entries: list[FeedItem], rng: Any
) -> None:
    for fmt, render in (("rss", render_rss), ("atom", render_atom)):
        expected = whole_document(fmt, meta, entries)
        assert render(meta, entries, SITE) == expected
        shuffled = rng.sample(entries, len(entries))
        assert render(meta, shuffled, SITE) == expected  # entries now from the cache


@SETTINGS
@given(st.lists(metas, max_size=5), any_text, any_text)
def test_opml_and_index_are_well_formed(feeds: list[FeedMeta], title: str, about: str) -> None:
    site = Site("https://feeds.example.org/", title, about)
    parse_xml(render_opml(feeds, site))
    page = render_index(feeds, site, limit=50).decode("utf-8")
    assert page.count("<script") == 0
    assert "<h1>" in page


def test_a_date_in_every_type_is_tolerated() -> None:
    moment = datetime(2024, 5, 14, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    for value in (moment, moment.replace(tzinfo=None), date(2024, 5, 14), 1715652000, "昨天"):
        listed = [str(value)]  # not the same object: safe_dump would write an alias
        result = run(yaml_post({"title": "t", "date": value, "updated": listed}, "正文"))
        assert isinstance(result, Article)
        assert result.updated is None  # a list is not a date
