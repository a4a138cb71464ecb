"""feeds.render: read every document back with a real parser and check what readers rely on."""

from __future__ import annotations

import calendar
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import feedparser
import pytest
from lxml import etree, html

from feeds.model import FeedItem, FeedKey, FeedMeta, Site
from feeds.render import (
    feed_url,
    item_guid,
    render_atom,
    render_index,
    render_opml,
    render_rss,
)

CST = timezone(timedelta(hours=8))
NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "content": "http://purl.org/rss/1.0/modules/content/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "media": "http://search.yahoo.com/mrss/",
}
SITE = Site(
    base_url="https://news.example.com/feeds/",
    title="财经快讯 <聚合>",
    description="中文财经新闻转发 & 监控",
)
ALL = FeedMeta(key=FeedKey("all"), title="全部文章", description="所有来源", count=3)
SOURCE = FeedMeta(
    key=FeedKey("source", "zhengquanshibao"), title="证券时报", description="", count=1
)
TOPIC = FeedMeta(
    key=FeedKey("topic", "beijiaosuo"),
    title="北交所<script>alert(1)</script>",
    description="北交所\x00相关",
    count=0,
)

HOSTILE = FeedItem(
    id="0123456789ABCDEF0123456789abcdef",
    title="北交所<script>alert(1)</script>新规\x00出台\x0b \x1f📈",
    link="https://www.example.com/a/1.html",
    published=datetime(2024, 5, 1, 10, 0, tzinfo=CST),
    updated=datetime(2024, 5, 1, 11, 30, tzinfo=CST),
    source_name="证券时报",
    source_slug="zhengquanshibao",
    categories=("北交所", "政策", "北交所", "\x00"),
    content_html='<p>正文 ]]> 内容</p><p><img src="https://img.example.com/1.jpg" alt=""></p>',
    summary="摘要：北交所\x0b发布新规 & 细则]]>",
    image="https://img.example.com/1.jpg",
)
NO_LINK = FeedItem(
    id="fedcba9876543210fedcba9876543210",
    title="A股收评：沪指涨1%，创业板指跌0.5%",
    link=None,
    published=datetime(2024, 4, 30, 7, 0, tzinfo=UTC),
    updated=datetime(2024, 4, 30, 7, 5, tzinfo=UTC),
    source_name="财联社",
    source_slug="cailianshe",
    categories=(),
    content_html="<p>沪指收涨。</p>",
    summary="沪指收涨。",
    image=None,
)
OLDEST = FeedItem(
    id="00000000000000000000000000000001",
    title="央行开展逆回购操作",
    link="https://www.example.com/a/3.html",
    published=datetime(2024, 4, 29, 1, 0, tzinfo=UTC),
    # Edited after the newer items: the feed's last change comes from here.
    updated=datetime(2024, 5, 2, 0, 0, tzinfo=UTC),
    source_name="新华社",
    source_slug="xinhuashe",
    categories=("货币政策",),
    content_html="",
    summary="",
    image=None,
)
ITEMS = (HOSTILE, NO_LINK, OLDEST)
IDS = [item.id.lower() for item in ITEMS]
LAST_CHANGE = datetime(2024, 5, 2, 0, 0, tzinfo=UTC)


def parse(data: bytes) -> Any:
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def xml(data: bytes) -> Any:
    return etree.fromstring(data)


def utc_struct(moment: datetime) -> tuple[int, ...]:
    return tuple(moment.astimezone(UTC).timetuple())[:6]


def struct_tuple(value: Any) -> tuple[int, ...]:
    return tuple(value)[:6]


# --- URLs and ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "fmt", "expected"),
    [
        (FeedKey("all"), "rss", "all.rss"),
        (FeedKey("all"), "atom", "all.atom"),
        (FeedKey("source", "cailianshe"), "rss", "sources/cailianshe.rss"),
        (FeedKey("topic", "beijiaosuo"), "atom", "topics/beijiaosuo.atom"),
    ],
)
def test_feed_url_follows_the_stable_scheme(key: FeedKey, fmt: str, expected: str) -> None:
    assert feed_url(key, fmt, SITE) == "https://news.example.com/feeds/" + expected


