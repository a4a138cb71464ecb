"""Shared test helpers: article files in both dialects, configs, stores — all real, in tmp_path."""

from __future__ import annotations

import contextlib
import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import feedparser
import prometheus_client
import pytest

from feeds.config import Config, load_config
from feeds.pipeline import Pipeline
from feeds.store import Store, open_store

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
TOPICS = [
    {"name": "北交所", "slug": "beijiaosuo", "keywords": ["北交所", "北京证券交易所", "北证50"]},
    {"name": "专精特新", "slug": "zhuanjingtexin", "keywords": ["专精特新"]},
    {"name": "新三板", "slug": "xinsanban", "keywords": ["新三板"]},
]

# Two unrelated stories (our own text) that most tests write into articles.
STORY = [
    "北证50指数今日早盘震荡走高，盘中一度上涨2.3%，创出年内新高，北交所成交额明显放大。",
    "分析人士认为，近期多只新股上市首日表现平稳，市场对创新型中小企业的关注度持续提升。",
]
OTHER = [
    "人民银行今日开展100亿元7天期逆回购操作，中标利率持平，维护银行体系流动性合理充裕。",
    "市场人士表示，月中缴税因素对流动性的扰动有限，资金面整体保持平稳运行态势不变。",
]


def shared_dir(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} not present: the shared corpus is only beside the repo in CI/dev")
    return path


def hexo_post(
    title: str,
    paragraphs: list[str],
    *,
    outlet: str = "证券时报网",
    feed: str = "快讯",
    date: str = "Tue, 14 May 2024 10:35:00 GMT",
    extra: str = "",
) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"\n---\ntitle: '{title}'\ncategories: \n - 金融\n - {outlet}\n - {feed}\n"
        f"author: {outlet}\ncomments: false\ndate: {date}\n---\n\n"
        f"<div>   \n{body}\n{extra}\n</div>\n"
    )


def jekyll_post(
    title: str,
    paragraphs: list[str],
    *,
    date: str = "2024-05-14 10:41:02 +0800",
    category: str = "emnews",
    tag: str = "东财滚动新闻",
    link: str | None = "http://finance.eastmoney.com/a/202405140000000001.html",
) -> str:
    lines = ["---", "layout: post", f'title: "{title}"', f"date: {date}"]
    lines += [f"categories: {category}", f"tags: {tag}", "---", ""]
    lines += [p + "\n" for p in paragraphs]
    if link is not None:
        lines.append(f"<{link}>\n")
    lines += ["[返回东财滚动新闻](../emnews/)", "[返回首页](../)"]
    return "\n".join(lines)


def write(path: Path, text: str | bytes, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(textwrap.dedent(text) if text.startswith("    ") else text, "utf-8")
    else:
        path.write_bytes(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def config_at(root: Path, **overrides: Any) -> Config:
    """A test config: articles, output and state below ``root``, the test topics, no webhooks
    (top-level keys in ``overrides`` replace these)."""
    data: dict[str, Any] = {
        "articles": [str(root / "articles")],
        "output": str(root / "output"),
        "state": str(root / "state" / "feeds.db"),
        "base_url": "https://feeds.example.org/",
        "topics": TOPICS,
    }
    data.update(overrides)
    return load_config(None, data, environ={})


@pytest.fixture(autouse=True)
def no_service_left_running() -> Iterator[None]:
    """A test that fails before stopping the service it started must not leave it running
    (services of module-scoped fixtures, started before this runs, are theirs to stop)."""
    from tests.service_process import ServiceProcess  # it imports this module

    before = len(ServiceProcess.started)
    yield
    ServiceProcess.kill_leftovers(since=before)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    def factory(**overrides: Any) -> Config:
        return config_at(tmp_path, **overrides)

    (tmp_path / "articles").mkdir(exist_ok=True)
    return factory


@pytest.fixture
def articles(tmp_path: Path) -> Path:
    path = tmp_path / "articles"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def store(make_config: Callable[..., Config]) -> Iterator[Store]:
    config = make_config()
    opened = open_store(config.state)
    yield opened
    opened.close()


def build(config: Config, workers: int = 1) -> Any:
    """Run one full sync (scan, ingest, render) as `feeds build` does."""
    store = open_store(config.state)
    try:
        return Pipeline(config, store, workers=workers).sync()
    finally:
        store.close()


def feed_entries(config: Config, relpath: str) -> list[feedparser.FeedParserDict]:
    """The entries of a written feed, read by feedparser (which must find it well-formed)."""
    parsed = feedparser.parse((config.output / relpath).read_bytes())
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return list(parsed.entries)


def write_filler(articles: Path, count: int = 420) -> None:
    """``count`` unrelated stories below ``articles/filler``: more than the parallel threshold,
    so a build with two workers really fans out."""
    for n in range(count):
        paragraph = f"第{n}号测试消息：某公司公告称，第{n}期项目进展顺利，相关业务稳步推进。"
        date = f"2024-05-1{n % 10} 10:{n % 60:02d}:00 +0800"
        text = jekyll_post(f"测试消息{n}", [paragraph], date=date, link=None)
        write(articles / f"filler/{n}.md", text, mtime=1_700_000_000)


@contextlib.contextmanager
def serving(output: Path, *, hubs: tuple[str, ...] = (), base_url: str = "") -> Iterator[str]:
    """The real feed server on 127.0.0.1 over ``output``; yields its address."""
    from feeds.server import Health, ServerThread, create_app

    def health() -> Health:
        return Health(ok=True, last_scan=None, items=0, files_pending=0, alert_backlog=0)

    app = create_app(
        output,
        health=health,
        registry=prometheus_client.CollectorRegistry(),
        hubs=hubs,
        base_url=base_url,
    )
    running = ServerThread(app, "127.0.0.1", 0)
    running.start()
    try:
        yield f"http://127.0.0.1:{running.port}"
    finally:
        running.stop()
