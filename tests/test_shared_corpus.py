"""Integration on the real articles in ../shared (seeds and corpus); skipped where absent."""

from __future__ import annotations

import contextlib
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest

from feeds.classify import TopicMatcher
from feeds.cli import main
from feeds.config import Config, load_config
from feeds.dedupe import body_key, fingerprint
from feeds.normalize import NOTHING_TO_PUBLISH, NormalizeRules, normalize
from feeds.parse import parse_file
from feeds.store import open_store
from tests.conftest import ROOT, shared_dir

pytestmark = pytest.mark.shared
BOILERPLATE = ("海量资讯", "责任编辑", "返回首页", "appendQr", "<style", "<!--", "<script")
DEFAULT_CONFIG = load_config(ROOT / "config" / "feeds.toml", environ={})
RULES = NormalizeRules.from_config(DEFAULT_CONFIG)
TOPICS = TopicMatcher(DEFAULT_CONFIG.topics)
INFOCODE = "http://finews.zning.xyz/html_News/NewsShare.html?infoCode="

# seed file prefix -> (title starts with, link, published UTC, source slug, topics)
SEEDS = {
    "000": ("北京市国资委：积极动员", None, datetime(2021, 11, 22, 10, 50, 44, tzinfo=UTC),
            "xinlangcaijing", {"beijiaosuo", "zhuanjingtexin", "xinsanban"}),
    "001": ("北京将全力支持北交所创新发展", INFOCODE + "NW202201072239294247",
            datetime(2022, 1, 7, 0, 0, 9, tzinfo=UTC), "shanghaizhengquanbao",
            {"beijiaosuo", "zhuanjingtexin"}),
    "002": ("北京：要全力支持北交所做大做强", None, datetime(2022, 4, 12, 0, 25, 39, tzinfo=UTC),
            "xinlangcaijing", {"beijiaosuo", "xinsanban"}),
    "003": ("聚焦北交所｜“金苗行动”", INFOCODE + "NW202206102409056362",
            datetime(2022, 6, 10, 15, 15, 54, tzinfo=UTC), "21shijijingjibaodao",
            {"beijiaosuo", "xinsanban"}),
    "004": ("大连市启动推进企业上市云对接", INFOCODE + "NW202203312329647826",
            datetime(2022, 3, 31, 6, 30, 55, tzinfo=UTC), "zhengquanshibaowang",
            {"beijiaosuo", "zhuanjingtexin", "xinsanban"}),
}  # fmt: skip


def seed_path(prefix: str) -> Path:
    (path,) = shared_dir("seeds").glob(f"{prefix}_*.txt")
    return path


@pytest.mark.parametrize("prefix", sorted(SEEDS))
def test_seed_normalizes_to_the_expected_fields(prefix: str) -> None:
    title, link, published, source, topics = SEEDS[prefix]
    article = normalize(parse_file(seed_path(prefix), 10**7), RULES)
    assert article.title.startswith(title)
    assert article.link == link
    assert article.published == published
    assert article.source_slug == source
    assert {m.topic for m in TOPICS.match_article(article)} == topics
    for junk in BOILERPLATE:
        assert junk not in article.content_html and junk not in article.summary
    assert 0 < len(article.summary) <= 200
    assert not article.summary.startswith("\u3000")


def corpus_duplicate_groups() -> list[list[str]]:
    readme = (shared_dir("corpus") / "README.md").read_text("utf-8")
    groups = []
    for line in readme.splitlines():
        paths = re.findall(r"`((?:hexo-rsshub-page|jekyll-finews)/[^`]+)`", line)
        if len(paths) >= 2:
            groups.append(paths)
    assert len(groups) >= 10, "the corpus README lists its duplicate groups"
    return groups


@pytest.fixture(scope="module")
def corpus_build(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Config, list[dict[str, Any]]]:
    corpus = shared_dir("corpus")
    work = tmp_path_factory.mktemp("corpus")
    args = ["--config", str(ROOT / "config" / "feeds.toml"), "--articles", str(corpus)]
    args += ["--output", str(work / "out"), "--state", str(work / "state.db")]
    assert main(["build", *args]) == 0
    config = load_config(
        ROOT / "config" / "feeds.toml",
        {"articles": [str(corpus)], "output": str(work / "out"), "state": str(work / "state.db")},
        environ={},
    )
    return config, _items_json(args)


