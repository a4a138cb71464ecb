"""SIGKILL the real service again and again: during start-up, mid-ingest and mid-delivery.

Each round drops a batch of new articles (about a third of them alert a webhook), starts the
service and kills it with SIGKILL at a moment chosen by a seeded random generator: a while
after start, right after one of its ingest transactions committed, or right after the webhook
receiver got a request (so some alerts die between the receiver's answer and the outbox
update). After every kill, every feed file on disk parses and the database passes
``PRAGMA integrity_check``. After the final restart, every article is an item exactly once and
every alert has reached the receiver under exactly one ``webhook-id`` (resent with the same
id after a crash: at-least-once delivery, idempotent ids).
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import feedparser
import pytest

from bench.common import descendants
from tests.alert_helpers import Receiver, Reply
from tests.conftest import write
from tests.service_process import ServiceProcess, wait_for, write_config

pytestmark = pytest.mark.slow

SEED = 20240514
ROUNDS = 20
SECRET = "crash-test-secret"
HANZI = [chr(c) for c in range(0x4E00, 0x9FA5)]


# Two unconfigured outlets whose names read the same: each claims a slug of its own, in the
# transaction of the files that made the claim.
OUTLETS = ("财新网", "财信网")


def post(rng: random.Random, title: str, alerting: bool, outlet: str = OUTLETS[0]) -> str:
    words = "".join(rng.choice(HANZI) for _ in range(80))
    lead = "北交所今日公告：" if alerting else "央行今日公告："
    head = f"---\ntitle: {title}\nauthor: {outlet}\ndate: 2024-05-14 10:00:00 +0800\n---\n"
    return f"{head}\n<p>{lead}{words}。</p>\n"


def db_count(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return -1


def check_on_disk(tmp: Path, round_no: int) -> None:
    for path in (tmp / "output").rglob("*"):
        if path.suffix in (".rss", ".atom") and not path.name.startswith("."):
            parsed = feedparser.parse(path.read_bytes())
            assert parsed.bozo == 0, (round_no, path, parsed.get("bozo_exception"))
    with sqlite3.connect(tmp / "state" / "feeds.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", round_no


def kill_at_a_random_moment(
    service: ServiceProcess, rng: random.Random, tmp: Path, receiver: Receiver
) -> str:
    db = tmp / "state" / "feeds.db"
    moment = rng.choice(["after-start", "mid-ingest", "mid-delivery"])
    if moment == "after-start":
        time.sleep(rng.uniform(0.2, 2.0))
    elif moment == "mid-ingest":
        before = db_count(db, "SELECT count(*) FROM files")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and service.proc.poll() is None:
            if db_count(db, "SELECT count(*) FROM files") > before:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))
    else:
        before = len(receiver.received)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(receiver.received) <= before:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
    service.proc.send_signal(signal.SIGKILL)
    service.proc.wait(timeout=10)
    return moment


def test_sigkill_at_random_moments_loses_and_repeats_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    monkeypatch.setenv("FEEDS_CRASH_SECRET", SECRET)
    monkeypatch.setenv("FEEDS_ALERT_BULK_FILES", "0")  # ~2,000 news in 70 s: not an import here
    receiver = Receiver("json", secret=SECRET)
    config = write_config(
        tmp_path,
        f"""
