"""Alert planning and delivery end to end: real article files, a real Pipeline and SQLite file,
real HTTP to receivers on 127.0.0.1 that verify signatures themselves, an injectable clock."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import itertools
import json
import logging
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from feeds.alerts import AlertPlanner
from feeds.alerts_cli import register
from feeds.cli import main
from feeds.config import Config
from feeds.delivery import (
    Deliverer,
    classify_response,
    redact_url,
    retry_after_seconds,
    scrub,
    send_test,
    url_secrets,
)
from feeds.pipeline import Pipeline
from feeds.signing import prepare_request
from feeds.store import Store, open_store
from tests.alert_helpers import (
    Clock,
    HostileReceiver,
    Receiver,
    Reply,
    queue_alerts,
    run_until_idle,
)
from tests.conftest import OTHER, ROOT, STORY, TOPICS, build, hexo_post, jekyll_post, write

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def other_story(n: int) -> list[str]:
    return [
        f"第{n}家公司今日登陆北京证券交易所，首日成交活跃，募集资金{n}亿元用于研发。",
        f"公司表示，第{n}期募投项目将用于扩充产能，并加快新产品的市场推广进度。",
    ]


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def factory(fmt: str = "json", secret: str | None = None, clock: Any = None) -> Receiver:
        receiver = Receiver(fmt, secret, clock)
        started.append(receiver)
        return receiver

    yield factory
    for receiver in started:
        receiver.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as opened:
        yield opened


@pytest.fixture
def stores() -> Iterator[Callable[[Config], Store]]:
    opened: list[Store] = []

    def factory(config: Config) -> Store:
        opened.append(open_store(config.state))
        return opened[-1]

    yield factory
    for store in opened:
        store.close()


def hook(receiver: Receiver, name: str = "desk", fmt: str = "json", **kw: Any) -> dict[str, Any]:
    return {"name": name, "url": receiver.url(), "format": fmt, "keywords": ["北交所"], **kw}


def alerting(config: Config, store: Store) -> Pipeline:
    return Pipeline(config, store, workers=1, on_event=AlertPlanner(config))


def all_rows(store: Store) -> list[Any]:
    return store.list_alerts("all", 1000)


# --- planning through a real pipeline ---------------------------------------------------------


def test_exactly_one_alert_per_new_matching_item(
    make_config: Callable[..., Config],
    articles: Path,
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
) -> None:
    receiver = receivers("json", WHSEC)
    webhook = hook(receiver, secret=WHSEC, topics=["beijiaosuo"], keywords=[])
    config = make_config(webhooks=[webhook])
    write(articles / "archive.md", hexo_post("北交所旧闻", other_story(1)))
    store = stores(config)
    assert alerting(config, store).sync().batch.new == 1
    assert all_rows(store) == []  # the first scan of an existing archive is backfill

    write(articles / "new.md", hexo_post("北证50指数创年内新高", STORY))
    write(articles / "miss.md", jekyll_post("央行开展逆回购操作", OTHER))
    assert alerting(config, store).sync().batch.new == 2
    assert len(all_rows(store)) == 1  # one of the two new items matches

    write(articles / "new.md", hexo_post("北证50指数创年内新高", STORY), mtime=2e9)  # rewrite
    copy = write(articles / "em" / "copy.md", jekyll_post("北证50指数创年内新高", STORY))
    report = alerting(config, store).sync().batch
    assert (report.new, report.merged) == (0, 1), "the copy is a duplicate of a known story"
    store.close()

    store = stores(config)  # a restart: new objects, same state file
    alerting(config, store).sync()
    copy.unlink()
    alerting(config, store).sync()
    assert len(all_rows(store)) == 1

    Deliverer(config, store, client).deliver_due()
    Deliverer(config, store, client).deliver_due()
    [received] = receiver.received
    assert received.verified and received.webhook_id == all_rows(store)[0].event_id
    body = received.json
    assert body["type"] == "item.new" and body["data"]["item"]["title"] == "北证50指数创年内新高"
    assert body["data"]["match"]["rule"] == "topic:beijiaosuo"
    assert body["data"]["feeds"]["topics"]["beijiaosuo"].startswith("https://feeds.example.org/")


def test_an_archive_mounted_after_the_first_scan_is_still_backfill(
    make_config: Callable[..., Config],
    tmp_path: Path,
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
) -> None:
    share = tmp_path / "share"  # not mounted when the service starts
    webhook = hook(receivers(), topics=["beijiaosuo"], keywords=[])
    config = make_config(articles=[str(share)], webhooks=[webhook])
    store = stores(config)
    alerting(config, store).sync()
    archive = {
        "北交所去年成交创新高": "北京证券交易所全年成交金额创出新高，流动性明显改善。",
        "北交所发布融资融券细则": "北交所就融资融券交易实施细则公开征求意见，拟扩大标的范围。",
        "北交所首批做市商名单": "首批参与北交所股票做市交易的券商名单公布，共有十余家机构。",
    }
    for n, (title, text) in enumerate(archive.items()):
        write(share / f"old{n}.md", hexo_post(title, [text]))
    assert alerting(config, store).sync().batch.new == 3  # the share is there now
    assert all_rows(store) == [], "the archive's stories are backfill, however late it came"
    write(share / "new.md", hexo_post("北证50指数创年内新高", STORY))
    alerting(config, store).sync()
    assert [row.event_type for row in all_rows(store)] == ["item.new"]


def test_backfill_alerts_when_configured(
    make_config: Callable[..., Config],
    articles: Path,
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
) -> None:
    write(articles / "archive.md", hexo_post("北交所旧闻", other_story(1)))
    config = make_config(webhooks=[hook(receivers())], alert_on_backfill=True)
    store = stores(config)
    alerting(config, store).sync()
    assert [row.event_type for row in all_rows(store)] == ["item.new"]


def test_each_real_update_alerts_once_when_asked_for(
    make_config: Callable[..., Config],
    articles: Path,
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
) -> None:
    config = make_config(webhooks=[hook(receivers(), events=["item.updated"])])
    store = stores(config)
    alerting(config, store).sync()  # empty archive: backfill done

    def publish(extra: list[str], mtime: float) -> None:
        write(articles / "a.md", hexo_post("北证50指数创年内新高", STORY + extra), mtime=mtime)
        alerting(config, store).sync()

    publish([], 1.7e9)
    assert all_rows(store) == []  # item.new is not subscribed
    publish(["午后涨幅扩大。"], 1.8e9)
    alerting(config, store).sync()
    assert [row.event_type for row in all_rows(store)] == ["item.updated"]
    publish(["尾盘回落。"], 1.9e9)
    assert len({row.event_id for row in all_rows(store)}) == 2


# --- retries ----------------------------------------------------------------------------------


def setup(
    make_config: Callable[..., Config],
    stores: Callable[[Config], Store],
    receiver: Receiver,
    **kw: Any,
) -> tuple[Config, Store]:
    settings = {"secret": receiver.secret, **kw}
    config = make_config(webhooks=[hook(receiver, fmt=receiver.fmt, **settings)])
    return config, stores(config)


def test_500_three_times_then_200_is_delivered_once(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    receiver = receivers("json", WHSEC, clock)
    config, store = setup(make_config, stores, receiver)
    [event] = queue_alerts(store, "desk", ["北交所新规"], clock())
    receiver.reply(Reply(500), Reply(500), Reply(500))
    deliverer = Deliverer(config, store, client, now=clock, draw=lambda: 0.5)
    run_until_idle(deliverer, store, clock)
    assert [r.status for r in receiver.received] == [500, 500, 500, 200]
    assert {r.webhook_id for r in receiver.received} == {event}  # same id on every retry
    assert all(r.verified for r in receiver.received)  # each attempt signed at its own time
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.received]
    assert [b - a for a, b in itertools.pairwise(stamps)] == [5, 10, 20]  # jitter 0.5
    [row] = all_rows(store)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 4, None)


def test_retry_after_is_respected_in_seconds_and_as_http_date(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    receiver = receivers("json", None, clock)
    config, store = setup(make_config, stores, receiver)
    queue_alerts(store, "desk", ["北交所新规"], clock())
    later = format_datetime(clock() + timedelta(seconds=300), usegmt=True)
    receiver.reply(Reply(429, "slow down", {"Retry-After": "120"}))
    receiver.reply(Reply(503, "maintenance", {"Retry-After": later}))
    deliverer = Deliverer(config, store, client, now=clock, draw=lambda: 0.0)
    deliverer.deliver_due()
    clock.advance(119)
    deliverer.deliver_due()
    assert len(receiver.received) == 1, "no attempt before Retry-After"
    clock.advance(1)
    deliverer.deliver_due()
    assert len(receiver.received) == 2
    clock.set(datetime(2024, 5, 14, 2, 4, 59, tzinfo=UTC))  # 299 s after the first attempt
    deliverer.deliver_due()
    assert len(receiver.received) == 2, "no attempt before the HTTP-date"
    clock.advance(1)
    deliverer.deliver_due()
    assert [r.status for r in receiver.received] == [429, 503, 200]


def test_receiver_down_then_up_everything_arrives_in_order(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    receiver = receivers("json", WHSEC, clock)
    config, store = setup(make_config, stores, receiver)
    events = queue_alerts(store, "desk", ["北交所一", "北交所二", "北交所三"], clock())
    receiver.stop()
    deliverer = Deliverer(config, store, client, now=clock, draw=lambda: 1.0)
    for _ in range(4):  # down for a while: connection refused, backing off
        report = deliverer.deliver_due()
        assert report.sent == 0
        clock.advance(3600)
    assert all(row.status == "pending" for row in all_rows(store))
    receiver.start()
    run_until_idle(deliverer, store, clock)
    assert receiver.accepted_ids() == events  # all of them, once each, in queue order


@pytest.mark.parametrize(
    ("fmt", "answer", "min_wait"),
    [
        ("wecom", {"errcode": 45009, "errmsg": "api freq out of limit"}, 60),
        ("wecom", {"errcode": -1, "errmsg": "system busy"}, 1),
        ("dingtalk", {"errcode": 130101, "errmsg": "send too fast"}, 600),
        ("dingtalk", {"errcode": 300001, "errmsg": "token is not exist"}, 1),
        ("feishu", {"code": 11232, "msg": "frequency limited"}, 60),
        ("feishu", {"code": 9499, "msg": "Bad Request"}, 1),
    ],
)
def test_chat_errors_in_a_200_body_are_failures_and_retried(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
    fmt: str,
    answer: dict[str, Any],
    min_wait: int,
) -> None:
    receiver = receivers(fmt, None, clock)
    config, store = setup(make_config, stores, receiver)
    [event] = queue_alerts(store, "desk", ["北交所新规"], clock())
    receiver.reply(Reply(200, answer))
    deliverer = Deliverer(config, store, client, now=clock, draw=lambda: 0.0)
    report = deliverer.deliver_due()
    [row] = all_rows(store)
    assert (report.failed, row.status, row.attempts) == (1, "pending", 1)
    assert str(next(iter(answer.values()))) in (row.last_error or "")
    assert row.next_attempt >= clock() + timedelta(seconds=min_wait)
    run_until_idle(deliverer, store, clock)
    assert receiver.accepted_ids() == [event] and all_rows(store)[0].status == "delivered"


@pytest.mark.parametrize(
    ("fmt", "refusal"),
    [
        ("dingtalk", {"errcode": 310000, "errmsg": "keywords not in content, more: [https://x]"}),
        ("feishu", {"code": 19024, "msg": "Key Words Not Found", "data": {}}),
    ],
)
def test_a_robot_refusing_one_message_does_not_hold_up_the_rest(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
    fmt: str,
    refusal: dict[str, Any],
) -> None:
    receiver = receivers(fmt, None, clock)  # its "custom keywords" lack the first alert's word
    config, store = setup(make_config, stores, receiver)
    _refused, *others = queue_alerts(
        store, "desk", ["北京证券交易所新规", "北交所一", "北交所二"], clock()
    )
    receiver.reply(Reply(200, refusal))
    report = Deliverer(config, store, client, now=clock).deliver_due()
    assert (report.dead, report.sent) == (1, 2)  # at once, not after a 24 h retry window
    assert receiver.accepted_ids() == others
    assert [row.status for row in reversed(all_rows(store))] == ["dead", "delivered", "delivered"]


@pytest.mark.parametrize(
    ("fmt", "secret", "wrong"),
    [
        ("json", WHSEC, "whsec_" + "A" * 32),
        ("json", "纯文本密钥", "纯文本密钥x"),
        ("dingtalk", "SECabc123", "SECabc124"),
        ("feishu", "fs-secret", "fs-secret2"),
    ],
)
def test_receivers_verify_each_platforms_signature(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    fmt: str,
    secret: str,
    wrong: str,
) -> None:
    receiver = receivers(fmt, secret)
    good = hook(receiver, "good", fmt, secret=secret)
    bad = hook(receiver, "bad", fmt, secret=wrong)
    config = make_config(webhooks=[good, bad])
    store = stores(config)
    queue_alerts(store, "good", ["北交所新规"], datetime.now(UTC))
    queue_alerts(store, "bad", ["北交所新规"], datetime.now(UTC))
    Deliverer(config, store, client).deliver_due()
    verdicts = sorted(bool(r.verified) for r in receiver.received)
    assert verdicts == [False, True]
    status = {row.webhook: row.status for row in all_rows(store)}
    assert status["good"] == "delivered" and status["bad"] != "delivered"


def test_an_unusable_secret_is_a_retried_failure_not_a_crash(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    receiver = receivers("json", None, clock)
    config, store = setup(make_config, stores, receiver, secret="whsec_not-base64!")
    queue_alerts(store, "desk", ["北交所新规"], clock())
    assert Deliverer(config, store, client, now=clock).deliver_due().failed == 1
    [row] = all_rows(store)
    assert row.status == "pending" and "whsec_" in (row.last_error or "")
    assert receiver.received == []


def test_dead_letter_after_the_retry_window_then_manual_retry(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    receiver = receivers("json", None, clock)
    config, store = setup(make_config, stores, receiver, max_retry_hours=0.05)  # 3 minutes
    start = clock()
    queue_alerts(store, "desk", ["北交所新规"], start)
    receiver.reply(*[Reply(500, "down")] * 50)
    deliverer = Deliverer(config, store, client, now=clock, draw=lambda: 1.0)
    run_until_idle(deliverer, store, clock)
    [row] = all_rows(store)
    assert row.status == "dead" and "HTTP 500" in (row.last_error or "")
    assert "gave up" in (row.last_error or "")
    attempts = len(receiver.received)
    assert 4 <= attempts <= 10 and clock() == start + timedelta(minutes=3)  # last try at deadline
    receiver.script.clear()
    assert store.retry_alerts(None, clock()) == 1
    run_until_idle(deliverer, store, clock)
    assert all_rows(store)[0].status == "delivered" and len(receiver.accepted) == 1


@pytest.mark.parametrize(("status", "dead"), [(400, True), (410, True), (408, False), (302, False)])
def test_permanent_client_errors_are_dead_at_once_others_retried(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
    status: int,
    dead: bool,
) -> None:
    receiver = receivers("json", None, clock)
    config, store = setup(make_config, stores, receiver)
    queue_alerts(store, "desk", ["北交所新规"], clock())
    receiver.reply(Reply(status, "no", {"Location": receiver.url("/elsewhere")}))
    Deliverer(config, store, client, now=clock).deliver_due()
    assert len(receiver.received) == 1  # a redirect is not followed
    assert all_rows(store)[0].status == ("dead" if dead else "pending")


def test_a_failing_target_does_not_block_another(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    broken, healthy = receivers("json", None, clock), receivers("wecom", None, clock)
    broken.reply(*[Reply(500)] * 5)
    config = make_config(webhooks=[hook(broken, "broken"), hook(healthy, "healthy", "wecom")])
    store = stores(config)
    queue_alerts(store, "broken", ["北交所一", "北交所二"], clock())
    wanted = queue_alerts(store, "healthy", ["北交所一", "北交所二"], clock())
    report = Deliverer(config, store, client, now=clock).deliver_due()
    assert (report.sent, report.failed) == (2, 1)
    assert len(broken.received) == 1, "the queue waits behind its failed head"
    assert healthy.accepted_ids() == wanted


# --- rate limit and digest --------------------------------------------------------------------


def test_digest_when_more_are_due_than_the_rate_limit_allows(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    receiver = receivers("json", WHSEC, clock)
    config, store = setup(make_config, stores, receiver, rate_per_minute=3)
    deliverer = Deliverer(config, store, client, now=clock)
    first = queue_alerts(store, "desk", ["北交所一", "北交所二"], clock())
    deliverer.deliver_due()
    assert receiver.accepted_ids() == first  # within budget: one message each
    burst = queue_alerts(store, "desk", [f"北交所快讯{i}" for i in range(7)], clock())
    report = deliverer.deliver_due()
    assert (report.sent, report.digests) == (7, 1)
    digest = receiver.received[-1]
    assert digest.verified and digest.json["type"] == "alert.digest"
    assert [e["id"] for e in digest.json["data"]["events"]] == burst
    assert {row.digest_id for row in all_rows(store) if row.event_id in burst} == {
        digest.webhook_id
    }
    assert len(receiver.received) == 3


def test_a_json_digest_stays_under_the_usual_100_kb_request_limit(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    receiver = receivers("json", WHSEC, clock)
    receiver.max_body = 100 * 1024  # Express's default: bigger bodies are answered 413
    config, store = setup(make_config, stores, receiver, rate_per_minute=2)
    titles = [f"北交所快讯{n}：" + "某公司披露重大事项进展" * 10 for n in range(100)]
    queued = queue_alerts(store, "desk", titles, clock())
    run_until_idle(Deliverer(config, store, client, now=clock), store, clock)
    assert {row.status for row in all_rows(store)} == {"delivered"}
    assert len(receiver.received) > 1 and {r.status for r in receiver.received} == {200}
    assert all(len(r.body) <= 64 * 1024 for r in receiver.received)
    carried = [e["id"] for r in receiver.received for e in r.json["data"]["events"]]
    assert carried == queued


@pytest.mark.parametrize("fmt", ["wecom", "slack"])
def test_a_chat_digest_marks_delivered_only_the_alerts_it_shows(
    fmt: str,
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    receiver = receivers(fmt, None, clock)
    config, store = setup(make_config, stores, receiver, rate_per_minute=2)
    titles = [f"北交所快讯第{n}号：某公司披露重大事项进展" for n in range(80)]
    queue_alerts(store, "desk", titles, clock())
    run_until_idle(Deliverer(config, store, client, now=clock), store, clock)
    shown = "".join(json.dumps(r.json, ensure_ascii=False) for r in receiver.received)
    assert len(receiver.received) > 2 and "另有" not in shown  # nothing summed up unseen
    assert all(shown.count(f"第{n}号：") == 1 for n in range(80))
    assert {row.status for row in all_rows(store)} == {"delivered"}


def test_over_budget_waits_for_the_window_instead_of_flooding(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    receiver = receivers("dingtalk", "SECabc", clock)
    config, store = setup(make_config, stores, receiver, rate_per_minute=2)
    deliverer = Deliverer(config, store, client, now=clock)
    queue_alerts(store, "desk", ["北交所一", "北交所二"], clock())
    deliverer.deliver_due()
    queue_alerts(store, "desk", ["北交所三", "北交所四", "北交所五"], clock())
    clock.advance(30)
    deliverer.deliver_due()
    assert len(receiver.received) == 2, "the minute's budget is spent"
    clock.advance(31)
    deliverer.deliver_due()
    assert len(receiver.received) == 3 and receiver.received[-1].verified
    text = receiver.received[-1].json["markdown"]["text"]
    assert all(f"北交所{n}" in text for n in "三四五")
    assert all(row.status == "delivered" for row in all_rows(store))


def test_the_budget_outlives_a_restart(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    receiver = receivers("json", WHSEC, clock)
    config, store = setup(make_config, stores, receiver, rate_per_minute=2)
    queue_alerts(store, "desk", ["北交所一", "北交所二"], clock())
    Deliverer(config, store, client, now=clock).deliver_due()
    store.close()  # the service stops and starts again 10 s later
    clock.advance(10)
    store = stores(config)
    queue_alerts(store, "desk", ["北交所三"], clock())
    Deliverer(config, store, client, now=clock).deliver_due()
    assert len(receiver.received) == 2, "a restart must not refill the minute's budget"
    clock.advance(51)
    Deliverer(config, store, client, now=clock).deliver_due()
    assert len(receiver.received) == 3


def test_two_processes_share_one_budget(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    """The service and a cron ``feeds alerts deliver`` each open the state database."""
    receiver = receivers("json", WHSEC, clock)
    config, service_store = setup(make_config, stores, receiver, rate_per_minute=3)
    cron_store = stores(config)
    service = Deliverer(config, service_store, client, now=clock)
    cron = Deliverer(config, cron_store, client, now=clock)
    for n in range(6):
        queue_alerts(service_store, "desk", [f"北交所快讯{n}"], clock())
        (service if n % 2 else cron).deliver_due()
        clock.advance(1)
    assert len(receiver.received) == 3
    assert service_store.requests_left("desk", clock(), (timedelta(minutes=1), 3)) == 0


def test_old_requests_are_forgotten(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    receiver = receivers("json", WHSEC, clock)
    config, store = setup(make_config, stores, receiver, rate_per_minute=5)
    deliverer = Deliverer(config, store, client, now=clock)
    for n in range(4):
        queue_alerts(store, "desk", [f"北交所{n}"], clock())
        deliverer.deliver_due()
        clock.advance(61)
    assert len(receiver.received) == 4
    rows = store._all("SELECT count(*) FROM alert_requests")  # the log holds one minute only
    assert rows[0][0] == 1


def test_stop_ends_a_drain_after_the_request_in_flight(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
) -> None:
    receiver = receivers("json", WHSEC)  # a slow platform: each answer takes 0.5 s
    config, store = setup(make_config, stores, receiver)
    queued = queue_alerts(store, "desk", [f"北交所{n}" for n in range(5)], datetime.now(UTC))
    receiver.reply(*[Reply(delay=0.5)] * 5)
    deliverer = Deliverer(config, store, client)
    draining = threading.Thread(target=deliverer.deliver_due)
    draining.start()
    wait_until(lambda: receiver.received)
    deliverer.stop()  # the service is shutting down
    draining.join(timeout=10)
    assert receiver.accepted_ids() == queued[:1], "nothing is sent after stop()"
    statuses = [(row.event_id, row.status) for row in reversed(all_rows(store))]
    assert statuses == [(queued[0], "delivered")] + [(e, "pending") for e in queued[1:]]


def wait_until(check: Callable[[], Any], timeout: float = 10) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while not check():
        assert datetime.now(UTC) < deadline, "timed out"
        threading.Event().wait(0.01)


# --- crashes ----------------------------------------------------------------------------------

CHILD = r"""
import json, os, signal, sys
import httpx
from feeds.alerts import AlertPlanner
from feeds.config import load_config
from feeds.delivery import Deliverer
from feeds.pipeline import Pipeline
from feeds.store import open_store

