"""Subscribers' filters on served feeds (``?filter=…&filterout=…&limit=…``): parsed from real
query strings, applied to feeds the pipeline wrote, served by the real server on 127.0.0.1 and
read back by feedparser."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

import feedparser
import httpx
import pytest

from feeds.config import Config
from feeds.feedfilter import MAX_WORDS, FeedFilter, FilterError, filter_feed
from tests.conftest import build, hexo_post, jekyll_post, serving, write

BASE = "https://feeds.example.org/"
HUB = "https://hub.example.com/"
STORIES = {
    "a.md": hexo_post(
        "北交所发布新规", ["北交所今日发布新规，优化发行上市审核流程。"],
        date="Tue, 14 May 2024 01:00:00 GMT",
    ),
    "b.md": jekyll_post(
        "北證50指數走強", ["北证50指数今日上涨，成交额放大。"],
        date="2024-05-14 10:00:00 +0800", link="https://finance.example.com/a/1.html",
    ),
    "c.md": hexo_post(
        "新三板挂牌公司推广活动", ["广告：新三板挂牌服务，欢迎咨询。"],
        date="Tue, 14 May 2024 03:00:00 GMT",
    ),
    "d.md": jekyll_post(
        "央行开展逆回购操作", ["人民银行今日开展100亿元7天期逆回购操作。"],
        date="2024-05-14 12:00:00 +0800", link="https://finance.example.com/a/2.html",
    ),
}  # fmt: skip


@pytest.fixture
def built(make_config: Callable[..., Config], tmp_path: Path) -> Config:
    config = make_config(base_url=BASE, websub={"hubs": [HUB]})
    for name, text in STORIES.items():
        write(tmp_path / "articles" / name, text)
    build(config)
    return config


@pytest.fixture
def server(built: Config) -> Iterator[str]:
    with serving(built.output, hubs=(HUB,), base_url=BASE) as address:
        yield address


def titles(data: bytes) -> list[str]:
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return [entry.title for entry in parsed.entries]


def links(data: bytes) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for link in feedparser.parse(data).feed.links:
        found.setdefault(link.rel, []).append(link.href)
    return found


# --- the query ---------------------------------------------------------------------------------


def test_a_query_is_read_as_utf_8_and_folded() -> None:
    encoded = FeedFilter.from_query(b"filter=%E5%8C%97%E4%BA%A4%E6%89%80%7C%E5%8C%97%E8%AD%89")
    assert encoded is not None
    assert encoded.include == ("北交所", "北证")  # 北證 folded to simplified


def test_other_parameters_are_no_filter() -> None:
    assert FeedFilter.from_query(b"_=1700000000&utm_source=reader") is None
    assert FeedFilter.from_query(b"limit=5&_=1") == FeedFilter(limit=5)
    # left empty, or only separators: the feed itself (its self link had a bare "?")
    assert FeedFilter.from_query(b"filter=&filterout=%7C%20%7C&filter_title=") is None


@pytest.mark.parametrize(
    "query", [b"limit=0", b"limit=-3", b"limit=ten", b"limit=", "limit=５".encode()]
)
def test_a_bad_limit_is_refused_with_a_reason(query: bytes) -> None:
    with pytest.raises(FilterError, match="limit must be a whole number"):
        FeedFilter.from_query(query)


@pytest.mark.parametrize(
    "query", [b"filter=%B1%B1%BD%BB%CB%F9", "filter=北交所".encode("gbk"), b"filterout=%E5%8C"]
)
def test_filter_words_that_are_not_utf_8_are_refused(query: bytes) -> None:
    with pytest.raises(FilterError, match="is not UTF-8 text"):
        FeedFilter.from_query(query)
    assert FeedFilter.from_query(b"_=%FF&limit=3") == FeedFilter(limit=3)  # not ours: ignored


def test_too_many_words_are_refused() -> None:
    words = "|".join(f"w{n}" for n in range(MAX_WORDS + 1))
    with pytest.raises(FilterError, match="at most"):
        FeedFilter.from_query(f"filter={words}".encode())


# --- the filtered document ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["rss", "atom"])
def test_filters_keep_matching_items_newest_first(built: Config, fmt: str) -> None:
    document = (built.output / f"all.{fmt}").read_bytes()
    # newest first (the hexo outlet's "GMT" is Beijing time)
    assert titles(document) == [
        "央行开展逆回购操作",
        "北證50指數走強",
        "新三板挂牌公司推广活动",
        "北交所发布新规",
    ]

    def apply(query: str) -> list[str]:
        wanted = FeedFilter.from_query(query.encode())
        assert wanted is not None
        return titles(filter_feed(document, wanted, f"{BASE}all.{fmt}?{wanted.query()}"))

    assert apply("filter=北交所|北证") == ["北證50指數走強", "北交所发布新规"]
    assert apply("filter=新三板|北交所&filterout=广告") == ["北交所发布新规"]  # body has 广告
    assert apply("filter_title=北证") == ["北證50指數走強"]  # traditional title, folded
    assert apply("filterout_title=北交所|央行") == ["北證50指數走強", "新三板挂牌公司推广活动"]
    assert apply("limit=2") == ["央行开展逆回购操作", "北證50指數走強"]
    assert apply("filter=今日&limit=1") == ["央行开展逆回购操作"]
    assert apply("filter=不存在的词") == []


@pytest.mark.parametrize("fmt", ["rss", "atom"])
def test_a_filtered_feed_names_itself_and_no_hub(built: Config, fmt: str) -> None:
    document = (built.output / f"all.{fmt}").read_bytes()
    assert links(document)["hub"] == [HUB]
    own = f"{BASE}all.{fmt}?filter=%E5%8C%97"
    filtered = filter_feed(document, FeedFilter(include=("北",)), own)
    assert links(filtered)["self"] == [own]
    assert "hub" not in links(filtered)  # hubs are only told of the unfiltered feeds
    if fmt == "atom":
        assert feedparser.parse(filtered).feed.id == own


# --- served ------------------------------------------------------------------------------------


def test_served_filters(server: str, built: Config) -> None:
    plain = httpx.get(f"{server}/all.rss")
    assert 'rel="hub"' in plain.headers["link"]
    filtered = httpx.get(f"{server}/all.rss", params={"filter": "北交所|北证"})
    assert filtered.status_code == 200
    assert filtered.headers["content-type"] == "application/rss+xml; charset=utf-8"
    assert titles(filtered.content) == ["北證50指數走強", "北交所发布新规"]
    assert "link" not in filtered.headers
    assert filtered.headers["etag"] != plain.headers["etag"]
    again = httpx.get(
        f"{server}/all.rss",
        params={"filter": "北交所|北证"},
        headers={"If-None-Match": filtered.headers["etag"]},
    )
    assert again.status_code == 304

    unrelated = httpx.get(f"{server}/all.rss", params={"_": "1700000000"})
    assert unrelated.content == plain.content
    bad = httpx.get(f"{server}/all.atom", params={"limit": "0"})
    assert bad.status_code == 400 and "limit must be a whole number" in bad.text
    index = httpx.get(f"{server}/index.html", params={"filter": "北交所"})
    assert index.status_code == 200 and b"<html" in index.content.lower()


def test_a_served_filter_follows_the_feed_it_cuts(server: str, built: Config) -> None:
    params = {"filter_title": "北交所"}
    first = httpx.get(f"{server}/topics/beijiaosuo.atom", params=params)
    assert titles(first.content) == ["北交所发布新规"]
    write(
        built.articles[0] / "e.md",
        hexo_post(
            "北交所再发新规", ["北交所今日再次发布新规。"], date="Wed, 15 May 2024 01:00:00 GMT"
        ),
    )
    build(built)
    second = httpx.get(f"{server}/topics/beijiaosuo.atom", params=params)
    assert titles(second.content) == ["北交所再发新规", "北交所发布新规"]
    assert second.headers["etag"] != first.headers["etag"]


@pytest.mark.parametrize("fmt", ["rss", "atom"])
def test_a_filtered_feed_is_dated_by_the_items_it_keeps(built: Config, fmt: str) -> None:
    own = f"{BASE}all.{fmt}?filter=%E5%8C%97"
    wanted = FeedFilter(include=("北",))
    before = filter_feed((built.output / f"all.{fmt}").read_bytes(), wanted, own)
    kept = feedparser.parse(before)
    newest_kept = kept.entries[0]["updated_parsed" if fmt == "atom" else "published_parsed"]
    assert kept.feed.updated_parsed == newest_kept  # 北證50指數走強, not the newer 央行 story
    write(
        built.articles[0] / "e.md",
        jekyll_post("国债期货收涨", ["国债期货全线收涨。"], date="2024-05-15 09:00:00 +0800"),
    )
    build(built)
    after = filter_feed((built.output / f"all.{fmt}").read_bytes(), wanted, own)
    assert after == before  # a story the filter drops changes no byte: readers get 304

    empty = filter_feed(
        (built.output / f"all.{fmt}").read_bytes(), FeedFilter(include=("无",)), own
    )
    assert feedparser.parse(empty).entries == []
    if fmt == "rss":  # undated, as an empty feed is rendered
        assert b"<lastBuildDate>" not in empty and b"<pubDate>" not in empty
    else:
        assert b"<updated>1970-01-01T00:00:00+00:00</updated>" in empty


def test_a_served_filter_stays_not_modified_while_only_other_stories_arrive(
    server: str, built: Config
) -> None:
    params = {"filter": "北交所|北证"}
    first = httpx.get(f"{server}/all.rss", params=params)
    write(
        built.articles[0] / "e.md",
        jekyll_post("国债期货收涨", ["国债期货全线收涨。"], date="2024-05-15 09:00:00 +0800"),
    )
    build(built)
    assert "国债期货收涨" in httpx.get(f"{server}/all.rss").text
    again = httpx.get(
        f"{server}/all.rss", params=params, headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304


@pytest.mark.parametrize(
    ("document", "kept_date"),
    [
        (
            b"<rss version='2.0'><channel><title>t</title><lastBuildDate>x</lastBuildDate>"
            b"<item><title>a</title><pubDate>not a date</pubDate></item>"
            b"<item><title>b</title><pubDate>Tue, 14 May 2024 01:00:00 -0000</pubDate></item>"
            b"<item><title>c</title><pubDate>Wed, 15 May 2024 01:00:00 +0000</pubDate></item>"
            b"</channel></rss>",
            "Tue, 14 May 2024 01:00:00 -0000",
        ),
        (
            b"<feed xmlns='http://www.w3.org/2005/Atom'><id>x</id><updated>x</updated>"
            b"<entry><title>a</title><updated>2024-05-14</updated></entry>"
            b"<entry><title>b</title><updated>yesterday</updated></entry>"
            b"<entry><title>c</title><updated>2024-05-15T00:00:00+00:00</updated></entry></feed>",
            "2024-05-14",
        ),
    ],
)
def test_a_foreign_feed_file_with_odd_dates_is_still_filtered(
    document: bytes, kept_date: str
) -> None:
    """A feed file not written by feeds (dropped into the output folder by hand) may carry
    dates feeds never writes: unreadable ones are passed over, zone-less ones taken as UTC."""
    filtered = filter_feed(
        document, FeedFilter(exclude_title=("c",)), "https://x/f?filterout_title=c"
    )
    parsed = feedparser.parse(filtered)
    assert [entry.title for entry in parsed.entries] == ["a", "b"]
    assert f">{kept_date}<".encode() in filtered


# --- simplified/traditional Chinese (opencc=…) -------------------------------------------------


def test_a_conversion_is_read_checked_and_named_in_the_query() -> None:
    wanted = FeedFilter.from_query("opencc=S2TW&filter=北交所".encode())
    assert wanted is not None and wanted.opencc == "s2tw"
    assert wanted.query() == "filter=%E5%8C%97%E4%BA%A4%E6%89%80&opencc=s2tw"
    for query in (b"opencc=zh-tw", b"opencc=", b"opencc=s2t&opencc=s2hk"):
        with pytest.raises(FilterError, match="opencc"):
            FeedFilter.from_query(query)


def contents_and_images(data: bytes) -> tuple[list[str], list[str]]:
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    html = [entry.content[0].value for entry in parsed.entries]
    sources = [src for text in html for src in re.findall(r'src="([^"]+)"', text)]
    return html, sources


@pytest.mark.parametrize("fmt", ["rss", "atom"])
def test_a_converted_feed_is_in_traditional_chinese_but_keeps_its_addresses(
    make_config: Callable[..., Config], tmp_path: Path, fmt: str
) -> None:
    config = make_config(base_url=BASE)
    figure = '<p><img src="https://img.example.com/图表/发展.png" alt="发展图表"></p>'
    write(
        tmp_path / "articles" / "a.md",
        hexo_post(
            "北交所发展报告发布", ["北交所发展报告显示，专精特新企业数量增长。"], extra=figure
        ),
    )
    build(config)
    plain = (config.output / f"all.{fmt}").read_bytes()
    wanted = FeedFilter.from_query(b"opencc=s2tw")
    assert wanted is not None
    converted = filter_feed(plain, wanted, f"{BASE}all.{fmt}?opencc=s2tw")
    parsed = feedparser.parse(converted)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    entry = parsed.entries[0]
    assert entry.title == "北交所發展報告發布"
    assert "專精特新企業數量增長" in entry.summary
    assert parsed.feed.language == "zh-TW"
    assert entry.author == "證券時報網"
    assert "證券時報網" in {tag.term for tag in entry.tags}
    html, sources = contents_and_images(converted)
    assert "專精特新企業數量增長" in html[0] and 'alt="發展圖表"' in html[0]
    # Image addresses untouched (lxml writes non-ASCII in them percent-encoded, as browsers
    # send them anyway).
    assert [unquote(src) for src in sources] == contents_and_images(plain)[1] != []
    original = feedparser.parse(plain).entries[0]
    assert (entry.get("link"), entry.id) == (original.get("link"), original.id)
    t2s = FeedFilter.from_query(b"opencc=t2s")
    assert t2s is not None
    back = feedparser.parse(filter_feed(converted, t2s, f"{BASE}all.{fmt}?opencc=t2s"))
    assert back.entries[0].title == "北交所发展报告发布" and back.feed.language == "zh-CN"


def test_a_served_conversion_is_cached_like_a_filter(server: str, built: Config) -> None:
    first = httpx.get(f"{server}/all.atom", params={"opencc": "s2hk", "filter": "北交所"})
    assert first.status_code == 200
    assert titles(first.content) == ["北交所發佈新規"]
    assert feedparser.parse(first.content).feed.id.endswith(
        "/all.atom?filter=%E5%8C%97%E4%BA%A4%E6%89%80&opencc=s2hk"
    )
    again = httpx.get(
        f"{server}/all.atom",
        params={"opencc": "s2hk", "filter": "北交所"},
        headers={"If-None-Match": first.headers["etag"]},
    )
    assert again.status_code == 304
    bad = httpx.get(f"{server}/all.atom", params={"opencc": "klingon"})
    assert bad.status_code == 400 and "opencc must be one of" in bad.text
