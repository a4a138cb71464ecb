"""End-to-end: the real service process, real watchdog events, real HTTP on a free port."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest

from tests.conftest import ROOT, hexo_post, jekyll_post, write
from tests.service_process import ServiceProcess, wait_for, write_config

pytestmark = pytest.mark.slow
BSE = ["北交所今日发布新规，进一步优化发行上市审核流程，提高审核效率与透明度，支持创新型中小企业。"]
OTHER = ["人民银行今日开展100亿元7天期逆回购操作，中标利率持平，维护银行体系流动性合理充裕。"]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    running = ServiceProcess(write_config(tmp_path)).wait_ready()
    yield running
    running.kill()


def titles(service: ServiceProcess, path: str) -> list[str]:
    response = service.get(path)
    assert response.status_code == 200
    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0
    return [entry.title for entry in parsed.entries]


def stored_items(tmp_path: Path) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-m", "feeds", "items", "--json", "--config", str(tmp_path / "feeds.toml")],  # noqa: E501
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_new_modified_moved_and_deleted_files(service: ServiceProcess, tmp_path: Path) -> None:
    articles = tmp_path / "articles"
    path = write(articles / "a.md", hexo_post("北交所发布新规", BSE))
    wait_for(lambda: titles(service, "/topics/beijiaosuo.atom") == ["北交所发布新规"], what="new")
    write(path, hexo_post("北交所发布新规", [*BSE, "新三板同步调整。"]))
    wait_for(lambda: titles(service, "/topics/xinsanban.rss") == ["北交所发布新规"], what="edit")
    (articles / "moved").mkdir()
    shutil.move(path, articles / "moved" / "a.md")
    wait_for(
        lambda: [i["paths"] for i in stored_items(tmp_path)] == [[str(articles / "moved/a.md")]],
        what="move",
    )
    assert titles(service, "/all.atom") == ["北交所发布新规"]
    (articles / "moved" / "a.md").unlink()
    wait_for(lambda: titles(service, "/all.rss") == [], what="delete")
    # one render publishes its feeds one after the other: the topic's may land a moment later
    wait_for(lambda: titles(service, "/topics/beijiaosuo.rss") == [], what="delete (topic)")


def test_rewrite_without_change_keeps_the_etag(service: ServiceProcess, tmp_path: Path) -> None:
    path = write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", BSE))
    wait_for(lambda: titles(service, "/topics/beijiaosuo.atom") == ["北交所发布新规"], what="item")
    etag = service.get("/topics/beijiaosuo.atom").headers["etag"]
    write(path, path.read_text("utf-8"), mtime=2_000_000_000)  # same content, new mtime
    # a second, unrelated file tells us when the service has handled the rewrite's batch
    write(tmp_path / "articles" / "marker.md", jekyll_post("央行逆回购", OTHER))
    wait_for(lambda: "央行逆回购" in titles(service, "/all.atom"), what="marker")
    assert service.get("/topics/beijiaosuo.atom").headers["etag"] == etag


def test_conditional_get_gzip_and_traversal(service: ServiceProcess, tmp_path: Path) -> None:
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", BSE))
    wait_for(lambda: titles(service, "/all.rss") == ["北交所发布新规"], what="item")
    first = service.get("/all.rss")
    assert first.headers["content-type"] == "application/rss+xml; charset=utf-8"
    assert service.get("/all.rss", **{"If-None-Match": first.headers["etag"]}).status_code == 304
    since = first.headers["last-modified"]
    assert service.get("/all.rss", **{"If-Modified-Since": since}).status_code == 304
    zipped = service.get("/all.rss", **{"Accept-Encoding": "gzip"})
    assert zipped.headers.get("content-encoding") == "gzip"
    assert zipped.content == first.content  # httpx decodes; the bytes match the original
    for attack in ("/../feeds.toml", "/%2e%2e/feeds.toml", "/topics/..%2f..%2ffeeds.toml"):
        with socket_get(service.port, attack) as status:
            assert status == 404
    assert service.get("/topics/").status_code == 404


class socket_get:
    """Send a raw request line (httpx would normalize the path) and return the status."""

    def __init__(self, port: int | None, path: str) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port or 0), timeout=5)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        self.status = int(self.sock.recv(64).split()[1])

    def __enter__(self) -> int:
        return self.status

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_burst_of_2000_files(service: ServiceProcess, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    for n in range(2000):
        text = jekyll_post(
            f"批量消息{n}", [f"第{n}条：北交所公司公告，第{n}期项目顺利推进。"], link=None
        )
        write(staging / f"2024-05-14-{n}.md", text)
    os.rename(staging, tmp_path / "articles" / "burst")  # dropped at once
    wait_for(lambda: service.health()["items"] == 2000, timeout=120, what="2000 items")
    code, _ = service.stop()
    assert code == 0
    items = stored_items(tmp_path)
    assert len(items) == 2000
    assert len({i["id"] for i in items}) == 2000
    assert sorted(len(i["paths"]) for i in items) == [1] * 2000  # type: ignore[arg-type]


def test_sigterm_exits_zero_quickly(service: ServiceProcess) -> None:
    code, seconds = service.stop(signal.SIGTERM)
    assert code == 0
    assert seconds < 10
    assert any("stopped" in line for line in service.log)


def test_healthz_is_ok_while_the_start_up_scan_catches_up(tmp_path: Path) -> None:
    """A liveness probe must not kill a service that is reading a large archive at start:
    the feeds already written are served meanwhile."""
    config = write_config(tmp_path)
    for n in range(3000):
        write(tmp_path / "articles" / f"{n:04d}.md", hexo_post(f"第{n}号快讯", [f"第{n}号正文。"]))
    service = ServiceProcess(config)
    try:
        wait_for(lambda: service.port is not None, what="the server")
        answer = service.get("/healthz")
        body = answer.json()
        assert body["last_scan"] is None, "caught up before the first look: make the archive larger"
        assert (answer.status_code, body["status"], body["catching_up"]) == (200, "ok", True)
        service.wait_ready(timeout=120)
        assert "catching_up" not in service.health()
    finally:
        assert service.stop()[0] == 0


READY = (
    "ready: 1 item(s) from 1 article folder(s), 1 rejected file(s) (feeds errors); "
    "watching for changes, full rescan every 600s"
)


def test_start_logs_what_it_serves_and_config_references_that_cannot_work(
    tmp_path: Path,
) -> None:
    hook = '[[webhooks]]\nname = "desk"\nurl = "http://127.0.0.1:9/"\ntopics = ["beijiaosou"]\n'
    config = write_config(tmp_path, hook)
    story = hexo_post("北交所启动测试", ["北交所今日开市，一切正常。"])
    write(tmp_path / "articles" / "a.md", story)
    write(tmp_path / "articles" / "broken.md", "---\ntitle: [\n---\n")
    running = ServiceProcess(config).wait_ready()
    try:
        assert running.health()["status"] == "ok"  # it runs: the rest works
        wait_for(lambda: any(line.endswith(READY) for line in running.log), what="ready line")
        assert any(
            "config webhooks.desk.topics: 'beijiaosou' is not a configured topic" in line
            and "did you mean 'beijiaosuo'?" in line
            for line in running.log
        )
    finally:
        running.stop()


def test_kill9_during_ingest_then_restart_is_consistent(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    for n in range(1500):
        text = hexo_post(f"崩溃测试{n}", [f"第{n}条消息：某公司披露第{n}号公告，业务进展正常。"])
        write(tmp_path / "articles" / f"{n}.md", text)
    first = ServiceProcess(config)
    wait_for(lambda: first.port is not None, what="port")
    wait_for(lambda: stored_count(tmp_path) > 0, what="the first committed chunk")
    first.proc.send_signal(signal.SIGKILL)  # mid-ingest: chunks of 256 files per transaction
    first.proc.wait(timeout=10)
    with sqlite3.connect(tmp_path / "state" / "feeds.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for path in (tmp_path / "output").rglob("*.rss"):
        assert feedparser.parse(path.read_bytes()).bozo == 0
    second = ServiceProcess(config).wait_ready(timeout=90)
    assert second.health()["items"] == 1500
    code, _ = second.stop()
    assert code == 0
    items = stored_items(tmp_path)
    assert len(items) == 1500 and len({i["title"] for i in items}) == 1500


def stored_count(tmp_path: Path) -> int:
    try:
        with sqlite3.connect(tmp_path / "state" / "feeds.db", timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM files").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_restart_does_not_reread_unchanged_files(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", BSE))
    first = ServiceProcess(config).wait_ready()
    assert first.stop()[0] == 0
    output = {p: p.stat().st_mtime_ns for p in (tmp_path / "output").rglob("*") if p.is_file()}
    second = ServiceProcess(config).wait_ready()
    metrics = second.get("/metrics").text
    assert second.stop()[0] == 0
    assert "feeds_files_seen_total 1.0" in metrics  # stat says unchanged: counted, not read
    assert "feeds_items_new_total 0.0" in metrics
    assert {p: p.stat().st_mtime_ns for p in output} == output


def test_health_and_metrics(service: ServiceProcess) -> None:
    health = service.health()
    assert health["status"] == "ok" and health["files_pending"] == 0
    assert health["alert_backlog"] == 0
    metrics = service.get("/metrics").text
    assert "feeds_ingest_seconds_bucket" in metrics


def test_health_turns_degraded_when_nothing_new_arrives(tmp_path: Path) -> None:
    """A dead scraper or an unmounted archive shows: no new item for quiet_after_hours."""
    config = write_config(tmp_path)
    text = config.read_text("utf-8").replace(
        "[service]\n", "[service]\nquiet_after_hours = 0.001\n"
    )
    config.write_text(text, "utf-8")  # 3.6 s
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", BSE, outlet="证券时报"))
    service = ServiceProcess(config).wait_ready()
    try:
        first = service.health()
        assert first["status"] == "ok" and first["newest_item"] is not None
        wait_for(lambda: service.health()["status"] == "degraded", timeout=15, what="degraded")
        assert "no new item for" in str(service.health()["quiet"])
        write(
            tmp_path / "articles" / "b.md",
            hexo_post("新三板挂牌", OTHER, outlet="证券时报", date="Wed, 15 May 2024 08:00:00 GMT"),
        )
        wait_for(lambda: service.health()["status"] == "ok", timeout=15, what="ok again")
        assert "quiet" not in service.health()
        metrics = service.get("/metrics").text
    finally:
        assert service.stop()[0] == 0
    assert "feeds_newest_item_timestamp_seconds" in metrics
    slug = next(p.stem for p in (tmp_path / "output" / "sources").glob("*.rss"))
    line = next(
        m for m in metrics.splitlines()
        if m.startswith(f'feeds_source_newest_article_timestamp_seconds{{source="{slug}"}}')
    )  # fmt: skip
    published = datetime.fromtimestamp(float(line.split()[-1]), UTC)
    assert published == max(stored_published(tmp_path))


def stored_published(tmp_path: Path) -> list[datetime]:
    return [datetime.fromisoformat(str(item["published"])) for item in stored_items(tmp_path)]


def test_gzip_body_is_really_gzip(service: ServiceProcess) -> None:
    import httpx

    with httpx.stream("GET", service.url("/index.html"), headers={"Accept-Encoding": "gzip"}) as r:
        raw = b"".join(r.iter_raw())
    assert gzip.decompress(raw).startswith(b"<!DOCTYPE html>")


def test_no_http_mode_still_builds(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", BSE))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "service.py"), "--config", str(config), "--no-http"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: (tmp_path / "output" / "topics" / "beijiaosuo.atom").exists(), what="out")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_sighup_reloads_the_config_and_ignores_a_broken_one(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", BSE))
    service = ServiceProcess(config).wait_ready()
    try:
        pid = service.proc.pid
        config.write_text(
            config.read_text("utf-8")
            + '[[topics]]\nname = "审核"\nslug = "shenhe"\nkeywords = ["审核"]\n',
            "utf-8",
        )
        service.port = None
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: service.port is not None, what="restart after SIGHUP")
        service.wait_ready()
        assert service.proc.pid == pid  # restarted in place
        assert titles(service, "/topics/shenhe.atom") == ["北交所发布新规"]
        config.write_text("this is [not toml", "utf-8")
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: any("SIGHUP ignored" in line for line in service.log), what="refusal")
        assert service.get("/topics/shenhe.atom").status_code == 200
        assert service.proc.poll() is None
    finally:
        assert service.stop()[0] == 0


def test_a_taken_port_is_one_clear_line(tmp_path: Path) -> None:
    import socket

    config = write_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, str(ROOT / "service.py"), "--config", str(config)]
        done = subprocess.run(
            [*command, "--port", str(port)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"feeds: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "another address with --port" in done.stderr  # and what to do about it
    assert "Traceback" not in done.stderr


def refusals(service: ServiceProcess) -> int:
    return sum("could not start" in line for line in service.log)


def test_sighup_keeps_the_service_when_the_new_config_could_not_start(tmp_path: Path) -> None:
    """Valid but unusable (state or output path taken by a plain file): the old one stays."""
    config = write_config(tmp_path)
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", BSE))
    write(tmp_path / "plainfile", "not a folder")
    service = ServiceProcess(config).wait_ready()
    original = config.read_text("utf-8")
    try:
        for key, value in (("state", "plainfile/feeds.db"), ("output", "plainfile/out")):
            config.write_text(original.replace(f'{key} = "', f'{key} = "{value}"\n#', 1), "utf-8")
            sighup_refused(service, key)
            assert "plainfile" in service.log[-1]
            assert titles(service, "/all.atom") == ["北交所发布新规"]
            assert service.proc.poll() is None
    finally:
        assert service.stop()[0] == 0


def sighup_refused(service: ServiceProcess, what: str) -> None:
    before = refusals(service)
    os.kill(service.proc.pid, signal.SIGHUP)
    wait_for(lambda: refusals(service) > before, what=f"refusal of {what}")


def test_metrics_are_current_without_asking_healthz(
    service: ServiceProcess, tmp_path: Path
) -> None:
    """Prometheus scrapes /metrics only: the gauges must not wait for a /healthz call."""
    articles = tmp_path / "articles"
    write(articles / "a.md", hexo_post("北交所发布新规", BSE))
    write(articles / "b.md", hexo_post("新三板挂牌", OTHER, date="Wed, 15 May 2024 08:00:00 GMT"))
    write(articles / "broken.md", "---\ntitle: [unclosed\n---\n正文\n")
    write(
        articles / "draft.md",
        hexo_post("草稿", OTHER, extra="").replace("---\n\n", "draft: true\n---\n\n", 1),
    )
    wait_for(lambda: len(titles(service, "/all.rss")) == 2, what="two items")
    wait_for(lambda: 'feeds_rejected_files{kind="draft"} 1.0' in service.get("/metrics").text,
             what="the draft counted")  # fmt: skip
    metrics = service.get("/metrics").text.splitlines()
    assert "feeds_items 2.0" in metrics
    assert 'feeds_rejected_files{kind="error"} 1.0' in metrics
    assert "feeds_files_pending 0.0" in metrics and "feeds_alert_backlog 0.0" in metrics
    assert any(line.startswith("feeds_newest_item_timestamp_seconds ") for line in metrics)


def test_items_stored_while_feeds_cannot_be_written_count_as_arrived(
    service: ServiceProcess, tmp_path: Path
) -> None:
    assert service.health()["newest_item"] is None
    shutil.rmtree(tmp_path / "output")
    write(tmp_path / "output", "a file where the output folder was")
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", BSE))
    wait_for(lambda: "last_error" in service.health(), what="the failed render")
    assert "cannot write to" in service.health()["last_error"]
    assert service.health()["newest_item"] is not None  # stored, so it arrived


def test_article_folder_missing_at_start_is_watched_once_it_appears(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    articles = tmp_path / "articles"
    articles.rmdir()  # e.g. on a share not mounted yet
    backup = write(tmp_path / "backup" / "a.md", hexo_post("北交所发布新规", BSE)).parent
    service = ServiceProcess(config).wait_ready()
    try:
        assert service.health()["unwatched_roots"] == [str(articles)]
        shutil.copytree(backup, articles)
        wait_for(lambda: titles(service, "/all.rss") == ["北交所发布新规"], timeout=12,
                 what="the files of the folder that appeared")  # fmt: skip
        assert "unwatched_roots" not in service.health()
        write(articles / "b.md", jekyll_post("央行逆回购", OTHER))
        wait_for(lambda: "央行逆回购" in titles(service, "/all.rss"), timeout=5,
                 what="a file written into it later (no rescan due for 600 s)")  # fmt: skip
    finally:
        assert service.stop()[0] == 0
    assert any(" INFO " in line and str(articles) in line for line in service.log)


def test_article_folder_removed_and_restored_is_watched_again(
    service: ServiceProcess, tmp_path: Path
) -> None:
    articles = tmp_path / "articles"
    write(articles / "a.md", hexo_post("北交所发布新规", BSE))
    wait_for(lambda: titles(service, "/all.rss") == ["北交所发布新规"], what="item")
    backup = tmp_path / "backup"
    shutil.copytree(articles, backup)
    shutil.rmtree(articles)
    wait_for(lambda: service.health().get("unwatched_roots") == [str(articles)],
             what="the missing folder in /healthz")  # fmt: skip
    shutil.copytree(backup, articles)
    wait_for(lambda: "unwatched_roots" not in service.health(), timeout=12, what="watched again")
    write(articles / "b.md", jekyll_post("央行逆回购", OTHER))
    both = sorted(["北交所发布新规", "央行逆回购"])
    wait_for(lambda: sorted(titles(service, "/all.rss")) == both, timeout=5,
             what="the restored file and a file written later")  # fmt: skip


def test_file_written_slowly_is_published_once_complete(
    service: ServiceProcess, tmp_path: Path
) -> None:
    """A scraper writing front matter, then paragraphs, through one handle, 1.5 s apart."""
    text = hexo_post("北交所发布新规", [*BSE, "新三板同步调整。"])
    front, body = text.split("---\n\n", 1)  # the front matter, not yet closed
    cut = body.index("新三板")
    with (tmp_path / "articles" / "slow.md").open("w", encoding="utf-8") as handle:
        for part in (front, "---\n\n" + body[:cut], body[cut:]):
            handle.write(part)
            handle.flush()
            time.sleep(1.5)
    wait_for(lambda: titles(service, "/topics/xinsanban.rss") == ["北交所发布新规"],
             what="the whole article")  # fmt: skip
    metrics = service.get("/metrics").text.splitlines()
    assert "feeds_files_rejected_total 0.0" in metrics  # never seen half-written
    assert "feeds_items_new_total 1.0" in metrics
    assert "feeds_items_updated_total 0.0" in metrics


def test_renaming_a_folder_does_not_unpublish_its_items(
    service: ServiceProcess, tmp_path: Path
) -> None:
    articles, staging = tmp_path / "articles", tmp_path / "staging"
    for n in range(1000):
        text = jekyll_post(
            f"批量消息{n}", [f"第{n}条：北交所公司公告，第{n}期项目顺利推进。"], link=None
        )
        write(staging / f"2024-05-14-{n}.md", text)
    os.rename(staging, articles / "batchA")
    wait_for(lambda: service.health()["items"] == 1000, timeout=120, what="1000 items")
    ids = {item["id"] for item in stored_items(tmp_path)}
    os.rename(articles / "batchA", articles / "batchA-renamed")
    renamed = str(articles / "batchA-renamed") + os.sep

    def moved() -> bool:
        items = stored_items(tmp_path)
        return all(str(path).startswith(renamed) for i in items for path in i["paths"])  # type: ignore[attr-defined]

    wait_for(moved, timeout=60, what="every item under the new folder name")
    metrics = service.get("/metrics").text.splitlines()
    assert "feeds_items_removed_total 0.0" in metrics  # not even for a moment
    assert {item["id"] for item in stored_items(tmp_path)} == ids


def test_without_a_base_url_the_links_follow_the_port_it_serves_on(tmp_path: Path) -> None:
    """`feeds run --port P` with no base_url: the index, the OPML list and the feeds link to
    port P (they named 8080, where nothing answers)."""
    import socket

    config = write_config(tmp_path)
    config.write_text(config.read_text("utf-8").replace('base_url = "http://127.0.0.1/"', ""))
    write(tmp_path / "articles" / "a.md", hexo_post("北交所新规", ["北交所发布新规。"]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = ServiceProcess(config, "--port", str(port)).wait_ready()
    try:
        base = f"http://127.0.0.1:{port}/"
        index = service.get("/").text
        assert f'href="{base}all.atom"' in index and f'href="{base}feeds.opml"' in index
        feed = feedparser.parse(service.get("/all.rss").content).feed
        assert {link.rel: link.href for link in feed.links}["self"] == f"{base}all.rss"
        opml = service.get("/feeds.opml").text
        assert f'xmlUrl="{base}topics/beijiaosuo.rss"' in opml
        assert service.get("/topics/beijiaosuo.rss").status_code == 200
    finally:
        assert service.stop()[0] == 0


def zombie_children(pid: int) -> list[int]:
    """Children of ``pid`` that ended and were never reaped (state Z)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == pid and state == "Z":
            found.append(int(entry.name))
    return found


def test_sighup_after_a_big_batch_leaves_no_zombie_helpers(tmp_path: Path) -> None:
    """A batch of 400+ files starts the parser pool's forkserver (and multiprocessing's resource
    tracker) as children of the service; a restart in place must not leave them unreaped."""
    config = write_config(tmp_path)
    for n in range(400):
        write(tmp_path / "articles" / f"{n:03d}.md", hexo_post(f"第{n}号快讯：北交所新规", BSE))
    service = ServiceProcess(config, "--workers", "2").wait_ready(timeout=60)
    try:
        pid = service.proc.pid
        service.port = None
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: service.port is not None, what="restart after SIGHUP")
        service.wait_ready()
        time.sleep(0.5)  # the old helpers saw their pipes close at the exec and have ended
        assert zombie_children(pid) == []
    finally:
        assert service.stop()[0] == 0