def test_feed_url_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="json"):
        feed_url(FeedKey("all"), "json", SITE)


def test_item_guid_is_a_lowercase_uuid_urn() -> None:
    assert item_guid("0123456789ABCDEF0123456789abcdef") == (
        "urn:uuid:01234567-89ab-cdef-0123-456789abcdef"
    )


@pytest.mark.parametrize("bad", ["", "xyz", "0123456789abcdef", "g" * 32, "0" * 33, "0" * 31])
def test_item_guid_rejects_non_hex_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        item_guid(bad)


# --- RSS --------------------------------------------------------------------------------------


def test_rss_reads_back_in_order_with_unique_guids() -> None:
    parsed = parse(render_rss(ALL, ITEMS, SITE))
    ids = [entry.id for entry in parsed.entries]
    assert ids == [item_guid(item_id) for item_id in IDS]
    assert len(set(ids)) == len(ITEMS)
    assert parsed.version == "rss20"


def test_rss_channel_fields() -> None:
    data = render_rss(ALL, ITEMS, SITE)
    parsed = parse(data)
    assert parsed.feed.title == "全部文章"
    assert parsed.feed.link == "https://news.example.com/feeds/index.html"
    assert parsed.feed.language == "zh-CN"
    assert parsed.feed.generator == "feeds"
    self_links = [link.href for link in parsed.feed.links if link.rel == "self"]
    assert self_links == ["https://news.example.com/feeds/all.rss"]
    channel = xml(data).find("channel")
    assert channel.findtext("lastBuildDate") == "Thu, 02 May 2024 00:00:00 +0000"
    assert channel.findtext("pubDate") == "Thu, 02 May 2024 00:00:00 +0000"


def test_rss_items_carry_utc_dates_and_non_permalink_guids() -> None:
    data = render_rss(ALL, ITEMS, SITE)
    items = xml(data).findall("channel/item")
    assert [item.find("guid").get("isPermaLink") for item in items] == ["false"] * 3
    assert items[0].findtext("pubDate") == "Wed, 01 May 2024 02:00:00 +0000"
    entries = parse(data).entries
    for entry, item in zip(entries, ITEMS, strict=True):
        assert struct_tuple(entry.published_parsed) == utc_struct(item.published)
        assert entry.guidislink is False


def test_rss_summary_goes_to_description_and_html_to_content_encoded() -> None:
    first = xml(render_rss(ALL, ITEMS, SITE)).find("channel/item")
    assert first.findtext("description") == "摘要：北交所发布新规 &amp; 细则]]&gt;"
    assert first.findtext("content:encoded", namespaces=NS) == HOSTILE.content_html
    entry = parse(render_rss(ALL, ITEMS, SITE)).entries[0]
    assert "<p>正文 ]]> 内容</p>" in entry.content[0].value
    assert entry.summary.startswith("摘要：北交所发布新规")


def test_rss_item_without_summary_or_content_still_has_a_description() -> None:
    last = xml(render_rss(ALL, ITEMS, SITE)).findall("channel/item")[-1]
    assert last.findtext("description") == "央行开展逆回购操作"
    assert last.find("content:encoded", namespaces=NS) is None


def test_rss_item_without_summary_puts_content_in_description() -> None:
    item = replace(NO_LINK, summary="")
    element = xml(render_rss(ALL, [item], SITE)).find("channel/item")
    assert element.findtext("description") == "<p>沪指收涨。</p>"
    assert element.find("content:encoded", namespaces=NS) is None


def test_rss_strips_control_characters_and_keeps_emoji() -> None:
    data = render_rss(ALL, ITEMS, SITE)
    assert b"\x00" not in data and b"\x0b" not in data and b"\x1f" not in data
    entry = parse(data).entries[0]
    assert entry.title == "北交所<script>alert(1)</script>新规出台 📈"
    assert b"<script>" not in data


