"""Alerts through the real service process: exactly once, across SIGKILL and a receiver outage."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.alert_helpers import Receiver, Reply
from tests.conftest import hexo_post, write
from tests.service_process import ServiceProcess, wait_for, write_config

pytestmark = pytest.mark.slow
SECRET = "test-secret-为了签名"


def story(n: int, topic: str = "北交所") -> str:
    return hexo_post(
        f"{topic}第{n}号消息", [f"{topic}今日公告第{n}号事项，相关公司进展顺利，成交额明显放大。"]
    )


def webhook_config(tmp_path: Path, receiver: Receiver) -> Path:
    extra = f"""
[[webhooks]]
name = "bse-desk"
url = "{receiver.url()}"
format = "json"
secret = "env:FEEDS_TEST_SECRET"
topics = ["beijiaosuo"]
"""
    return write_config(tmp_path, extra)


def test_alerts_are_delivered_once_despite_kill9_and_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDS_TEST_SECRET", SECRET)
    receiver = Receiver("json", secret=SECRET)
    config = webhook_config(tmp_path, receiver)
    receiver.stop()  # the team chat bot is down
    write(tmp_path / "articles" / "old.md", story(0))  # backfill: never alerts
    first = ServiceProcess(config).wait_ready()
    for n in range(1, 6):
        write(tmp_path / "articles" / f"new{n}.md", story(n))
    write(tmp_path / "articles" / "other.md", story(9, topic="央行逆回购"))
    wait_for(lambda: first.health()["alert_backlog"] == 5, timeout=30, what="5 queued alerts")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)

    receiver.start()  # back on the same port
    second = ServiceProcess(config).wait_ready()
    try:
        wait_for(lambda: len(receiver.accepted) >= 5, timeout=90, what="5 deliveries")
        time.sleep(3)  # anything sent twice would arrive now
        ids = receiver.accepted_ids()
        assert len(ids) == 5 and len(set(ids)) == 5
        assert all(r.verified for r in receiver.accepted)
        titles = sorted(r.json["data"]["item"]["title"] for r in receiver.accepted)
        assert titles == [f"北交所第{n}号消息" for n in range(1, 6)]
        wait_for(lambda: second.health()["alert_backlog"] == 0, what="empty backlog")
    finally:
        assert second.stop()[0] == 0
        receiver.stop()


def test_an_archive_copied_into_a_running_service_alerts_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDS_TEST_SECRET", SECRET)
    monkeypatch.setenv("FEEDS_ALERT_BULK_FILES", "20")
    receiver = Receiver("json", secret=SECRET)
    config = webhook_config(tmp_path, receiver)
    staging = tmp_path / "staging"
    for n in range(60):
        write(staging / f"{n}.md", story(n))
    running = ServiceProcess(config).wait_ready()
    try:
        shutil.copytree(staging, tmp_path / "articles" / "archive")  # written in place
        wait_for(lambda: running.health()["items"] == 60, timeout=30, what="60 stories")
        time.sleep(3)  # delivery runs at once after a batch: any alert would be here by now
        # The first batches of a copy look like news until 20 new files came within a minute;
        # from then on it is an import. Without the guard, all 60 are queued (and sent).
        with sqlite3.connect(tmp_path / "state" / "feeds.db") as db:
            (queued,) = db.execute("SELECT count(*) FROM alert_outbox").fetchone()
        assert queued <= 20
        assert running.health()["alert_backlog"] == 0
        assert any("taken as an archive import" in line for line in running.log)
    finally:
        assert running.stop()[0] == 0
        receiver.stop()


def test_rewrite_and_restart_never_alert_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDS_TEST_SECRET", SECRET)
    receiver = Receiver("json", secret=SECRET)
    config = webhook_config(tmp_path, receiver)
    first = ServiceProcess(config).wait_ready()
    path = write(tmp_path / "articles" / "a.md", story(1))
    wait_for(lambda: len(receiver.accepted) == 1, timeout=30, what="the alert")
    write(path, path.read_text("utf-8"), mtime=2_000_000_000)  # same content again
    write(tmp_path / "articles" / "copy.md", path.read_text("utf-8"))  # a duplicate
    time.sleep(2)
    assert first.stop()[0] == 0
    second = ServiceProcess(config).wait_ready()
    time.sleep(2)
    assert second.stop()[0] == 0
    assert len(receiver.received) == 1
    receiver.stop()


def test_sigterm_does_not_wait_for_a_slow_receiver_to_take_the_backlog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDS_TEST_SECRET", SECRET)
    receiver = Receiver("json", secret=SECRET)
    receiver.reply(*[Reply(delay=2.0)] * 4)  # each answer takes 2 s
    config = webhook_config(tmp_path, receiver)
    first = ServiceProcess(config).wait_ready()
    for n in range(1, 5):
        write(tmp_path / "articles" / f"new{n}.md", story(n))
    wait_for(lambda: first.health()["alert_backlog"] == 4, timeout=30, what="4 queued alerts")
    wait_for(lambda: receiver.received, timeout=30, what="the first request")
    code, seconds = first.stop()
    assert code == 0 and seconds < 5, f"stopping took {seconds:.1f} s"  # not 4 x 2 s
    assert len(receiver.received) == 1
    second = ServiceProcess(config).wait_ready()  # the rest was kept and goes out now
    try:
        wait_for(lambda: len(receiver.accepted) == 4, timeout=60, what="4 deliveries")
        assert len(set(receiver.accepted_ids())) == 4
    finally:
        assert second.stop()[0] == 0
        receiver.stop()


def test_a_slow_receiver_does_not_fill_the_log_with_skipped_job_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDS_TEST_SECRET", SECRET)
    receiver = Receiver("json", secret=SECRET)
    receiver.reply(*[Reply(delay=2.5)] * 4)  # one delivery run takes 10 s: two ticks pass
    config = webhook_config(tmp_path, receiver)
    service = ServiceProcess(config).wait_ready()
    try:
        for n in range(1, 5):
            write(tmp_path / "articles" / f"new{n}.md", story(n))
        wait_for(lambda: len(receiver.accepted) == 4, timeout=60, what="4 deliveries")
        wait_for(lambda: service.health()["alert_backlog"] == 0, what="an empty backlog")
        assert [line for line in service.log if "skipped" in line] == []
    finally:
        assert service.stop()[0] == 0
        receiver.stop()
