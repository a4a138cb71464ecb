"""The build pipeline end to end on real files, a real SQLite file and real output files."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
from lxml import html

from feeds.config import Config
from feeds.pipeline import Pipeline
from feeds.store import open_store
from tests.conftest import OTHER, STORY, build, feed_entries, hexo_post, jekyll_post, write
from tests.conftest import TOPICS as TOPICS_FOR_TEST


def output_files(config: Config) -> dict[str, tuple[bytes, int]]:
    found = {}
    for path in sorted(config.output.rglob("*")):
        if path.is_file():
            found[str(path.relative_to(config.output))] = (
                path.read_bytes(),
                path.stat().st_mtime_ns,
            )
    return found


def items(config: Config) -> list[dict[str, object]]:
    store = open_store(config.state)
    try:
        return [vars_of(i) for i in store.iter_items()]
    finally:
        store.close()


def vars_of(item: object) -> dict[str, object]:
    return {name: getattr(item, name) for name in item.__slots__}  # type: ignore[attr-defined]


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config()


def test_build_writes_every_feed_and_reads_back(config: Config, articles: Path) -> None:
    write(articles / "a" / "北证.md", hexo_post("北证50指数创年内新高", STORY))
    write(articles / "b" / "2024-05-17-1.md", jekyll_post("央行开展逆回购操作", OTHER))
    report = build(config)
    assert report.batch.new == 2
    expected = {
        "all.rss", "all.atom", "index.html", "feeds.opml",
        "sources/zhengquanshibaowang.rss", "sources/zhengquanshibaowang.atom",
        "sources/dongfangcaifuwang.rss", "sources/dongfangcaifuwang.atom",
        "topics/beijiaosuo.rss", "topics/beijiaosuo.atom",
        "topics/xinsanban.rss", "topics/zhuanjingtexin.atom",
    }  # fmt: skip
    assert expected <= set(output_files(config))
    assert [e.title for e in feed_entries(config, "topics/beijiaosuo.atom")] == [
        "北证50指数创年内新高"
    ]
    assert feed_entries(config, "topics/xinsanban.rss") == []
    assert len(feed_entries(config, "all.rss")) == 2


def test_second_build_touches_nothing(config: Config, articles: Path) -> None:
    write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY))
    build(config)
    before = output_files(config)
    report = build(config)
    assert report.render.written == []
    assert output_files(config) == before


def test_rewrite_with_same_content_changes_nothing(config: Config, articles: Path) -> None:
    path = write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY), mtime=1_700_000_000)
    build(config)
    before, ids = output_files(config), [i["id"] for i in items(config)]
    # same content, new mtime and even a new date: still the same story
    newer = hexo_post("北证50指数创年内新高", STORY, date="Wed, 15 May 2024 09:00:00 GMT")
    write(path, newer, mtime=1_800_000_000)
    report = build(config)
    assert report.batch.unchanged == 1 and report.batch.updated == 0
    assert output_files(config) == before
    assert [i["id"] for i in items(config)] == ids


def test_same_story_in_two_dialects_is_one_item(config: Config, articles: Path) -> None:
    write(articles / "hexo" / "北证.md", hexo_post("北证50指数创年内新高", STORY))
    write(articles / "jekyll" / "2024-05-14-9.md", jekyll_post("北证50指数创年内新高", STORY))
    report = build(config)
    assert report.batch.new == 1 and report.batch.merged == 1
    (item,) = items(config)
    assert len(item["paths"]) == 2  # type: ignore[arg-type]
    assert len(feed_entries(config, "all.atom")) == 1
    # each outlet's feed still lists the story
    assert len(feed_entries(config, "sources/zhengquanshibaowang.rss")) == 1
    assert len(feed_entries(config, "sources/dongfangcaifuwang.rss")) == 1
    guids = {feed_entries(config, f)[0].id for f in ("all.rss", "sources/zhengquanshibaowang.rss")}
    assert len(guids) == 1


def test_edited_story_is_updated_not_duplicated(config: Config, articles: Path) -> None:
    path = write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY), mtime=1_700_000_000)
    build(config)
    (first,) = feed_entries(config, "all.atom")
    edited = hexo_post("北证50指数创年内新高", [*STORY[:1], "更正：成交额约为41亿元。"])
    write(path, edited, mtime=1_700_000_600)
    report = build(config)
    assert report.batch.updated == 1 and report.batch.new == 0
    (second,) = feed_entries(config, "all.atom")
    assert second.id == first.id
    assert second.updated_parsed > first.updated_parsed
    assert "更正" in second.content[0].value


def test_copies_merged_in_one_build_keep_the_story_date_as_updated(
    config: Config, articles: Path
) -> None:
    # Two outlets' copies of one story, first seen together: the second joining the item (and
    # representing it) changed nothing a reader saw, so "updated" is no file's mtime
    wire = hexo_post("北证50指数创年内新高", STORY, date="Tue, 14 May 2024 10:35:00 GMT")
    copy = hexo_post(
        "北证50指数创年内新高", [*STORY, "另据报道，午后成交继续放大。"], outlet="新浪财经"
    )
    # read b.md first (a folder's names descending), then a.md, the newer: its representative
    write(articles / "a.md", wire, mtime=1_750_000_100)  # 2025 (not ahead: that is clamped)
    write(articles / "b.md", copy, mtime=1_750_000_000)
    build(config)
    (entry,) = feed_entries(config, "all.atom")
    assert entry.updated_parsed[:3] == (2024, 5, 14)
    later = hexo_post("北证50指数创年内新高", [*STORY, "收盘时涨幅有所收窄。"], outlet="36kr")
    write(articles / "c.md", later, mtime=1_750_000_200)
    build(config)  # a copy joining a story readers have seen does move it
    (entry,) = feed_entries(config, "all.atom")
    assert entry.updated_parsed[0] == 2025


def test_an_outlet_feed_shows_the_complete_copy_not_one_that_lost_its_title_and_date(
    config: Config, articles: Path
) -> None:
    # the finews scraper's "-<code>.md": title "", date " +0800" (dated by its mtime), no link
    complete = jekyll_post("北证50指数创年内新高", STORY, date="2024-05-14 10:41:02 +0800")
    lost = complete.replace('title: "北证50指数创年内新高"', 'title: ""').replace(
        "date: 2024-05-14 10:41:02 +0800", "date:  +0800"
    )
    write(articles / "_posts" / "2024-05-14-202405140001.md", complete, mtime=1_715_000_000)
    write(articles / "_posts" / "-202405140001.md", lost, mtime=1_900_000_000)  # 2030
    build(config)
    for feed in ("all.atom", "sources/dongfangcaifuwang.atom"):
        (entry,) = feed_entries(config, feed)
        assert entry.title == "北证50指数创年内新高", feed
        assert entry.published_parsed[:3] == (2024, 5, 14), feed


def test_title_edit_in_a_new_file_updates_the_same_item(config: Config, articles: Path) -> None:
    write(articles / "v1.md", hexo_post("北证50指数创年内新高！", STORY), mtime=1_700_000_000)
    build(config)
    os.remove(articles / "v1.md")
    write(
        articles / "v2.md", hexo_post("北证50指数创年内新高：成交放大", STORY), mtime=1_700_000_900
    )
    report = build(config)
    assert report.batch.new == 0
    (item,) = items(config)
    assert item["title"] == "北证50指数创年内新高：成交放大"


def test_deleted_file_leaves_the_feeds(config: Config, articles: Path) -> None:
    keep = write(articles / "keep.md", hexo_post("央行开展逆回购操作", OTHER))
    gone = write(articles / "gone.md", hexo_post("北证50指数创年内新高", STORY))
    build(config)
    gone.unlink()
    report = build(config)
    assert report.batch.removed == 1
    assert [e.title for e in feed_entries(config, "all.rss")] == ["央行开展逆回购操作"]
    assert feed_entries(config, "topics/beijiaosuo.rss") == []
    assert keep.exists()


def test_keep_deleted_keeps_items(make_config: Callable[..., Config], articles: Path) -> None:
    config = make_config(feed={"keep_deleted": True})
    gone = write(articles / "gone.md", hexo_post("北证50指数创年内新高", STORY))
    build(config)
    gone.unlink()
    build(config)
    assert [e.title for e in feed_entries(config, "all.rss")] == ["北证50指数创年内新高"]


def test_moved_file_keeps_its_id(config: Config, articles: Path) -> None:
    path = write(articles / "_posts" / "a.md", hexo_post("北证50指数创年内新高", STORY))
    build(config)
    (before,) = items(config)
    (articles / "old_post").mkdir()
    shutil.move(path, articles / "old_post" / "a.md")
    report = build(config)
    (after,) = items(config)
    assert after["id"] == before["id"]
    assert after["paths"] == (str(articles / "old_post" / "a.md"),)
    assert report.batch.new == 0 and report.batch.removed == 0


def test_deleted_then_restored_file_gets_its_old_id_back(config: Config, articles: Path) -> None:
    path = write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY))
    build(config)
    (before,) = items(config)
    text = path.read_text("utf-8")
    path.unlink()
    build(config)
    assert items(config) == []
    write(articles / "elsewhere.md", text)
    build(config)
    (after,) = items(config)
    assert after["id"] == before["id"]


def test_broken_file_is_reported_and_others_survive(config: Config, articles: Path) -> None:
    write(articles / "good.md", hexo_post("央行开展逆回购操作", OTHER))
    write(articles / "bad.md", "---\ntitle: [unclosed\n---\n正文")
    write(articles / "empty.md", "")
    report = build(config)
    assert report.batch.new == 1
    rejected = dict(report.batch.rejected)
    assert set(rejected) == {str(articles / "bad.md"), str(articles / "empty.md")}
    assert "bad YAML" in rejected[str(articles / "bad.md")]
    # a rejected file is not re-read (or re-reported) until it changes
    assert build(config).batch.rejected == []
    write(articles / "bad.md", hexo_post("北证50指数创年内新高", STORY))
    again = build(config)
    assert again.batch.new == 1 and again.batch.rejected == []


def test_feed_limit_keeps_newest(make_config: Callable[..., Config], articles: Path) -> None:
    config = make_config(feed={"limit": 3})
    for day in range(1, 7):
        paragraph = f"这是五月{day}日发布的第{day}条测试消息，内容各不相同。"
        date = f"Wed, 0{day} May 2024 08:00:00 +0800"
        text = hexo_post(f"第{day}天的消息", [paragraph], date=date)
        write(articles / f"{day}.md", text)
    build(config)
    assert [e.title for e in feed_entries(config, "all.rss")] == [
        "第6天的消息",
        "第5天的消息",
        "第4天的消息",
    ]


def test_topic_removed_from_config_removes_its_feed(
    make_config: Callable[..., Config], articles: Path
) -> None:
    write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY))
    build(make_config())
    config = make_config(topics=[{"name": "北交所", "slug": "beijiaosuo", "keywords": ["北交所"]}])
    report = build(config)
    assert "topics/xinsanban.rss" in report.render.removed
    assert not (config.output / "topics" / "xinsanban.rss").exists()
    assert (config.output / "topics" / "beijiaosuo.rss").exists()


def test_base_url_change_rewrites_feeds(make_config: Callable[..., Config], articles: Path) -> None:
    write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY))
    build(make_config())
    config = make_config(base_url="https://news.example.net/feeds/")
    build(config)
    assert b"https://news.example.net/feeds/all.rss" in (config.output / "all.rss").read_bytes()


def test_parallel_and_serial_builds_write_the_same_bytes(
    make_config: Callable[..., Config], tmp_path: Path, articles: Path
) -> None:
    for n in range(450):  # above the parallel threshold
        paragraph = f"第{n}号测试消息：某公司公告称，第{n}期项目进展顺利，北交所相关业务稳步推进。"
        date = f"2024-05-14 10:{n % 60:02d}:00 +0800"
        text = jekyll_post(f"测试消息{n}", [paragraph], date=date, link=None)
        write(articles / f"{n}.md", text, mtime=1_700_000_000)
    serial = make_config()
    parallel = make_config(output=str(tmp_path / "out2"), state=str(tmp_path / "state2.db"))
    build(serial, workers=1)
    build(parallel, workers=2)
    assert {k: v[0] for k, v in output_files(serial).items()} == {
        k: v[0] for k, v in output_files(parallel).items()
    }


def test_new_topic_in_config_classifies_existing_items(
    make_config: Callable[..., Config], articles: Path
) -> None:
    write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY))
    build(make_config())
    topics = [*TOPICS_FOR_TEST, {"name": "指数", "slug": "zhishu", "keywords": ["指数"]}]
    config = make_config(topics=topics)
    report = build(config)
    assert report.batch.new == 0 and report.batch.updated == 0
    assert [e.title for e in feed_entries(config, "topics/zhishu.atom")] == ["北证50指数创年内新高"]
    (item,) = items(config)
    assert "zhishu" in item["topics"]  # type: ignore[operator]


def test_cleanup_rule_change_rewrites_stored_content(
    make_config: Callable[..., Config], articles: Path
) -> None:
    write(articles / "a.md", hexo_post("北证50指数创年内新高", [*STORY, "本文仅供参考。"]))
    build(make_config())
    config = make_config(cleanup={"remove_text": ["^本文仅供参考"]})
    build(config)
    (entry,) = feed_entries(config, "all.atom")
    assert "本文仅供参考" not in entry.content[0].value


def test_a_real_edit_during_a_rules_change_is_still_news(
    make_config: Callable[..., Config], articles: Path
) -> None:
    """A rule change re-reads every file: what changed only by the new rule is no alert, but a
    file edited meanwhile is (its stamp changed)."""
    write(articles / "a.md", hexo_post("北证50指数创年内新高", [*STORY, "本文仅供参考。"]))
    edited = write(articles / "b.md", hexo_post("央行逆回购", [*OTHER, "本文仅供参考。"]))
    build(make_config())
    config = make_config(cleanup={"remove_text": ["^本文仅供参考"]})
    write(edited, hexo_post("央行逆回购", [*OTHER, "资金面整体保持平稳。", "本文仅供参考。"]))
    events: list[tuple[str, str]] = []
    store = open_store(config.state)
    try:
        pipeline = Pipeline(
            config, store, workers=1, on_event=lambda _, e: events.append((e.kind, e.article.title))
        )
        assert pipeline.forced
        pipeline.sync()
    finally:
        store.close()
    assert events == [("item.updated", "央行逆回购")]


def test_one_store_renders_content_rewritten_under_the_same_dates(
    make_config: Callable[..., Config], articles: Path
) -> None:
    # The service keeps one store (and its decoded items) across config reloads and batches;
    # an image removed by a new rule changes the stored article but not its text or dates.
    ad = '<p><img class="ad" src="https://example.com/ad.png"></p>'
    write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY, extra=ad))
    first = make_config()
    store = open_store(first.state)
    try:
        Pipeline(first, store, workers=1).sync()
        assert "ad.png" in feed_entries(first, "all.atom")[0].content[0].value
        config = make_config(cleanup={"remove_selectors": ["img.ad"]})
        Pipeline(config, store, workers=1).sync()
    finally:
        store.close()
    (entry,) = feed_entries(config, "all.atom")
    assert "ad.png" not in entry.content[0].value


def test_warming_the_caches_writes_nothing(config: Config, articles: Path) -> None:
    write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY))
    build(config)
    before = output_files(config)
    store = open_store(config.state)
    try:
        pipeline = Pipeline(config, store, workers=1)
        pipeline.warm()
        assert pipeline.render().written == []
    finally:
        store.close()
    assert output_files(config) == before


def test_index_counts_follow_changes(config: Config, articles: Path) -> None:
    import re

    write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY))
    gone = write(articles / "b.md", hexo_post("北交所另一条消息", [*OTHER, "北交所成交活跃。"]))
    build(config)

    def counts() -> list[int]:
        html = (config.output / "index.html").read_text("utf-8")
        return [int(n) for n in re.findall(r'<td class="count">(\d+)</td>', html)]

    assert counts()[0] == 2  # the "all" row comes first
    gone.unlink()
    build(config)
    assert counts()[0] == 1


def test_index_says_how_many_items_a_feed_holds_when_it_has_more(
    make_config: Callable[..., Config], articles: Path
) -> None:
    config = make_config(feed={"limit": 2})
    for day in range(10, 15):
        text = [f"北交所第{day}日成交额放大，北证50指数再创新高，市场情绪回暖。"]
        date = f"Tue, {day} May 2024 10:35:00 GMT"
        write(articles / f"b{day}.md", hexo_post(f"北交所{day}日", text, date=date))
    write(articles / "c.md", jekyll_post("央行开展逆回购操作", OTHER))
    build(config)
    page = html.document_fromstring((config.output / "index.html").read_bytes())
    counts = {
        row.xpath("string(td[1])"): row.xpath("string(td[2])")
        for row in page.xpath("//table/tbody/tr[td]")
    }
    assert len(feed_entries(config, "all.atom")) == 2  # what a subscriber gets
    assert counts["财经新闻"] == "2（共 6）"
    assert counts["财经新闻 · 证券时报网"] == "2（共 5）"
    assert counts["财经新闻 · 东方财富网"] == "1"
    assert counts["财经新闻 · 新三板"] == "0"


def test_first_build_reads_each_file_once_when_roots_overlap(
    make_config: Callable[..., Config], articles: Path
) -> None:
    # A first build does not look up stored rows of the paths it applies: each must come once.
    write(articles / "sub" / "a.md", hexo_post("北证50走高", STORY))
    write(articles / "b.md", jekyll_post("央行逆回购", OTHER))
    roots = [str(articles), str(articles / "sub"), str(articles) + "/"]
    report = build(make_config(articles=roots))
    assert (report.batch.seen, report.batch.new, report.batch.merged) == (2, 2, 0)
    assert sorted(len(i["paths"]) for i in items(make_config(articles=roots))) == [1, 1]  # type: ignore[arg-type]


def test_first_build_over_kept_deleted_files_looks_them_up(
    make_config: Callable[..., Config], articles: Path
) -> None:
    # Deleted files kept as tombstones are not in the file index: the next build is a first
    # build by that index, but their rows exist and must be found (an edit keeps its id).
    config = make_config(feed={"keep_deleted": True})
    path = write(articles / "a.md", hexo_post("北证50走高", STORY))
    build(config)
    (before,) = items(config)
    path.unlink()
    build(config)
    write(path, hexo_post("北证50再度走高", [*STORY, "本文已更新。"]))
    report = build(config)
    assert (report.batch.new, report.batch.updated) == (0, 1)
    assert [i["id"] for i in items(config)] == [before["id"]]


def test_the_wal_a_bulk_ingest_grew_is_cut_back(make_config: Callable[..., Config]) -> None:
    """A long-running service's WAL does not stay at the size a first build grew it to."""
    from feeds.store.sqlite import WAL_SIZE_LIMIT

    store = open_store(make_config().state)
    wal = Path(f"{store.path}-wal")
    try:
        with store.bulk_writes():  # checkpoints are rare meanwhile: the WAL grows
            for n in range(24):
                with store.transaction():
                    store.set_meta(f"bulk{n}", os.urandom(512 * 1024).hex())  # 1 MB each
        assert wal.stat().st_size > WAL_SIZE_LIMIT
        for n in range(3):  # ordinary writes afterwards: a checkpoint, then the WAL restarts
            with store.transaction():
                store.set_meta("small", str(n))
        assert wal.stat().st_size <= WAL_SIZE_LIMIT
        assert store.get_meta("bulk23") is not None
    finally:
        store.close()