def test_rss_link_author_categories_and_image() -> None:
    root = xml(render_rss(ALL, ITEMS, SITE))
    first, second, _ = root.findall("channel/item")
    assert first.findtext("link") == HOSTILE.link
    assert second.find("link") is None
    assert first.findtext("dc:creator", namespaces=NS) == "证券时报"
    assert [c.text for c in first.findall("category")] == ["北交所", "政策"]
    assert second.findall("category") == []
    thumbnail = first.find("media:thumbnail", namespaces=NS)
    assert thumbnail.get("url") == HOSTILE.image
    assert second.find("media:thumbnail", namespaces=NS) is None
    assert first.find("author") is None  # RSS <author> must be an e-mail address


def test_empty_rss_is_valid_and_carries_no_build_date() -> None:
    data = render_rss(TOPIC, [], SITE)
    parsed = parse(data)
    assert parsed.entries == []
    assert parsed.feed.title == "北交所<script>alert(1)</script>"
    channel = xml(data).find("channel")
    assert channel.find("lastBuildDate") is None
    assert channel.find("pubDate") is None
    assert channel.findtext("description") == "北交所相关"
    assert channel.find("atom:link", namespaces=NS).get("href") == (
        "https://news.example.com/feeds/topics/beijiaosuo.rss"
    )


def test_rss_description_falls_back_to_site_description() -> None:
    channel = xml(render_rss(SOURCE, [HOSTILE], SITE)).find("channel")
    assert channel.findtext("description") == SITE.description


# --- Atom -------------------------------------------------------------------------------------


def test_atom_reads_back_with_feed_fields() -> None:
    parsed = parse(render_atom(ALL, ITEMS, SITE))
    assert parsed.version == "atom10"
    assert parsed.feed.id == "https://news.example.com/feeds/all.atom"
    assert parsed.feed.title == "全部文章"
    assert struct_tuple(parsed.feed.updated_parsed) == utc_struct(LAST_CHANGE)
    assert parsed.feed.author == "feeds"
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links == {
        "self": "https://news.example.com/feeds/all.atom",
        "alternate": "https://news.example.com/feeds/index.html",
    }


def test_atom_entries_in_order_with_dates_and_ids() -> None:
    entries = parse(render_atom(ALL, ITEMS, SITE)).entries
    assert [entry.id for entry in entries] == [item_guid(item_id) for item_id in IDS]
    for entry, item in zip(entries, ITEMS, strict=True):
        assert struct_tuple(entry.published_parsed) == utc_struct(item.published)
        assert struct_tuple(entry.updated_parsed) == utc_struct(item.updated)
        assert entry.author == item.source_name


def test_atom_summary_is_text_and_content_is_html() -> None:
    data = render_atom(ALL, ITEMS, SITE)
    first = parse(data).entries[0]
    assert first.summary_detail.type == "text/plain"
    assert first.summary == "摘要：北交所发布新规 & 细则]]>"
    assert first.content[0].type == "text/html"
    assert "<p>正文 ]]> 内容</p>" in first.content[0].value
    entry = xml(data).find("atom:entry", namespaces=NS)
    assert entry.find("atom:content", namespaces=NS).get("type") == "html"
    assert entry.find("atom:summary", namespaces=NS).get("type") is None


def test_atom_entry_without_content_gets_escaped_text_content_and_no_summary() -> None:
    entry = xml(render_atom(ALL, [OLDEST], SITE)).find("atom:entry", namespaces=NS)
    assert entry.find("atom:summary", namespaces=NS) is None
    assert entry.findtext("atom:content", namespaces=NS) == "央行开展逆回购操作"


def test_atom_alternate_link_only_when_item_has_a_link() -> None:
    entries = parse(render_atom(ALL, ITEMS, SITE)).entries
    assert [link.href for link in entries[0].links if link.rel == "alternate"] == [HOSTILE.link]
    assert [link for link in entries[1].get("links", []) if link.rel == "alternate"] == []


