"""Outlets whose names read the same in pinyin (财新网, 财信网), neither configured: the first one
stored keeps the slug, a later one gets its own, in a build and in the service, across restarts."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree

import feedparser
import pytest

from feeds.config import Config
from feeds.model import FeedKey
from feeds.pipeline import CODE_VERSIONS
from feeds.store import open_store
from feeds.store.sqlite import MIGRATIONS
from tests.conftest import build, feed_entries, hexo_post, write, write_filler
from tests.service_process import ServiceProcess, wait_for, write_config

XIN = "财新网"  # neither is a configured or built-in outlet: both give "caixinwang"
XIN2 = "财信网"


def story(n: int, outlet: str) -> str:
    text = [
        f"{outlet}第{n}条消息：某上市公司今日公告，第{n}季度营业收入同比增长{10 + n}%，"
        "主营业务保持稳定，海外订单持续增加。",
    ]
    return hexo_post(
        f"{outlet}消息{n}",
        text,
        outlet=outlet,
        feed="要闻",
        date=f"Tue, 1{n} May 2024 10:00:00 GMT",
    )


def feed_of(config: Config, slug: str) -> tuple[str, list[str]]:
    """An outlet feed's title and its entries' titles."""
    parsed = feedparser.parse((config.output / "sources" / f"{slug}.atom").read_bytes())
    assert parsed.bozo == 0
    return parsed.feed.title, sorted(e.title for e in parsed.entries)


def outlet_feeds(config: Config) -> dict[str, str]:
    """Outlet feeds listed in the OPML: slug -> title."""
    root = ElementTree.fromstring((config.output / "feeds.opml").read_bytes())
    return {
        o.get("xmlUrl", "").rsplit("/", 1)[-1].removesuffix(".rss"): o.get("text", "")
        for o in root.iter("outline")
        if "/sources/" in o.get("xmlUrl", "")
    }


def hashed(feeds: dict[str, str]) -> str:
    (slug,) = [s for s in feeds if s.startswith("caixinwang-")]
    return slug


def test_a_later_homophone_gets_its_own_feed_and_the_first_keeps_its_slug(
    make_config: Callable[..., Config], articles: Path
) -> None:
    config = make_config()
    write(articles / "xin1.md", story(1, XIN))
    build(config)
    write(articles / "xin2-1.md", story(2, XIN2))
    build(config)
    write(articles / "xin3.md", story(3, XIN))
    write(articles / "xin2-4.md", story(4, XIN2))
    build(config)
    feeds = outlet_feeds(config)
    other = hashed(feeds)
    assert len(other) == len("caixinwang-") + 6
    assert feed_of(config, "caixinwang") == (f"财经新闻 · {XIN}", [f"{XIN}消息1", f"{XIN}消息3"])
    assert feed_of(config, other) == (f"财经新闻 · {XIN2}", [f"{XIN2}消息2", f"{XIN2}消息4"])
    # the slug is the stored claim, not the order of this run: a build from a new process
    # (a restart) after an edit keeps both
    write(articles / "xin1.md", story(1, XIN).replace("海外订单", "海外新订单"))
    build(config)
    assert outlet_feeds(config) == feeds
    assert feed_of(config, "caixinwang")[0] == f"财经新闻 · {XIN}"
    assert len(feed_entries(config, "all.atom")) == 4


def test_spellings_of_one_outlet_share_its_claim(
    make_config: Callable[..., Config], articles: Path
) -> None:
    # Traditional script, full-width letters or a space are the same outlet, not a homophone.
    config = make_config()
    write(articles / "a.md", story(1, XIN))
    write(articles / "b.md", story(2, "財新網"))
    build(config)
    assert set(outlet_feeds(config)) == {"caixinwang"}
    assert len(feed_of(config, "caixinwang")[1]) == 2


def test_one_and_two_workers_give_homophones_the_same_slugs(
    make_config: Callable[..., Config], tmp_path: Path, articles: Path
) -> None:
    write_filler(articles)  # above the parallel threshold: two workers really fan out
    for n in range(1, 5):
        write(articles / f"x/{n}.md", story(n, XIN if n % 2 else XIN2))
    serial = make_config()
    parallel = make_config(output=str(tmp_path / "out2"), state=str(tmp_path / "state2.db"))
    build(serial, workers=1)
    build(parallel, workers=2)
    assert outlet_feeds(serial) == outlet_feeds(parallel)
    feeds = outlet_feeds(serial)
    assert {feeds["caixinwang"], feeds[hashed(feeds)]} == {
        f"财经新闻 · {XIN}",
        f"财经新闻 · {XIN2}",
    }
    for path in sorted(serial.output.rglob("*.*")):
        twin = parallel.output / path.relative_to(serial.output)
        assert path.read_bytes() == twin.read_bytes(), path


def test_a_configured_outlet_still_wins_over_an_unconfigured_homophone(
    make_config: Callable[..., Config], articles: Path
) -> None:
    config = make_config(sources=[{"name": XIN2, "slug": "caixinwang"}])
    write(articles / "a.md", story(1, XIN))  # stored first, but not configured
    build(config)
    write(articles / "b.md", story(2, XIN2))
    build(config)
    feeds = outlet_feeds(config)
    assert feeds["caixinwang"] == f"财经新闻 · {XIN2}"
    assert feed_of(config, hashed(feeds))[1] == [f"{XIN}消息1"]


def as_written_before(config: Config) -> str:
    """What the code before claims wrote: no claims table (schema 8), the homophones' files in
    one feed, "caixinwang", whose title showed the outlet stored last (here the one this code
    gave the other slug), and that code's digest. Returns that outlet's name."""
    db = sqlite3.connect(config.state)
    try:
        db.execute("DROP TABLE outlet_slugs")
        db.execute("PRAGMA user_version = 8")
        ((slug, name),) = db.execute(
            "SELECT slug, name FROM sources WHERE slug LIKE 'caixinwang-%'"
        ).fetchall()
        # the feed-size triggers move the counts with the rows
        db.execute("UPDATE files SET source_slug = 'caixinwang' WHERE source_slug = ?", (slug,))
        db.execute("UPDATE items SET source_slug = 'caixinwang' WHERE source_slug = ?", (slug,))
        db.execute("DELETE FROM sources WHERE slug = ?", (slug,))
        db.execute("UPDATE sources SET name = ? WHERE slug = 'caixinwang'", (name,))
        (digest,) = db.execute("SELECT value FROM meta WHERE key = 'normalize_digest'").fetchone()
        old = digest.removesuffix(CODE_VERSIONS) + CODE_VERSIONS.rsplit("/outlets", 1)[0]
        db.execute("UPDATE meta SET value = ? WHERE key = 'normalize_digest'", (old,))
        db.commit()
    finally:
        db.close()
    return str(name)


def test_homophones_that_shared_a_feed_are_parted_and_the_feeds_outlet_keeps_it(
    make_config: Callable[..., Config], articles: Path
) -> None:
    config = make_config()
    write(articles / "a.md", story(1, XIN))
    write(articles / "b.md", story(2, XIN2))
    build(config)
    store = open_store(config.state)
    try:
        ids = sorted(i.id for i in store.iter_items())
    finally:
        store.close()
    shown = as_written_before(config)
    other = XIN2 if shown == XIN else XIN
    number = {XIN: 1, XIN2: 2}

    store = open_store(config.state)
    try:
        assert store.schema_version == len(MIGRATIONS)
    finally:
        store.close()
    build(config)
    feeds = outlet_feeds(config)
    assert len(feeds) == 2
    # the outlet its feed showed keeps the slug; the other gets its own feed
    assert feed_of(config, "caixinwang") == (f"财经新闻 · {shown}", [f"{shown}消息{number[shown]}"])
    assert feed_of(config, hashed(feeds)) == (
        f"财经新闻 · {other}",
        [f"{other}消息{number[other]}"],
    )
    store = open_store(config.state)
    try:
        assert sorted(i.id for i in store.iter_items()) == ids  # ids never change
        counted = store.counted_feed_sizes()
        kept = {name: store.feed_count(FeedKey.parse(name)) for name in counted}
        assert kept == counted == {"all": 2, "source:caixinwang": 1, f"source:{hashed(feeds)}": 1}
    finally:
        store.close()


@pytest.mark.slow
def test_the_service_keeps_homophones_apart_across_a_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    articles = tmp_path / "articles"

    def titles(service: ServiceProcess, path: str) -> list[str]:
        response = service.get(path)
        if response.status_code != 200:
            return []
        return sorted(e.title for e in feedparser.parse(response.content).entries)

    service = ServiceProcess(config).wait_ready()
    try:
        write(articles / "a.md", story(1, XIN))
        wait_for(lambda: titles(service, "/sources/caixinwang.atom") == [f"{XIN}消息1"], what="1")
        write(articles / "b.md", story(2, XIN2))
        wait_for(lambda: len(titles(service, "/all.atom")) == 2, what="the homophone")
        assert titles(service, "/sources/caixinwang.atom") == [f"{XIN}消息1"]
    finally:
        service.kill()
    service = ServiceProcess(config).wait_ready()
    try:
        write(articles / "c.md", story(3, XIN2))
        write(articles / "d.md", story(4, XIN))
        wait_for(lambda: len(titles(service, "/all.atom")) == 4, what="after the restart")
        wait_for(
            lambda: titles(service, "/sources/caixinwang.atom") == [f"{XIN}消息1", f"{XIN}消息4"],
            what="the first outlet's feed",
        )
        opml = service.get("/feeds.opml").text
        (other,) = {
            url.rsplit("/", 1)[-1].removesuffix(".rss")
            for url in opml.split('"')
            if "/sources/caixinwang-" in url and url.endswith(".rss")
        }
        assert titles(service, f"/sources/{other}.atom") == [f"{XIN2}消息2", f"{XIN2}消息3"]
        feed = feedparser.parse(service.get("/sources/caixinwang.atom").content)
        assert feed.feed.title == f"财经新闻 · {XIN}"
    finally:
        service.kill()