def test_a_rejection_is_news_once(make_config: Callable[..., Config], articles: Path) -> None:
    """The rejection counter (and the log) count a broken file once, not at every re-read."""
    config = make_config()
    unclosed = "---\ntitle: [unclosed\n---\n正文\n"
    broken = write(articles / "broken.md", unclosed, mtime=1_700_000_000)
    first = build(config).batch
    assert (len(first.rejected), first.rejected_news) == (1, 1)
    os.utime(broken, (1_700_000_100, 1_700_000_100))  # touched: read again, still broken
    again = build(config).batch
    assert (len(again.rejected), again.rejected_news) == (1, 0)
    write(broken, b"\x00\x01binary\x00")  # broken for another reason: news again
    other = build(config).batch
    assert (len(other.rejected), other.rejected_news) == (1, 1)


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.EACCES])
def test_a_file_refused_for_a_passing_reason_is_read_again(
    make_config: Callable[..., Config], articles: Path, code: int
) -> None:
    """Out of file descriptors (many clients at once) or a chmod: the file's stamp does not
    change, so the next full scan must read it again rather than keep the rejection."""
    config = make_config()
    write(articles / "a.md", hexo_post("央行逆回购", OTHER))
    build(config)
    later = write(articles / "b.md", hexo_post("北交所新规", STORY))
    info = later.stat()
    store = open_store(config.state)
    try:
        with store.transaction():  # as a read that failed with `code` left it
            reason = f"cannot read: {os.strerror(code)}"
            store.record_error(
                str(later), reason, info.st_size, info.st_mtime_ns, datetime.now(UTC)
            )
    finally:
        store.close()
    assert build(config).batch.new == 1
    assert "北交所新规" in [entry.title for entry in feed_entries(config, "all.atom")]


