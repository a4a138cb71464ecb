"""Which copy of a merged story represents it: a one-paragraph flash never stands for the full
article it is as good as, whatever order the files come in, in a build or in the service."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import feedparser
import pytest

from feeds.config import Config
from feeds.pipeline import CODE_VERSIONS
from feeds.store import open_store
from feeds.store.sqlite import MIGRATIONS
from tests.conftest import OTHER, build, feed_entries, hexo_post, write, write_filler
from tests.service_process import ServiceProcess, wait_for, write_config

TITLE = "前10月全国快递业务量突破千亿件"
FULL = [
    "国家邮政局今日发布数据显示，前10个月全国快递业务量累计完成1012亿件，同比增长19.4%。",
    "其中同城快递业务量累计完成110亿件，异地快递业务量累计完成880亿件，国际业务稳步增长。",
    "业内人士表示，农村快递网络持续完善，快递进村比例明显提高，带动农产品出村进城。",
    "邮政部门将继续推进快递包装绿色转型，电子运单使用率已经超过九成，循环箱试点扩大。",
]
FLASH = FULL[:1]  # the wire's one-paragraph 快讯 of the same story
SINA = {"outlet": "新浪财经", "feed": "新浪财经－国內", "date": "Tue, 14 May 2024 10:20:00 GMT"}
STCN = {"date": "Tue, 14 May 2024 18:05:00 GMT"}  # 证券时报网: Beijing time labelled GMT


def full_copy() -> str:
    return hexo_post(TITLE, FULL, **SINA)


def flash_copy() -> str:
    return hexo_post(TITLE, ["证券时报网讯，" + FLASH[0]], **STCN)


def shown(config: Config, feed: str = "all.atom") -> str:
    """The content of the feed's only entry."""
    (entry,) = feed_entries(config, feed)
    return str(entry.content[0].value)


def rows(config: Config) -> dict[str, tuple[str, int, str]]:
    """Each item: (representative file's name, updated, title)."""
    db = sqlite3.connect(config.state)
    try:
        found = db.execute("SELECT id, rep_path, updated, title FROM items").fetchall()
    finally:
        db.close()
    return {i: (Path(p).name, u, t) for i, p, u, t in found}


@pytest.mark.parametrize("flash_name", ["a-flash.md", "z-flash.md"])
def test_a_newer_flash_does_not_represent_the_full_article(
    make_config: Callable[..., Config], articles: Path, flash_name: str
) -> None:
    # Same quality (a title, a front-matter date, no link): the flash, edited last, used to win.
    config = make_config()
    write(articles / "m-full.md", full_copy(), mtime=1_715_000_000)
    write(articles / flash_name, flash_copy(), mtime=1_716_000_000)
    report = build(config)
    assert report.batch.new == 1 and report.batch.merged == 1
    assert FULL[-1] in shown(config)
    assert [name for name, _, _ in rows(config).values()] == ["m-full.md"]
    # each outlet's feed still shows its own copy
    assert FULL[-1] not in shown(config, "sources/zhengquanshibaowang.atom")


@pytest.mark.parametrize("first", ["full", "flash"])
def test_the_same_representative_whichever_copy_arrives_first(
    make_config: Callable[..., Config], articles: Path, first: str
) -> None:
    copies = {"full": ("full.md", full_copy()), "flash": ("flash.md", flash_copy())}
    config = make_config()
    for n, kind in enumerate([first, *(k for k in copies if k != first)]):
        name, text = copies[kind]
        write(articles / name, text, mtime=1_716_000_000 + n * 600)  # the later one is newer
        build(config)
    assert [name for name, _, _ in rows(config).values()] == ["full.md"]
    assert FULL[-1] in shown(config)


def test_copies_as_complete_as_each_other_keep_the_newest_edit(
    make_config: Callable[..., Config], articles: Path
) -> None:
    # A copy with a line less (other boilerplate, a revised paragraph) is no flash: the newest
    # edit represents the story, as before.
    config = make_config()
    write(articles / "sina.md", full_copy(), mtime=1_715_000_000)
    shorter = hexo_post(TITLE, ["证券时报网讯，" + FULL[0], *FULL[1:3]], **STCN)
    write(articles / "stcn.md", shorter, mtime=1_716_000_000)
    build(config)
    assert [name for name, _, _ in rows(config).values()] == ["stcn.md"]


def test_an_outlet_feed_shows_its_full_copy_not_its_later_flash(
    make_config: Callable[..., Config], articles: Path
) -> None:
    # One outlet carried the story twice: the article, then a flash of it two hours later.
    config = make_config()
    write(articles / "full.md", hexo_post(TITLE, FULL, **STCN), mtime=1_715_000_000)
    later = hexo_post(TITLE, FLASH, date="Tue, 14 May 2024 20:05:00 GMT")
    write(articles / "flash.md", later, mtime=1_716_000_000)
    report = build(config)
    assert report.batch.merged == 1
    for feed in ("all.atom", "sources/zhengquanshibaowang.atom"):
        assert FULL[-1] in shown(config, feed), feed


