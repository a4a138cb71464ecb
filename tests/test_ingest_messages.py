"""What a worker sends the ingest: a flat pickle without the article, rebuilt equal."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

from feeds.classify import TopicMatcher
from feeds.config import Config
from feeds.ingest import Parsed, Processed
from feeds.normalize import NormalizeRules
from feeds.pipeline import prepare
from tests.conftest import hexo_post, write


def _prepared(config: Config, path: Path) -> Processed:
    rules = NormalizeRules.from_config(config)
    topics = TopicMatcher(config.topics)
    return prepare(str(path), rules, config.input.max_file_bytes, topics, True)


def test_a_worker_result_arrives_equal_but_without_the_article(
    make_config: Callable[..., Config], articles: Path
) -> None:
    text = hexo_post("北交所新规发布", ["北交所今日发布新规，专精特新企业受益。" * 5, "第二段。"])
    processed = _prepared(make_config(), write(articles / "a.md", text))
    assert isinstance(processed.result, Parsed) and processed.result.article is not None
    assert processed.result.analysis.topics  # something to carry

    arrived = pickle.loads(ForkingPickler.dumps(processed))

    assert arrived == dataclasses.replace(
        processed, result=dataclasses.replace(processed.result, article=None)
    )
    assert arrived.result.full_article() == processed.result.article


def test_a_rejected_file_arrives_with_its_reason(
    make_config: Callable[..., Config], articles: Path
) -> None:
    processed = _prepared(make_config(), write(articles / "bad.md", b"\xff\xfe\x00garbage\x00"))
    arrived = pickle.loads(ForkingPickler.dumps(processed))
    assert arrived.stamp == processed.stamp
    assert str(arrived.result) == str(processed.result)