def test_a_story_dated_ahead_is_dated_when_it_was_read(
    make_config: Callable[..., Config], articles: Path
) -> None:
    """A wrong year (or zone) must not put a story atop every reader's list until that date,
    nor pin the feeds' own dates there."""
    config = make_config()
    write(articles / "ahead.md", jekyll_post("北交所新规", STORY, date="2099-01-01 08:00:00"))
    write(articles / "past.md", hexo_post("央行逆回购", OTHER))
    before = datetime.now(UTC)
    build(config)
    after = datetime.now(UTC)
    for relpath in ("all.atom", "sources/dongfangcaifuwang.atom", "topics/beijiaosuo.atom"):
        parsed = feedparser.parse((config.output / relpath).read_bytes())
        entry = parsed.entries[0]
        assert entry.title == "北交所新规"
        for when in (entry.published, entry.updated, parsed.feed.updated):
            assert before.replace(microsecond=0) <= datetime.fromisoformat(when) <= after
    written = output_files(config)
    build(config)
    assert output_files(config) == written  # read once: the date holds
    time.sleep(1.1)  # dates are kept to the second
    reread = make_config(feed={"summary_chars": 120})  # changed rules: every file read again
    build(reread)
    entry = feedparser.parse((config.output / "all.atom").read_bytes()).entries[0]
    assert entry.published == feedparser.parse(written["all.atom"][0]).entries[0].published