def test_atom_categories_and_thumbnail() -> None:
    entries = parse(render_atom(ALL, ITEMS, SITE)).entries
    assert [tag.term for tag in entries[0].tags] == ["北交所", "政策"]
    assert entries[0].media_thumbnail == [{"url": HOSTILE.image}]
    assert "media_thumbnail" not in entries[1]


def test_empty_atom_is_valid_with_epoch_updated() -> None:
    data = render_atom(TOPIC, [], SITE)
    parsed = parse(data)
    assert parsed.entries == []
    assert calendar.timegm(parsed.feed.updated_parsed) == 0
    assert parsed.feed.id == "https://news.example.com/feeds/topics/beijiaosuo.atom"


# --- determinism and ordering -----------------------------------------------------------------


@pytest.mark.parametrize("render", [render_rss, render_atom])
def test_render_is_byte_identical_and_ignores_input_order(render: Any) -> None:
    reference = render(ALL, ITEMS, SITE)
    assert render(ALL, ITEMS, SITE) == reference
    shuffled = list(ITEMS)
    random.Random(7).shuffle(shuffled)
    assert render(ALL, list(reversed(ITEMS)), SITE) == reference
    assert render(ALL, shuffled, SITE) == reference


@pytest.mark.parametrize("render", [render_rss, render_atom])
def test_render_never_uses_the_current_time(render: Any) -> None:
    now = datetime.now(UTC)
    for data in (render(ALL, ITEMS, SITE), render(TOPIC, [], SITE)):
        assert now.strftime("%d %b %Y").encode() not in data
        assert now.strftime("%Y-%m-%d").encode() not in data


def test_same_published_time_is_ordered_by_id_and_duplicates_dropped() -> None:
    twin = replace(NO_LINK, id="00000000000000000000000000000000", title="同一时刻")
    duplicate = replace(NO_LINK, title="重复条目")
    entries = parse(render_rss(ALL, [NO_LINK, duplicate, twin], SITE)).entries
    assert [entry.id for entry in entries] == [item_guid(twin.id), item_guid(NO_LINK.id)]
    assert entries[1].title == NO_LINK.title


def test_feed_date_is_never_before_the_newest_publication() -> None:
    backdated = replace(NO_LINK, updated=NO_LINK.published - timedelta(days=1))
    parsed = parse(render_atom(ALL, [backdated], SITE))
    assert struct_tuple(parsed.feed.updated_parsed) == utc_struct(NO_LINK.published)
    channel = xml(render_rss(ALL, [backdated], SITE)).find("channel")
    assert channel.findtext("lastBuildDate") == "Tue, 30 Apr 2024 07:00:00 +0000"


def test_naive_datetimes_are_refused() -> None:
    naive = replace(NO_LINK, published=datetime(2024, 4, 30, 7, 0))
    with pytest.raises(ValueError, match="naive"):
        render_rss(ALL, [naive], SITE)


def test_blank_title_gets_a_placeholder() -> None:
    blank = replace(NO_LINK, title=" \x00 ")
    assert parse(render_atom(ALL, [blank], SITE)).entries[0].title == "无标题"


# --- OPML -------------------------------------------------------------------------------------

FEEDS = (ALL, SOURCE, TOPIC)


def test_opml_lists_every_feed_grouped_by_kind() -> None:
    data = render_opml(FEEDS, SITE)
    root = xml(data)
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == SITE.title
    body = root.find("body")
    top = body.findall("outline")
    assert [o.get("text") for o in top] == ["全部文章", "来源", "主题"]
    assert top[0].get("xmlUrl") == "https://news.example.com/feeds/all.rss"
    assert [o.get("xmlUrl") for o in top[1]] == [
        "https://news.example.com/feeds/sources/zhengquanshibao.rss"
    ]
    assert [o.get("text") for o in top[2]] == ["北交所<script>alert(1)</script>"]
    feeds = root.findall(".//outline[@type='rss']")
    assert {o.get("xmlUrl") for o in feeds} == {feed_url(m.key, "rss", SITE) for m in FEEDS}
    for outline in feeds:
        assert outline.get("htmlUrl") == "https://news.example.com/feeds/index.html"
        assert outline.get("title") == outline.get("text")
    assert b"<script>" not in data