def test_one_and_two_workers_choose_the_same_copy(
    make_config: Callable[..., Config], tmp_path: Path, articles: Path
) -> None:
    write_filler(articles)  # above the parallel threshold: two workers really fan out
    write(articles / "full.md", full_copy(), mtime=1_715_000_000)
    write(articles / "flash.md", flash_copy(), mtime=1_716_000_000)
    serial = make_config()
    parallel = make_config(output=str(tmp_path / "out2"), state=str(tmp_path / "state2.db"))
    build(serial, workers=1)
    build(parallel, workers=2)
    for config in (serial, parallel):
        (rep,) = [name for name, _, title in rows(config).values() if title == TITLE]
        assert rep == "full.md"
    for path in sorted(serial.output.rglob("*.*")):
        twin = parallel.output / path.relative_to(serial.output)
        assert path.read_bytes() == twin.read_bytes(), path


def as_written_before(config: Config, flash: Path) -> None:
    """Turn a state into what the code before this rule wrote: no text lengths (schema 7), the
    representative by quality and then the newest edit (the flash), and the digest of that code
    (so the next run knows the rows were chosen by other rules)."""
    db = sqlite3.connect(config.state)
    try:
        db.execute("DROP TABLE outlet_slugs")  # migration 9
        db.execute("ALTER TABLE files DROP COLUMN body_chars")
        db.execute("PRAGMA user_version = 7")
        db.execute(
            "UPDATE items SET rep_path = ?, fingerprint = "
            "(SELECT fingerprint FROM files WHERE path = ?) WHERE id = "
            "(SELECT item_id FROM files WHERE path = ?)",
            (str(flash), str(flash), str(flash)),
        )
        (digest,) = db.execute("SELECT value FROM meta WHERE key = 'normalize_digest'").fetchone()
        assert digest.endswith(CODE_VERSIONS)
        old = digest.removesuffix(CODE_VERSIONS) + CODE_VERSIONS.rsplit("/rep", 1)[0]
        db.execute("UPDATE meta SET value = ? WHERE key = 'normalize_digest'", (old,))
        db.commit()
    finally:
        db.close()


def test_a_state_chosen_by_the_old_rule_is_chosen_again_and_only_that_item_moves(
    make_config: Callable[..., Config], articles: Path
) -> None:
    config = make_config()
    write(articles / "full.md", full_copy(), mtime=1_715_000_000)
    # the flash is read first by the re-read (names descending): the full copy's row has no
    # length yet when the flash's item is re-derived
    flash = write(articles / "zz-flash.md", flash_copy(), mtime=1_716_000_000)
    # another story, whose full copy is the newer edit: represented by it before and after
    # (its flash is re-read first too, while the full copy's row has no length yet)
    other = [*OTHER, "业内预计下周公开市场操作将保持灵活适度。", "资金利率整体平稳。"]
    write(articles / "other-full.md", hexo_post("央行开展逆回购操作", other), mtime=1_716_500_000)
    other_flash = hexo_post("央行开展逆回购操作", OTHER[:1], **SINA)
    write(articles / "yy-other-flash.md", other_flash, mtime=1_715_000_000)
    build(config)
    as_written_before(config, flash)
    before = rows(config)
    assert sorted(name for name, _, _ in before.values()) == ["other-full.md", "zz-flash.md"]

    store = open_store(config.state)
    try:
        assert store.schema_version == len(MIGRATIONS)  # migrated
    finally:
        store.close()
    report = build(config)
    assert report.batch.new == 0 and report.batch.removed == 0
    after = rows(config)
    assert after.keys() == before.keys()  # ids never change
    moved = {i for i in after if after[i][1] != before[i][1]}
    (story,) = [i for i in after if after[i][2] == TITLE]
    assert moved == {story}  # only the story whose representative changed
    assert after[story][0] == "full.md" and after[story][1] > before[story][1]
    (entry,) = [e for e in feed_entries(config, "all.atom") if e.title == TITLE]
    assert FULL[-1] in entry.content[0].value
    db = sqlite3.connect(config.state)
    try:
        assert db.execute("SELECT count(*) FROM files WHERE body_chars IS NULL").fetchone() == (0,)
    finally:
        db.close()
    again = build(config)
    assert again.render.written == [] and rows(config) == after


@pytest.mark.slow
def test_the_service_shows_the_full_article_when_its_flash_arrives_later(
    tmp_path: Path,
) -> None:
    service = ServiceProcess(write_config(tmp_path)).wait_ready()
    try:
        articles = tmp_path / "articles"
        write(articles / "full.md", full_copy())
        wait_for(lambda: len(titles(service, "/all.atom")) == 1, what="the full article")
        write(articles / "flash.md", flash_copy())  # the newer edit of the two
        wait_for(
            lambda: titles(service, "/sources/zhengquanshibaowang.atom") == [TITLE],
            what="the flash merged",
        )
        (entry,) = feedparser.parse(service.get("/all.atom").content).entries
        assert FULL[-1] in entry.content[0].value
    finally:
        service.kill()


def titles(service: ServiceProcess, path: str) -> list[str]:
    response = service.get(path)
    if response.status_code != 200:
        return []
    return [entry.title for entry in feedparser.parse(response.content).entries]