def new_stories(articles: Path, prefix: str, count: int) -> list[str]:
    return [
        str(
            write(
                articles / prefix / f"{n}.md",
                hexo_post(
                    f"{prefix}第{n}号公告", [f"{prefix}公司第{n}号公告：业务进展正常，北交所。"]
                ),
            )
        )
        for n in range(count)
    ]


@contextlib.contextmanager
def service_pipeline(config: Config, events: list[str]) -> Iterator[Pipeline]:
    """A pipeline as the service keeps one (file index in memory), recording alerted titles."""
    store = open_store(config.state)
    try:
        yield Pipeline(
            config, store, workers=1, on_event=lambda _, e: events.append(e.article.title),
            keep_file_index=True,
        )  # fmt: skip
    finally:
        store.close()


def test_an_archive_copied_in_later_is_published_but_announces_nothing(
    make_config: Callable[..., Config], articles: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "feeds.pipeline")
    config = make_config(alert_bulk_files=5)
    write(articles / "first.md", hexo_post("北证50指数创年内新高", STORY))
    build(config)  # the first scan: backfill, no alerts whatever the count
    events: list[str] = []
    with service_pipeline(config, events) as pipeline:
        pipeline.ingest(new_stories(articles, "日常", 3))  # everyday news: announced
        assert sorted(events) == ["日常第0号公告", "日常第1号公告", "日常第2号公告"]
        events.clear()
        report = pipeline.ingest(new_stories(articles, "旧档", 10))  # an archive copied in
        assert report.new == 10 and events == []
        (noted,) = [r for r in caplog.records if "taken as an archive import" in r.message]
        assert noted.message.startswith("13 new files in 60 s")
        assert noted.levelno == logging.INFO  # no webhooks: nothing held back, no warning
        pipeline.ingest(new_stories(articles, "尾随", 1))  # the same minute: still the import
        assert events == []
        pipeline._recent_new.clear()  # the minute is over
        pipeline.ingest(new_stories(articles, "次日", 1))
        assert events == ["次日第0号公告"]
        pipeline.ingest(new_stories(articles, "旧档", 10))  # rewritten, not new: no import
        assert len(events) == 1
    assert len(items(config)) == 16  # every story is published