[[webhooks]]
name = "desk"
url = "{receiver.url()}"
format = "json"
secret = "env:FEEDS_CRASH_SECRET"
keywords = ["北交所"]
rate_per_minute = 100000
timeout_seconds = 2
""",
    )
    first = ServiceProcess(config).wait_ready()  # an empty archive: what follows is news
    first.stop()
    titles: dict[str, bool] = {}  # title -> alerts
    moments: dict[str, int] = defaultdict(int)
    try:
        for round_no in range(ROUNDS):
            count = 420 if round_no % 9 == 4 else 60  # now and then, past the pool threshold
            for n in range(count):
                title = f"崩溃测试{round_no}-{n}"
                alerting = rng.random() < 0.35
                titles[title] = alerting
                text = post(rng, title, alerting, OUTLETS[n % 2])
                write(tmp_path / "articles" / f"r{round_no}" / f"{n}.md", text)
            if rng.random() < 0.3:  # a receiver that is busy for a moment
                receiver.reply(*[Reply(503, "busy", {"Retry-After": "1"})] * rng.randint(1, 5))
            service = ServiceProcess(config)
            moments[kill_at_a_random_moment(service, rng, tmp_path, receiver)] += 1
            check_on_disk(tmp_path, round_no)
        kill_time = time.monotonic() - started
        print(f"{ROUNDS} kills in {kill_time:.0f} s: {dict(moments)}")
        assert all(moments[m] >= 3 for m in ("after-start", "mid-ingest", "mid-delivery"))

        final = ServiceProcess(config).wait_ready(timeout=120)
        wait_for(lambda: final.health()["items"] == len(titles), timeout=120, what="all items")
        expected_alerts = sum(titles.values())
        wait_for(
            lambda: (
                len({r.webhook_id for r in receiver.accepted}) >= expected_alerts
                and final.health()["alert_backlog"] == 0
            ),
            timeout=120,
            what=f"{expected_alerts} alerts delivered",
        )
        time.sleep(2)  # a duplicate of a new id would arrive now
        assert final.stop()[0] == 0
    finally:
        receiver.stop()

    listing = subprocess.run(
        [sys.executable, "-m", "feeds", "items", "--json", "--config", str(config)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=True,
    )  # fmt: skip
    items = [json.loads(line) for line in listing.stdout.splitlines()]
    assert sorted(item["title"] for item in items) == sorted(titles)  # each exactly once
    assert all(len(item["paths"]) == 1 for item in items)
    with sqlite3.connect(tmp_path / "state" / "feeds.db") as conn:
        slugs = dict(conn.execute("SELECT DISTINCT source_name, source_slug FROM files"))
        claims = dict(conn.execute("SELECT outlet, slug FROM outlet_slugs"))
    assert claims == slugs and len(set(slugs.values())) == 2  # one slug each, as claimed

    by_id: dict[str, set[str]] = defaultdict(set)
    for record in receiver.accepted:
        assert record.verified, "a request without a valid signature"
        by_id[record.webhook_id].add(record.json["data"]["item"]["title"])
    assert all(len(alerted) == 1 for alerted in by_id.values())  # one id, one story
    alerted_titles = [next(iter(alerted)) for alerted in by_id.values()]
    assert sorted(alerted_titles) == sorted(t for t, alerts in titles.items() if alerts)
    resent = len(receiver.accepted) - len(by_id)
    print(f"{len(by_id)} alerts, {resent} resent with the same webhook-id after a kill")


def helpers_of(pid: int) -> set[int]:
    return set(descendants(pid)) - {pid}


def test_pool_workers_end_when_the_build_is_killed(tmp_path: Path) -> None:
    """An OOM kill of a big build must not leave its parser processes running for ever."""
    articles = tmp_path / "articles"
    rng = random.Random(7)
    for index in range(3000):
        write(articles / f"{index:05d}.md", post(rng, f"第{index}号快讯", alerting=False))
    config = tmp_path / "feeds.toml"
    config.write_text(
        f'articles = ["{articles}"]\noutput = "{tmp_path / "out"}"\n'
        f'state = "{tmp_path / "state.db"}"\n',
        "utf-8",
    )
    build = subprocess.Popen(
        [sys.executable, "-m", "feeds", "build", "--config", str(config), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # the forkserver and two workers (and multiprocessing's resource tracker)
        started = wait_for(lambda: len(helpers := helpers_of(build.pid)) >= 3 and helpers)
        build.send_signal(signal.SIGKILL)
        build.wait()
        wait_for(
            lambda: not any(Path(f"/proc/{pid}").exists() for pid in started),
            timeout=15,
            what=f"the build's helper processes {sorted(started)} to end",
        )
    finally:
        build.kill()
