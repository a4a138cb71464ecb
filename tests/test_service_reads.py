"""An in-process service: /healthz and /metrics while a batch holds the state database; the
rescan and files still being written."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from feeds.config import Config
from feeds.service import FRESH_FILE_SECONDS, Service
from tests.conftest import OTHER, STORY, build, hexo_post, write


def answer_within(seconds: float, call: Callable[[], Any]) -> Any:
    """What ``call`` returns, run on another thread; None when it has not answered in time."""
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    return answers[0] if answers else None


def test_health_and_metrics_answer_while_a_batch_holds_the_store(
    make_config: Callable[..., Config], articles: Path
) -> None:
    """A catch-up that may re-issue ids (files gone) is one transaction for the whole run,
    minutes at 100,000 articles: probes and scrapes must still answer, from what is committed."""
    config = make_config(
        webhooks=[{"name": "desk", "url": "https://hooks.example.org/x", "topics": ["beijiaosuo"]}]
    )
    write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY))
    build(config)
    service = Service(config, workers=1)
    try:
        with service.store.transaction():  # the ingest thread's open transaction
            health = answer_within(2, service.health)
            metrics = answer_within(2, lambda: generate_latest(service.metrics.registry))
        assert health is not None, "/healthz blocked behind the open transaction"
        assert health.items == 1 and health.alert_backlog == 0
        assert metrics is not None, "/metrics blocked behind the open transaction"
        assert b"feeds_items 1.0" in metrics
    finally:
        service.store.close()
        service.reader.close()


def test_a_rescan_reads_a_fresh_file_shortly_after_when_the_watcher_does_not(
    make_config: Callable[..., Config], articles: Path
) -> None:
    """A rescan leaves a file modified in the last seconds to the watcher (its writer may be at
    work). Should the watcher have missed it (here it is not running at all), one more rescan
    a few seconds later reads it: it waits seconds, not until the next full rescan."""
    config = make_config()
    write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY))
    build(config)
    service = Service(config, workers=1)
    service.pipeline.defer_fresh_seconds = FRESH_FILE_SECONDS  # as after the start-up catch-up
    service.scheduler.start()
    try:
        write(articles / "b.md", hexo_post("央行开展逆回购操作", OTHER))
        service.rescan()
        assert service.pipeline.deferred == 1 and service.health().items == 1
        deadline = time.monotonic() + FRESH_FILE_SECONDS + 30
        while service.health().items < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert service.health().items == 2, "the fresh file was never read"
    finally:
        service.scheduler.shutdown(wait=True)
        service.store.close()
        service.reader.close()