def test_a_folder_renamed_within_the_archive_is_no_import(
    make_config: Callable[..., Config], articles: Path
) -> None:
    """Its files are new paths, but as many left: real news in the same minute still alerts."""
    config = make_config(alert_bulk_files=5)
    before = new_stories(articles / "证券时报网", "旧闻", 8)
    build(config)
    events: list[str] = []
    with service_pipeline(config, events) as pipeline:
        (articles / "证券时报网").rename(articles / "证券时报")
        after = [str(articles / "证券时报" / "旧闻" / Path(path).name) for path in before]
        report = pipeline.ingest(after, before)
        assert report.new == 0 and report.removed == 0 and events == []
        pipeline.ingest(new_stories(articles, "突发", 1))  # the same minute
        assert events == ["突发第0号公告"]


def test_an_import_is_a_warning_where_webhooks_would_have_alerted(
    make_config: Callable[..., Config], articles: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hook = {"name": "team", "url": "http://127.0.0.1:9/hook", "keywords": ["公告"]}
    config = make_config(alert_bulk_files=2, webhooks=[hook])
    write(articles / "first.md", hexo_post("北证50指数创年内新高", STORY))
    build(config)
    with service_pipeline(config, []) as pipeline, caplog.at_level(logging.INFO, "feeds.pipeline"):
        pipeline.ingest(new_stories(articles, "旧档", 3))
    (noted,) = [r for r in caplog.records if "taken as an archive import" in r.message]
    assert noted.levelno == logging.WARNING


@pytest.mark.parametrize("limit, alerted", [(5, 0), (0, 8)])
def test_a_build_that_finds_a_copied_archive_announces_nothing(
    make_config: Callable[..., Config], articles: Path, limit: int, alerted: int
) -> None:
    config = make_config(alert_bulk_files=limit)
    write(articles / "first.md", hexo_post("北证50指数创年内新高", STORY))
    build(config)
    new_stories(articles, "旧档", 8)
    events: list[str] = []
    store = open_store(config.state)
    try:
        Pipeline(config, store, workers=1, on_event=lambda _, e: events.append(e.kind)).sync()
    finally:
        store.close()
    assert len(events) == alerted  # 0 turns the guard off


def test_outlets_whose_names_read_alike_keep_their_own_feeds(
    config: Config, articles: Path
) -> None:
    write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY, outlet="中证网"))
    write(articles / "b.md", hexo_post("央行开展逆回购操作", OTHER, outlet="中正网"))
    build(config)
    feeds = sorted(p.name for p in (config.output / "sources").glob("*.atom"))
    assert len(feeds) == 2 and "zhongzhengwang.atom" in feeds
    (other,) = [name for name in feeds if name != "zhongzhengwang.atom"]
    assert [e.title for e in feed_entries(config, "sources/zhongzhengwang.atom")] == [
        "北证50指数创年内新高"
    ]
    assert [e.title for e in feed_entries(config, f"sources/{other}")] == ["央行开展逆回购操作"]