config = load_config(None, json.loads(sys.argv[1]), environ={})
store = open_store(config.state)
Pipeline(config, store, workers=1, on_event=AlertPlanner(config)).sync()
answers = []

def die_after_second_answer(response):
    answers.append(response.status_code)
    if len(answers) == 2:
        os.kill(os.getpid(), signal.SIGKILL)

with httpx.Client(event_hooks={"response": [die_after_second_answer]}) as client:
    Deliverer(config, store, client).deliver_due()
"""


def test_sigkill_while_alerts_are_pending_each_is_delivered_by_webhook_id(
    tmp_path: Path,
    make_config: Callable[..., Config],
    articles: Path,
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
) -> None:
    receiver = receivers("feishu", "fs-secret")
    data = {
        "articles": [str(articles)],
        "output": str(tmp_path / "output"),
        "state": str(tmp_path / "state" / "feeds.db"),
        "base_url": "https://feeds.example.org/",
        "topics": TOPICS,
        "webhooks": [hook(receiver, fmt="feishu", secret="fs-secret")],
    }
    config = make_config(**data)
    build(config)  # the archive starts empty: what comes next is news
    for n in range(3):
        write(articles / f"{n}.md", hexo_post(f"北交所新股{n}", other_story(n)))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(data)], cwd=ROOT, timeout=60, check=False
    )
    assert child.returncode == -signal.SIGKILL
    assert len(receiver.received) == 2

    store = stores(config)  # the restart
    planned = [row.event_id for row in sorted(all_rows(store), key=lambda row: row.id)]
    assert len(planned) == 3
    Deliverer(config, store, client).deliver_due()
    assert len(receiver.received) == 2, "the in-flight alert stays leased for a while"
    later = datetime.now(UTC) + timedelta(minutes=2)
    Deliverer(config, store, client, now=lambda: later).deliver_due()
    counts = Counter(receiver.accepted_ids())
    assert set(counts) == set(planned)  # nothing lost
    assert counts == Counter({planned[0]: 1, planned[1]: 2, planned[2]: 1})  # resent: same id
    assert all(r.verified for r in receiver.received)
    assert all(row.status == "delivered" for row in all_rows(store))


def test_a_new_store_object_on_the_same_file_delivers_each_alert_once(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
) -> None:
    receiver = receivers("json", WHSEC, clock)
    config, store = setup(make_config, stores, receiver)
    events = queue_alerts(store, "desk", ["北交所一", "北交所二"], clock())
    store.close()
    for _ in range(2):
        Deliverer(config, stores(config), client, now=clock).deliver_due()
    assert receiver.accepted_ids() == events


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_and_url_tokens_never_reach_logs_or_stored_errors(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    stores: Callable[[Config], Store],
    client: httpx.Client,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = receivers("wecom", None, clock)
    token = "c0ffee00-1234-5678-9abc-def012345678"
    monkeypatch.setenv("WECOM_URL", receiver.url("/cgi-bin/webhook/send", f"key={token}"))
    webhook = {**hook(receiver, fmt="wecom"), "url": "env:WECOM_URL", "secret": "topsecret99"}
    config = make_config(webhooks=[webhook])
    store = stores(config)
    queue_alerts(store, "desk", ["北交所新规"], clock())
    receiver.reply(Reply(500, f"upstream said key={token} is bad"))
    receiver.stop()
    with caplog.at_level(logging.DEBUG, logger="feeds"):
        deliverer = Deliverer(config, store, client, now=clock)
        deliverer.deliver_due()  # connection refused
        receiver.start()
        clock.advance(3600)
        deliverer.deliver_due()  # HTTP 500 quoting the key
    [row] = all_rows(store)
    assert "HTTP 500" in (row.last_error or "") and "***" in (row.last_error or "")
    for text in (caplog.text, row.last_error or ""):
        assert token not in text and "topsecret99" not in text
    assert "delivery to desk failed" in caplog.text


def test_redaction_helpers() -> None:
    url = "https://open.feishu.cn/open-apis/bot/v2/hook/0a1b2c3d-4e5f-6789?x=1"
    assert redact_url(url) == "https://open.feishu.cn/open-apis/bot/v2/hook/***?x=***"
    ding = "https://user:pw@oapi.dingtalk.com/robot/send?access_token=abcd1234&sign=xyz%2B"
    assert redact_url(ding) == "https://oapi.dingtalk.com/robot/send?access_token=***&sign=***"
    assert scrub(f"POST {ding} failed", url_secrets(ding)) == "POST *** failed"


def test_response_classification() -> None:
    now = datetime(2024, 5, 14, tzinfo=UTC)
    assert classify_response("json", 204, {}, "", now).ok
    assert not classify_response("wecom", 200, {}, "<html>", now).ok
    assert classify_response("feishu", 200, {}, '{"StatusCode":0}', now).ok
    assert not classify_response("slack", 404, {}, "no_service", now).retryable
    assert retry_after_seconds("Tue, 14 May 2024 00:01:00 GMT", now) == 60.0
    assert retry_after_seconds("soon", now) is None


# --- the CLI ----------------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-level")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_test_list_retry_and_deliver(
    tmp_path: Path,
    receivers: Callable[..., Receiver],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("feeds.log.setup_logging", lambda *args: None)  # keep pytest's logging
    monkeypatch.setenv("DESK_SECRET", "fs-secret")
    receiver = receivers("feishu", "fs-secret")
    path = tmp_path / "feeds.toml"
    path.write_text(
        f'articles = ["{tmp_path / "articles"}"]\nstate = "{tmp_path / "feeds.db"}"\n'
        f'output = "{tmp_path / "out"}"\n'
        f'[[webhooks]]\nname = "desk"\nurl = "{receiver.url()}"\nformat = "feishu"\n'
        'secret = "env:DESK_SECRET"\nkeywords = ["北交所"]\n',
        encoding="utf-8",
    )
    common = ("--config", str(path))
    assert run_cli("alerts", "test", "desk", *common) == 0
    assert receiver.received[-1].verified and '"code": 0' in capsys.readouterr().out
    receiver.reply(Reply(200, {"code": 19024, "msg": "Key Words Not Found"}))
    assert run_cli("alerts", "test", "desk", *common) == 1
    assert "19024" in capsys.readouterr().out
    assert run_cli("alerts", "test", "nobody", *common) == 2

    store = open_store(tmp_path / "feeds.db")
    queue_alerts(store, "desk", ["北交所新规"], datetime.now(UTC))
    store.mark_alerts_dead([all_rows(store)[0].id], "HTTP 400: bad")
    store.close()
    assert run_cli("alerts", "list", "--failed", "--json", *common) == 0
    [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (listed["status"], listed["title"]) == ("dead", "北交所新规")
    assert listed["last_error"] == "HTTP 400: bad"
    assert run_cli("alerts", "retry", listed["event_id"], *common) == 0
    assert run_cli("alerts", "retry", "999", *common) == 1
    assert run_cli("alerts", "deliver", *common) == 0
    assert "sent 1" in capsys.readouterr().out
    assert receiver.accepted_ids()[-1] == listed["event_id"]


def test_cron_build_then_deliver_alerts_new_stories(
    tmp_path: Path,
    receivers: Callable[..., Receiver],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("feeds.cli.setup_logging", lambda *args: None)  # keep pytest's logging
    monkeypatch.setattr("feeds.log.setup_logging", lambda *args: None)
    receiver = receivers("json", WHSEC)
    articles = tmp_path / "articles"
    path = tmp_path / "feeds.toml"
    path.write_text(
        f'articles = ["{articles}"]\nstate = "{tmp_path / "feeds.db"}"\n'
        f'output = "{tmp_path / "out"}"\n'
        f'[[webhooks]]\nname = "desk"\nurl = "{receiver.url()}"\nsecret = "{WHSEC}"\n'
        'keywords = ["北交所"]\n',
        encoding="utf-8",
    )
    common = ("--config", str(path))
    write(articles / "archive.md", hexo_post("北交所旧闻", other_story(1)))
    assert main(["build", *common]) == 0  # the first build of the archive: backfill
    write(articles / "new.md", hexo_post("北证50指数创年内新高", STORY))
    assert main(["build", *common]) == 0
    assert "alerts: 1 queued" in capsys.readouterr().out
    assert main(["alerts", "deliver", *common]) == 0
    [received] = receiver.received
    assert received.verified and received.json["data"]["item"]["title"] == "北证50指数创年内新高"


def test_check_config_fails_on_webhook_secrets_this_environment_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WECOM_URL", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k-123")
    monkeypatch.delenv("DING_SECRET", raising=False)
    hooks = [
        ("wecom", "env:WECOM_URL", None),  # fine
        ("dingtalk", "https://oapi.dingtalk.com/robot/send?access_token=t", "env:DING_SECRET"),
        ("feishu", "https://open.feishu.cn/open-apis/bot/v2/hook/x", f"file:{tmp_path}/nope"),
        ("json", "https://example.org/hook", "whsec_not base64!"),
    ]
    text = "".join(
        f'[[webhooks]]\nname = "{fmt}"\nurl = "{url}"\nformat = "{fmt}"\nkeywords = ["北交所"]\n'
        + (f'secret = "{secret}"\n' if secret else "")
        for fmt, url, secret in hooks
    )
    path = tmp_path / "feeds.toml"
    path.write_text(text, encoding="utf-8")
    assert main(["check-config", "--config", str(path)]) == 2
    errors = [line for line in capsys.readouterr().out.splitlines() if "error:" in line]
    assert [line.split(":")[1].strip() for line in errors] == [
        "webhooks.dingtalk.secret", "webhooks.feishu.secret", "webhooks.json.secret"
    ]  # fmt: skip
    assert "DING_SECRET is not set" in errors[0] and "cannot read" in errors[1]
    assert "needs base64" in errors[2] and "not base64!" not in errors[2]


def test_alerts_test_message_names_the_topic_and_links_to_feeds_that_exist(
    make_config: Callable[..., Config],
    receivers: Callable[..., Receiver],
    client: httpx.Client,
) -> None:
    receiver = receivers("wecom")
    by_topic = hook(receiver, name="topic", fmt="wecom", topics=["beijiaosuo"], keywords=[])
    by_word = hook(receiver, name="word", fmt="wecom", keywords=["央行"])
    config = make_config(webhooks=[by_topic, by_word])
    assert send_test(config, "topic", client).ok and send_test(config, "word", client).ok
    topic, word = (r.json["markdown"]["content"] for r in receiver.received)
    assert "命中「北交所」" in topic
    assert "[订阅「北交所」](https://feeds.example.org/topics/beijiaosuo.rss)" in topic
    assert "命中「央行」" in word and "(https://feeds.example.org/all.rss)" in word


def test_retry_leaves_an_alert_that_is_being_delivered_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "feeds.toml"
    path.write_text(
        f'articles = ["{tmp_path}"]\nstate = "{tmp_path / "feeds.db"}"\n'
        '[[webhooks]]\nname = "desk"\nurl = "http://127.0.0.1:9/"\nkeywords = ["北交所"]\n',
        encoding="utf-8",
    )
    now = datetime.now(UTC)
    store = open_store(tmp_path / "feeds.db")
    try:
        [event] = queue_alerts(store, "desk", ["北交所新规"], now)
        [row] = all_rows(store)
        # a delivery (the service, or a cron `alerts deliver`) is sending it right now
        assert store.claim_alerts([row.id], now, now + timedelta(minutes=1))
    finally:
        store.close()
    for ref in (str(row.id), event):
        assert main(["alerts", "retry", ref, "--config", str(path)]) == 1
        assert "is being delivered right now" in capsys.readouterr().err
    store = open_store(tmp_path / "feeds.db")
    try:
        assert store.retry_alerts(str(row.id), now + timedelta(minutes=2)) == 1  # lease over
    finally:
        store.close()


# --- hostile receivers ----------------------------------------------------------------------------


def send_to(receiver: HostileReceiver, make_config: Callable[..., Config]) -> Any:
    url = f"http://127.0.0.1:{receiver.port}/hook"
    webhook = {"name": "desk", "url": url, "timeout_seconds": 1, "keywords": ["北交所"]}
    config = make_config(webhooks=[webhook])
    outcome: list[Any] = []
    with httpx.Client() as client:
        sender = threading.Thread(target=lambda: outcome.append(send_test(config, "desk", client)))
        sender.start()
        sender.join(120)  # before: a trickle kept it waiting for ever
    assert outcome, "still reading the answer"
    return outcome[0]


def test_an_endless_answer_is_read_only_so_far(make_config: Callable[..., Config]) -> None:
    receiver = HostileReceiver(b"x" * 65536, pace=0)
    try:
        outcome = send_to(receiver, make_config)
        assert outcome.ok and outcome.body.startswith("xxx")
        assert receiver.done.wait(60)
        assert receiver.written < 64 * 1024 * 1024  # before: all of it, 256 MiB, held in memory
    finally:
        receiver.close()


def test_a_trickling_answer_fails_after_timeout_seconds(make_config: Callable[..., Config]) -> None:
    receiver = HostileReceiver(b"x", pace=0.05)  # a byte well within each read's timeout
    try:
        outcome = send_to(receiver, make_config)
        assert not outcome.ok and outcome.retryable
        assert outcome.detail == "the answer took over 1 s"
    finally:
        receiver.close()


def test_the_standard_webhooks_example_signature() -> None:
    """The example of the Standard Webhooks specification (its README and reference test)."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, stamp, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    request = prepare_request(
        "json", "https://example.org/hook", secret, msg_id, json.loads(body),
        datetime.fromtimestamp(stamp, UTC),
    )  # fmt: skip
    assert request.headers["webhook-id"] == msg_id
    assert request.headers["webhook-timestamp"] == str(stamp)
    assert request.body == b'{"test":2432232314}'  # compact JSON: the signature is over these
    key = base64.b64decode(secret.removeprefix("whsec_"))
    assert (  # the spec's own expected value for its body
        "v1," + base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body,
                                          hashlib.sha256).digest()).decode()
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )  # fmt: skip
    expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + request.body, hashlib.sha256)
    assert request.headers["webhook-signature"] == "v1," + base64.b64encode(
        expected.digest()
    ).decode("ascii")
