"""The file index a running service keeps in memory stays exactly what the store holds."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feeds.config import Config
from feeds.errors import IdentityGuardError
from feeds.pipeline import Pipeline
from feeds.store import Store, open_store
from tests.conftest import hexo_post, write

BODY = "北交所今日发布新规，进一步优化发行上市审核流程，提高审核效率与透明度，支持创新型中小企业。"


def post(n: int) -> str:
    return hexo_post(f"第{n}条新闻", [f"{BODY}（第{n}条，编号{n * 7919}）"])


class Boom(Exception):
    pass


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config(feed={"keep_deleted": False})


@pytest.fixture
def pipeline(config: Config) -> Iterator[Pipeline]:
    store = open_store(config.state)
    try:
        yield Pipeline(config, store, workers=1, keep_file_index=True)
    finally:
        store.close()


def in_step(store: Store) -> dict[str, tuple[int, int]]:
    live = dict(store.live_file_index())
    assert live == store.file_index()
    return live


def stat_of(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def test_follows_new_edited_moved_rejected_and_deleted_files(
    pipeline: Pipeline, articles: Path
) -> None:
    store = pipeline.store
    first = write(articles / "1.md", post(1))
    pipeline.sync()
    assert in_step(store) == {str(first): stat_of(first)}
    second = write(articles / "2.md", post(2))
    pipeline.ingest([str(second)])
    assert in_step(store) == {str(first): stat_of(first), str(second): stat_of(second)}
    write(first, post(3), mtime=1_700_000_000)
    pipeline.ingest([str(first)])
    moved = articles / "sub" / "1.md"
    moved.parent.mkdir()
    os.replace(first, moved)
    pipeline.ingest([str(moved)], [str(first)])
    assert in_step(store) == {str(moved): stat_of(moved), str(second): stat_of(second)}
    write(second, b"\x00\x01 not text")
    pipeline.ingest([str(second)])  # a good file turned bad: its item stays, its stat is new
    assert store.errors() and in_step(store)[str(second)] == stat_of(second)
    second.unlink()
    pipeline.sync()
    assert in_step(store) == {str(moved): stat_of(moved)}
    assert pipeline.scan().unchanged == 1


def test_a_rolled_back_batch_leaves_nothing_behind(pipeline: Pipeline, articles: Path) -> None:
    store = pipeline.store
    kept = write(articles / "kept.md", post(1))
    pipeline.sync()
    before = in_step(store)
    doomed = write(articles / "doomed.md", post(2))
    with pytest.raises(Boom), store.transaction():
        pipeline.ingest([str(doomed)], [str(kept)])
        raise Boom
    assert in_step(store) == before
    with store.transaction():  # a savepoint rolled back inside a committed transaction
        with pytest.raises(Boom), store.transaction():
            pipeline.ingest([str(doomed)])
            raise Boom
        pipeline.ingest([], [str(kept)])
    assert in_step(store) == {}
    assert [s.path for s in pipeline.scan().changed] == [str(kept), str(doomed)]


def test_the_identity_guard_rollback_is_not_in_the_index(
    pipeline: Pipeline, articles: Path
) -> None:
    store = pipeline.store
    old = [
        write(articles / "old" / f"{n}.md", hexo_post(f"旧闻{n}", [f"第{n}条旧消息的正文内容。"]))
        for n in range(30)
    ]
    pipeline.sync()
    before = in_step(store)
    for path in old:  # every story vanishes and a different one appears at once
        path.unlink()
    new = [
        write(
            articles / "new" / f"{n}.md", hexo_post(f"新闻{n}", [f"另一件事情，{n + 100}个细节。"])
        )
        for n in range(30)
    ]
    with pytest.raises(IdentityGuardError):
        pipeline.sync()
    assert in_step(store) == before
    scan = pipeline.scan()
    assert sorted(s.path for s in scan.changed) == sorted(map(str, new))
    assert sorted(scan.gone) == sorted(map(str, old))


def test_changes_by_another_connection_are_seen(pipeline: Pipeline, articles: Path) -> None:
    store = pipeline.store
    first = write(articles / "1.md", post(1))
    second = write(articles / "2.md", post(2))
    pipeline.sync()
    in_step(store)
    other = open_store(pipeline.config.state)
    try:
        with other.transaction():
            other.delete_file(str(first))
            other.record_error(str(second), "test", 5, 6, datetime.now(UTC))
    finally:
        other.close()
    assert in_step(store) == {str(second): (5, 6)}


def test_pruning_removed_items_keeps_the_index_in_step(
    make_config: Callable[..., Config], articles: Path
) -> None:
    config = make_config(feed={"keep_deleted": True})
    gone = write(articles / "1.md", post(1))
    kept = write(articles / "2.md", post(2))
    store = open_store(config.state)
    try:
        pipeline = Pipeline(config, store, workers=1, keep_file_index=True)
        pipeline.sync()
        gone.unlink()
        pipeline.sync()
        in_step(store)
        with store.transaction():
            store.prune_removed(datetime.now(UTC) + timedelta(days=1))
        assert in_step(store) == {str(kept): stat_of(kept)}
    finally:
        store.close()


def test_what_a_caller_holds_never_changes_under_it(pipeline: Pipeline, articles: Path) -> None:
    store = pipeline.store
    write(articles / "1.md", post(1))
    pipeline.sync()
    held = store.live_file_index()
    snapshot = dict(held)
    pipeline.ingest([str(write(articles / "2.md", post(2)))])
    store.live_file_index()
    assert held == snapshot


def test_inside_a_transaction_the_store_is_read_directly(
    pipeline: Pipeline, articles: Path
) -> None:
    store = pipeline.store
    first = write(articles / "1.md", post(1))
    pipeline.sync()
    with pytest.raises(Boom), store.transaction():
        store.delete_file(str(first))
        assert store.live_file_index() == {}
        raise Boom
    assert in_step(store) == {str(first): stat_of(first)}