def test_a_folder_renamed_back_while_its_files_are_read_keeps_its_items(
    config: Config, articles: Path
) -> None:
    """The watcher reports a folder renamed (its old paths gone, the new ones changed); when it is
    renamed back before the new paths are read, the service's batch must not unpublish its
    stories for the moment until the rename back is seen (hundreds of items, in the soak)."""
    folder = articles / "快讯"
    write(folder / "a.md", hexo_post("北证50指数创年内新高", STORY))
    build(config)
    moved = articles / "快讯-moved"
    folder.rename(moved)

    def listed_then_renamed_back() -> Iterator[str]:
        yield str(moved / "a.md")
        moved.rename(folder)  # before the batch reads it: the watcher's news is stale

    store = open_store(config.state)
    try:
        pipeline = Pipeline(config, store, workers=1)
        report = pipeline.ingest(
            listed_then_renamed_back(), [str(folder / "a.md")], only_missing=True
        )
        pipeline.render()
    finally:
        store.close()
    assert report.removed == 0
    assert [e.title for e in feed_entries(config, "all.rss")] == ["北证50指数创年内新高"]


def test_a_rescan_leaves_a_file_still_being_written_to_the_watcher(
    config: Config, articles: Path
) -> None:
    """The service's rescan must not publish (and alert) half an article a slow writer is
    still writing; once it has been quiet for a while, or in a one-off build, it is read."""
    write(articles / "first.md", hexo_post("北证50指数创年内新高", STORY))
    build(config)
    half = hexo_post("央行开展逆回购操作", OTHER)
    slow = write(articles / "slow.md", half[: len(half) * 2 // 3])  # mid-write: cut off
    events: list[str] = []
    with service_pipeline(config, events) as pipeline:
        pipeline.defer_fresh_seconds = 5
        report = pipeline.sync()
        assert report.batch.new == 0 and report.batch.rejected == [] and events == []
        write(slow, half)  # the writer is done
        old = time.time() - 10
        os.utime(slow, (old, old))  # ... and it has been quiet since
        report = pipeline.sync()
        assert report.batch.new == 1 and events == ["央行开展逆回购操作"]
    assert any(e.title == "央行开展逆回购操作" for e in feed_entries(config, "all.atom"))
