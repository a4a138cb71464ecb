"""10,000 files dropped at once while a client makes 200 conditional GETs a second.

Loopback only, bounded in time and count. Every response is 200 or 304 (no error, no refused
or reset connection); every new version of a feed that is served parses; afterwards every
file is an item exactly once.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import feedparser
import httpx
import pytest

from tests.service_process import ServiceProcess, wait_for, write_config

pytestmark = pytest.mark.slow

FILES = 10_000
RATE = 200  # requests per second, over all client threads
THREADS = 4
MAX_SECONDS = 180
PATHS = ["/all.rss", "/all.atom", "/topics/beijiaosuo.rss", "/topics/xinsanban.atom", "/"]
HANZI = [chr(c) for c in range(0x4E00, 0x9FA5)]


class Client:
    """Paced conditional GETs from a few threads, each remembering the ETag it last saw."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.versions: dict[str, dict[str, bytes]] = {path: {} for path in PATHS}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(THREADS)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, n: int) -> None:
        etags: dict[str, str] = {}
        interval = THREADS / RATE
        started = time.monotonic()
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10) as client:
            for i in range(MAX_SECONDS * RATE // THREADS):
                if self._stop.is_set():
                    return
                pause = started + i * interval - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                path = PATHS[(i + n) % len(PATHS)]
                headers = {"If-None-Match": etags[path]} if path in etags else {}
                try:
                    response = client.get(path, headers=headers)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(f"{path}: {type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    self.statuses[response.status_code] += 1
                    if response.status_code not in (200, 304):
                        self.failures.append(f"{path}: HTTP {response.status_code}")
                    if response.status_code == 200:
                        etag = response.headers["etag"]
                        etags[path] = etag
                        self.versions[path].setdefault(etag, response.content)


def test_ten_thousand_files_under_two_hundred_conditional_gets_a_second(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    rng = random.Random(7)
    staging = tmp_path / "staging"
    staging.mkdir()
    for n in range(FILES):
        words = "".join(rng.choice(HANZI) for _ in range(60))
        topic = "北交所" if n % 3 == 0 else "新三板" if n % 3 == 1 else "央行"
        (staging / f"{n:05d}.md").write_text(
            f"---\ntitle: 负载测试{n}\n---\n\n<p>{topic}消息：{words}。</p>\n", "utf-8"
        )
    service = ServiceProcess(config).wait_ready()
    client = Client(service.port or 0)
    try:
        client.start()
        time.sleep(1)  # under load before the drop
        started = time.monotonic()
        os.rename(staging, tmp_path / "articles" / "burst")  # all at once
        wait_for(lambda: service.health()["items"] == FILES, timeout=MAX_SECONDS - 30, what="items")
        ingest_seconds = time.monotonic() - started
        time.sleep(1)
    finally:
        client.stop()
    total = sum(client.statuses.values())
    print(f"{FILES} files in {ingest_seconds:.0f} s; {total} requests: {dict(client.statuses)}")
    assert client.failures == [], client.failures[:10]
    assert total >= 0.5 * RATE * ingest_seconds  # the load was really applied
    assert client.statuses[304] > 0 and client.statuses[200] > 0
    for path, versions in client.versions.items():
        assert versions, path
        for body in versions.values():
            if path != "/":
                assert feedparser.parse(body).bozo == 0, path
    assert service.stop()[0] == 0
    listing = subprocess.run(
        [sys.executable, "-m", "feeds", "items", "--json", "--config", str(config)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=True,
    )  # fmt: skip
    items = [json.loads(line) for line in listing.stdout.splitlines()]
    assert len(items) == FILES
    assert len({item["title"] for item in items}) == FILES  # none twice
    assert all(len(item["paths"]) == 1 for item in items)
