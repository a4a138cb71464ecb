"""Each feed's live item count, kept by the store as articles come and go (real files, real
SQLite): it always equals a count over the rows, also for a state written by schema 5."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from feeds.config import Config
from feeds.model import FeedKey
from feeds.store import open_store
from feeds.store.sqlite import MIGRATIONS
from tests.conftest import build, hexo_post, jekyll_post, write

BJS = ["北交所今日成交额明显放大，北证50指数盘中创出年内新高，市场人气持续回暖。"]
SRDT = ["多家专精特新企业披露半年报，研发投入同比增长，部分公司净利润实现翻倍。"]
PLAIN = ["人民银行今日开展100亿元7天期逆回购操作，中标利率持平，资金面保持平稳。"]


def sizes(config: Config) -> tuple[dict[str, int], dict[str, int]]:
    """(kept sizes of the counted feeds and of every rendered feed, counted sizes)."""
    store = open_store(config.state)
    try:
        counted = store.counted_feed_sizes()
        names = set(counted) | set(store.feed_states())
        kept = {name: store.feed_count(FeedKey.parse(name)) for name in names}
        return kept, {name: counted.get(name, 0) for name in names}
    finally:
        store.close()


def assert_sizes_right(config: Config) -> dict[str, int]:
    kept, counted = sizes(config)
    assert kept == counted
    return kept


def test_sizes_follow_new_copies_edits_moves_and_deletes(
    make_config: Callable[..., Config], articles: Path
) -> None:
    config = make_config()
    a = write(articles / "a.md", hexo_post("北交所成交放大", BJS))
    write(articles / "b.md", hexo_post("专精特新企业半年报", SRDT, outlet="澎湃新闻"))
    copy = write(articles / "j" / "2024-05-14-c.md", jekyll_post("北交所成交放大", BJS))
    build(config)
    kept = assert_sizes_right(config)
    assert kept["all"] == 2
    assert kept["topic:beijiaosuo"] == 1
    assert kept["source:dongfangcaifuwang"] == 1  # the copy's outlet shows the story too

    write(a, hexo_post("央行逆回购操作", PLAIN))  # an edit that leaves the topic
    build(config)
    assert assert_sizes_right(config)["topic:beijiaosuo"] == 1  # the copy still mentions it

    copy.unlink()
    build(config)
    kept = assert_sizes_right(config)
    assert kept["topic:beijiaosuo"] == 0
    assert kept["source:dongfangcaifuwang"] == 0

    a.rename(articles / "moved.md")  # same content, another path: same item
    build(config)
    assert assert_sizes_right(config)["all"] == 2

    (articles / "b.md").unlink()
    (articles / "moved.md").unlink()
    build(config)
    assert assert_sizes_right(config)["all"] == 0


def test_sizes_with_deleted_files_kept(make_config: Callable[..., Config], articles: Path) -> None:
    config = make_config(feed={"keep_deleted": True})
    a = write(articles / "a.md", hexo_post("北交所成交放大", BJS))
    build(config)
    a.unlink()
    build(config)
    assert assert_sizes_right(config)["all"] == 1
    write(articles / "a.md", hexo_post("北交所成交放大", BJS))
    build(config)
    assert assert_sizes_right(config)["topic:beijiaosuo"] == 1


# Objects of migrations 6 and later, newest first.
LATER_OBJECTS = (
    "TABLE outlet_slugs", "TABLE alert_requests",
    "TRIGGER items_sizes_insert", "TRIGGER items_sizes_update", "TRIGGER items_sizes_delete",
    "TRIGGER item_topics_sizes_insert", "TRIGGER item_topics_sizes_delete",
    "TRIGGER item_topics_sizes_update", "TRIGGER files_sizes_insert",
    "TRIGGER files_sizes_delete", "TRIGGER files_sizes_update", "TABLE feed_sizes",
)  # fmt: skip


def downgrade_to_schema_5(state: Path) -> None:
    """Turn a state into what schema 5 wrote: the same rows without later migrations' objects."""
    db = sqlite3.connect(state)
    try:
        db.execute("ALTER TABLE files DROP COLUMN body_chars")  # migration 8
        for kind_and_name in LATER_OBJECTS:
            db.execute(f"DROP {kind_and_name}")
        db.execute("PRAGMA user_version = 5")
        db.commit()
    finally:
        db.close()


def test_a_schema_5_state_gets_its_sizes_counted(
    make_config: Callable[..., Config], articles: Path
) -> None:
    config = make_config()
    write(articles / "a.md", hexo_post("北交所成交放大", BJS))
    write(articles / "b.md", hexo_post("专精特新企业半年报", SRDT, outlet="澎湃新闻"))
    gone = write(articles / "c.md", hexo_post("北交所另一条", [*PLAIN, "北交所成交活跃。"]))
    build(config)
    gone.unlink()
    build(config)  # a removed item: counted nowhere
    index = (config.output / "index.html").read_bytes()
    downgrade_to_schema_5(config.state)

    store = open_store(config.state)
    try:
        assert store.schema_version == len(MIGRATIONS)
    finally:
        store.close()
    kept = assert_sizes_right(config)
    assert (kept["all"], kept["topic:beijiaosuo"], kept["topic:zhuanjingtexin"]) == (2, 1, 1)
    write(articles / "d.md", hexo_post("新三板挂牌", ["新三板挂牌公司数量稳步增加。", *PLAIN]))
    build(config)
    assert assert_sizes_right(config)["topic:xinsanban"] == 1
    assert (config.output / "index.html").read_bytes() != index  # counts moved on


def test_common_and_rare_topics_list_their_newest_items(
    make_config: Callable[..., Config], articles: Path
) -> None:
    # A common topic is found by walking the newest items, a rare one from its own rows.
    config = make_config(feed={"limit": 2})
    for day in range(10, 15):
        text = [f"北交所第{day}日成交额放大，北证50指数再创新高，市场情绪回暖。"]
        date = f"Tue, {day} May 2024 10:35:00 GMT"
        write(articles / f"b{day}.md", hexo_post(f"北交所{day}日", text, date=date))
    write(articles / "x.md", hexo_post("新三板挂牌", ["新三板挂牌公司数量增加。", *PLAIN]))
    write(articles / "p.md", hexo_post("央行逆回购", PLAIN, date="Tue, 20 May 2024 10:35:00 GMT"))
    build(config)
    store = open_store(config.state)
    try:
        common = store.feed_items(FeedKey("topic", "beijiaosuo"), 2)
        rare = store.feed_items(FeedKey("topic", "xinsanban"), 2)
    finally:
        store.close()
    assert [item.title for item in common] == ["北交所14日", "北交所13日"]
    assert [item.title for item in rare] == ["新三板挂牌"]
