"""JSON Feed 1.1 made from the Atom feeds the pipeline wrote, read back by a real JSON Feed
parser (jsonfeed-util) and compared with what feedparser reads from the Atom file."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import feedparser
import httpx
import jsonfeed
import pytest
from lxml import etree

from feeds.config import Config
from feeds.jsonfeed import VERSION, NotAtom, json_feed
from tests.conftest import build, hexo_post, jekyll_post, serving, write

BASE = "https://feeds.example.org/"
NEXT_DAY = "Wed, 15 May 2024 01:00:00 GMT"
FIGURE = '<p><img src="https://img.example.com/2024/chart.png" alt="走势图"></p>'


@pytest.fixture
def built(make_config: Callable[..., Config], tmp_path: Path) -> Config:
    config = make_config(base_url=BASE)
    write(
        tmp_path / "articles" / "a.md",
        hexo_post(
            "北交所发布新规", ["北交所今日发布新规，优化发行上市审核流程。"], extra=FIGURE,
            date="Tue, 14 May 2024 01:00:00 GMT",
        ),
    )  # fmt: skip
    write(
        tmp_path / "articles" / "b.md",
        jekyll_post(
            "北证50指数走强", ["北证50指数今日上涨，成交额放大。"],
            date="2024-05-14 10:00:00 +0800", link="https://finance.example.com/a/1.html",
        ),
    )  # fmt: skip
    build(config)
    return config


def test_a_json_feed_holds_what_the_atom_feed_holds(built: Config) -> None:
    atom = (built.output / "all.atom").read_bytes()
    data = json_feed(atom, f"{BASE}all.json")
    parsed = jsonfeed.Feed.parse_string(data.decode("utf-8"))
    reference = feedparser.parse(atom)
    assert reference.bozo == 0
    assert parsed.version == VERSION and parsed.title == reference.feed.title
    assert parsed.feed_url == f"{BASE}all.json"
    assert parsed.home_page_url == f"{BASE}index.html"
    assert parsed.description == reference.feed.subtitle
    assert [item.id for item in parsed.items] == [entry.id for entry in reference.entries]
    assert [item.title for item in parsed.items] == ["北证50指数走强", "北交所发布新规"]
    contents = [
        element.text
        for element in etree.fromstring(atom).iter("{http://www.w3.org/2005/Atom}content")
    ]  # as written (feedparser re-serializes what it reads)
    assert [item.content_html for item in parsed.items] == contents
    for item, entry in zip(parsed.items, reference.entries, strict=True):
        assert item.summary == entry.summary
        alternates = [link.href for link in entry.get("links", []) if link.rel == "alternate"]
        assert item.url == (alternates[0] if alternates else None)
        assert [a.name for a in item.authors] == [entry.author]
        assert set(item.tags) == {tag.term for tag in entry.tags}
        published = datetime.fromisoformat(item.date_published)
        assert published.timetuple()[:6] == entry.published_parsed[:6]  # RFC 3339, same moment
        assert datetime.fromisoformat(item.date_modified).tzinfo is not None
    assert parsed.items[0].url == "https://finance.example.com/a/1.html"
    assert parsed.items[1].image == "https://img.example.com/2024/chart.png"


def test_empty_values_are_left_out_and_the_text_is_utf_8(built: Config) -> None:
    data = json_feed((built.output / "all.atom").read_bytes(), f"{BASE}all.json")
    assert "北交所".encode() in data  # not \\u-escaped
    document = json.loads(data)
    hexo_item = document["items"][1]
    assert "url" not in hexo_item  # a Hexo post without a link: no empty "url"
    assert document["language"] == "zh-CN"


def test_an_empty_feed_is_a_valid_json_feed(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = make_config(base_url=BASE)
    (tmp_path / "articles").mkdir(exist_ok=True)
    build(config)
    data = json_feed((config.output / "all.atom").read_bytes(), f"{BASE}all.json")
    parsed = jsonfeed.Feed.parse_string(data.decode("utf-8"))
    assert parsed.items == [] and parsed.title


def test_rss_is_not_converted(built: Config) -> None:
    with pytest.raises(NotAtom):
        json_feed((built.output / "all.rss").read_bytes(), f"{BASE}all.json")


# --- served ------------------------------------------------------------------------------------


@pytest.fixture
def server(built: Config) -> Iterator[str]:
    with serving(built.output, hubs=("https://hub.example.com/",), base_url=BASE) as address:
        yield address


def test_every_feed_is_served_as_json_feed_too(server: str, built: Config) -> None:
    atom = httpx.get(f"{server}/all.atom")
    served = httpx.get(f"{server}/all.json")
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/feed+json; charset=utf-8"
    assert "link" not in served.headers  # hubs know the RSS and Atom feeds only
    parsed = jsonfeed.Feed.parse_string(served.text)
    assert parsed.feed_url == f"{BASE}all.json"
    assert [i.id for i in parsed.items] == [e.id for e in feedparser.parse(atom.content).entries]
    again = httpx.get(f"{server}/all.json", headers={"If-None-Match": served.headers["etag"]})
    assert again.status_code == 304
    topic = jsonfeed.Feed.parse_string(httpx.get(f"{server}/topics/beijiaosuo.json").text)
    topic_atom = feedparser.parse(httpx.get(f"{server}/topics/beijiaosuo.atom").content)
    assert [i.title for i in topic.items] == [e.title for e in topic_atom.entries] != []
    assert topic.title == topic_atom.feed.title != parsed.title
    for missing in ("/nope.json", "/index.json", "/feeds.json", "/sources/x.json"):
        assert httpx.get(f"{server}{missing}").status_code == 404, missing


def test_a_json_feed_follows_its_atom_feed_and_takes_filters(server: str, built: Config) -> None:
    first = httpx.get(f"{server}/all.json")
    write(
        built.articles[0] / "c.md",
        hexo_post(
            "北交所再发新规", ["北交所今日再次发布新规。"], date="Wed, 15 May 2024 01:00:00 GMT"
        ),
    )
    build(built)
    second = httpx.get(f"{server}/all.json", headers={"If-None-Match": first.headers["etag"]})
    assert second.status_code == 200
    assert jsonfeed.Feed.parse_string(second.text).items[0].title == "北交所再发新规"
    params = {"filter_title": "新规", "opencc": "s2tw", "limit": "1"}
    cut = jsonfeed.Feed.parse_string(httpx.get(f"{server}/all.json", params=params).text)
    assert [item.title for item in cut.items] == ["北交所再發新規"]
    assert cut.feed_url == f"{BASE}all.json?filter_title=%E6%96%B0%E8%A7%84&limit=1&opencc=s2tw"
    assert cut.language == "zh-TW"