def _items_json(args: list[str]) -> list[dict[str, Any]]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["items", "--json", *args[:2], *args[4:]]) == 0
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_every_corpus_file_is_an_item_or_a_reported_rejection(
    corpus_build: tuple[Config, list[dict[str, Any]]],
) -> None:
    config, items = corpus_build
    corpus = shared_dir("corpus")
    files = {str(p) for p in corpus.rglob("*.md")}
    in_items = {path for item in items for path in item["paths"]}
    store = open_store(config.state)
    rejected = {e.path: e.reason for e in store.errors()}
    store.close()
    assert files == in_items | set(rejected)
    assert in_items.isdisjoint(rejected)
    shell = corpus / "hexo-rsshub-page/source/_posts/金融/证券时报网/快讯/ .md"
    no_front_matter = "no front matter (not an article: posts start with ---, +++ or ;;;)"
    assert rejected == {
        str(corpus / "README.md"): no_front_matter,
        str(shell): NOTHING_TO_PUBLISH,  # title " ", date "Invalid Date", an empty <div>
    }


def test_identical_duplicate_groups_collapse(
    corpus_build: tuple[Config, list[dict[str, Any]]],
) -> None:
    _, items = corpus_build
    corpus = shared_dir("corpus")
    item_of = {path: item["id"] for item in items for path in item["paths"]}
    collapsed = 0
    for group in corpus_duplicate_groups():
        articles = [normalize(parse_file(corpus / p, 10**7), RULES) for p in group]
        same_text = len({fingerprint(a) for a in articles}) == 1 or (
            len({body_key(a) for a in articles}) == 1 and body_key(articles[0]) is not None
        )
        ids = {item_of[str(corpus / p)] for p in group}
        if same_text:
            assert len(ids) == 1, group
            collapsed += 1
    assert collapsed >= 5  # 26股, 电力, 物流, 美债 title edit, the lost-title finews pair
    # nothing else was merged: every item with several paths is one of the listed groups
    listed = {frozenset(str(corpus / p) for p in g) for g in corpus_duplicate_groups()}
    for item in items:
        paths = frozenset(item["paths"])
        if len(paths) > 1:
            assert any(paths <= group for group in listed), paths


def test_corpus_times_are_corrected_for_gmt_labelled_beijing_time(
    corpus_build: tuple[Config, list[dict[str, Any]]],
) -> None:
    _, items = corpus_build
    by_title = {item["title"]: item for item in items}
    stcn = by_title["10只创业板股股东户数降超10%"]
    assert str(stcn["published"]).endswith("+00:00")
    # labelled "GMT" in the file, really Beijing time: 8 hours earlier in UTC
    article = normalize(parse_file(Path(stcn["paths"][0]), 10**7), RULES)
    raw = parse_file(Path(stcn["paths"][0]), 10**7).meta["date"]
    labelled = datetime.strptime(raw, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    assert (labelled - article.published).total_seconds() == 8 * 3600


def test_every_corpus_feed_reads_back_cleanly(
    corpus_build: tuple[Config, list[dict[str, Any]]],
) -> None:
    config, _ = corpus_build
    feeds = sorted(config.output.rglob("*.rss")) + sorted(config.output.rglob("*.atom"))
    assert len(feeds) >= 20
    for path in feeds:
        parsed = feedparser.parse(path.read_bytes())
        assert parsed.bozo == 0, (path, parsed.get("bozo_exception"))
        ids = [entry.id for entry in parsed.entries]
        assert len(ids) == len(set(ids)), path
        for entry in parsed.entries:
            text = entry.get("content", [{"value": ""}])[0]["value"] + entry.get("summary", "")
            for junk in BOILERPLATE:
                assert junk not in text, (path, entry.title, junk)


def test_grouping_precision_and_recall_on_the_labelled_corpus() -> None:
    shared_dir("corpus")
    from bench.dedupe_eval import evaluate

    result = evaluate(shared_dir("corpus"))
    assert result["precision"] == 1.0, result["false_merges"]
    assert result["recall"] >= 0.9, result["missed"]
    assert result["groups_fully_merged"] == result["labelled_groups"]