def test_opml_has_no_timestamps_and_is_deterministic() -> None:
    data = render_opml(FEEDS, SITE)
    assert data == render_opml(list(FEEDS), SITE)
    assert b"dateCreated" not in data and b"dateModified" not in data


# The head elements the W3C Feed Validation Service knows (feedvalidator/opml.py): any other is
# reported as an error, such as OPML 2.0's optional <docs>.
W3C_OPML_HEAD = {
    "title", "dateCreated", "dateModified", "ownerName", "ownerEmail", "ownerId",
    "expansionState", "vertScrollState", "windowTop", "windowLeft", "windowBottom", "windowRight",
}  # fmt: skip


def test_opml_head_holds_only_what_the_w3c_validator_knows() -> None:
    head = xml(render_opml(FEEDS, SITE)).find("head")
    assert head is not None and {child.tag for child in head} <= W3C_OPML_HEAD


def test_opml_skips_empty_groups_and_duplicate_keys() -> None:
    root = xml(render_opml([SOURCE, ALL, SOURCE], SITE))
    top = root.find("body").findall("outline")
    assert [o.get("text") for o in top] == ["全部文章", "来源"]
    assert len(top[1]) == 1


# --- HTML index -------------------------------------------------------------------------------


def test_index_escapes_hostile_titles() -> None:
    data = render_index(FEEDS, SITE, limit=50)
    assert b"<script" not in data
    assert "北交所&lt;script&gt;alert(1)&lt;/script&gt;".encode() in data
    assert "财经快讯 &lt;聚合&gt;".encode() in data
    assert b"\x00" not in data


def test_index_is_html5_with_discovery_links_and_a_row_per_feed() -> None:
    data = render_index(FEEDS, SITE, limit=50)
    assert data.startswith(b"<!DOCTYPE html>\n")
    page = html.document_fromstring(data)
    assert page.get("lang") == "zh-CN"
    assert page.find("head/meta").get("charset") == "utf-8"
    alternates = page.xpath("//head/link[@rel='alternate']")
    hrefs = {(link.get("type"), link.get("href")) for link in alternates}
    for meta in FEEDS:
        assert ("application/rss+xml", feed_url(meta.key, "rss", SITE)) in hrefs
        assert ("application/atom+xml", feed_url(meta.key, "atom", SITE)) in hrefs
    rows = page.xpath("//table/tbody/tr[td]")
    assert [row.xpath("string(td[1])") for row in rows] == [meta.title for meta in FEEDS]
    assert [row.xpath("string(td[2])") for row in rows] == ["3", "1", "0"]
    links = page.xpath("//table//a/@href")
    assert "https://news.example.com/feeds/topics/beijiaosuo.atom" in links
    assert page.xpath("//body//a[@href='https://news.example.com/feeds/feeds.opml']")
    assert render_index(FEEDS, SITE, limit=50) == data


def test_index_counts_what_a_subscriber_gets_and_how_many_there_are_in_all() -> None:
    # A feed holds its newest ``limit`` items: a count beyond that is not what a reader gets.
    big = FeedMeta(key=FeedKey("all"), title="全部文章", description="", count=1234)
    exact = FeedMeta(key=FeedKey("source", "cls"), title="财联社", description="", count=50)
    page = html.document_fromstring(render_index((big, exact, TOPIC), SITE, limit=50))
    cells = [row.xpath("string(td[2])") for row in page.xpath("//table/tbody/tr[td]")]
    assert cells == ["50（共 1,234）", "50", "0"]
    (heading,) = page.xpath("//thead/tr/th[2]")
    assert "50" in heading.get("title")
