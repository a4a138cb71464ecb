"""WebSub: feeds name their hubs (in the XML and the Link header), and hubs are told, over real
HTTP on 127.0.0.1, which feeds changed: by `feeds build` and by the running service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs

import feedparser
import httpx
import pytest

from feeds.cli import main
from feeds.config import Config
from feeds.model import FeedKey, FeedMeta, Site
from feeds.render import render_atom, render_rss
from feeds.websub import (
    FIRST_RETRY_SECONDS,
    HubNotifier,
    changed_feed_urls,
    unreachable_from_hubs,
)
from tests.alert_helpers import HostileReceiver, Receiver, Reply
from tests.conftest import hexo_post, jekyll_post, write
from tests.service_process import ServiceProcess, wait_for, write_config

HUB = "https://hub.example.com/"
OTHER_HUB = "https://websub.example.net/publish"
BSE = ["北交所今日发布新规，进一步优化发行上市审核流程，提高审核效率与透明度，支持创新型中小企业。"]
OTHER = ["人民银行今日开展100亿元7天期逆回购操作，中标利率持平，维护银行体系流动性合理充裕。"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hub() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.stop()


def pinged(hub: Receiver, *, accepted_only: bool = True) -> list[str]:
    """The feed URLs the hub was told about, in order (each request a valid publish ping)."""
    urls = []
    for request in hub.accepted if accepted_only else hub.received:
        form = parse_qs(request.body.decode())
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert form["hub.mode"] == ["publish"]
        assert len(form["hub.url"]) == 1
        urls.append(form["hub.url"][0])
    return urls


# --- discovery ---------------------------------------------------------------------------------


@pytest.mark.parametrize("render", [render_rss, render_atom])
def test_feeds_name_their_hubs_and_keep_their_links(render: Callable[..., bytes]) -> None:
    meta = FeedMeta(FeedKey("topic", "beijiaosuo"), "财经新闻 · 北交所", "主题：北交所")
    site = Site("https://feeds.example.org/", "财经新闻", "test", hubs=(HUB, OTHER_HUB))
    parsed = feedparser.parse(render(meta, [], site))
    assert parsed.bozo == 0
    links = [(link.rel, link.href) for link in parsed.feed.links]
    assert [href for rel, href in links if rel == "hub"] == [HUB, OTHER_HUB]
    suffix = "rss" if render is render_rss else "atom"
    self_url = f"https://feeds.example.org/topics/beijiaosuo.{suffix}"
    assert [href for rel, href in links if rel == "self"] == [self_url]
    assert parsed.feed.link == "https://feeds.example.org/index.html"  # not a hub's URL


@pytest.mark.parametrize("render", [render_rss, render_atom])
def test_feeds_without_hubs_name_none(render: Callable[..., bytes]) -> None:
    meta = FeedMeta(FeedKey("all"), "财经新闻", "all")
    data = render(meta, [], Site("https://feeds.example.org/", "财经新闻", "test"))
    assert b'rel="hub"' not in data


def test_a_hub_is_an_absolute_http_url(make_config: Callable[..., Config]) -> None:
    assert make_config(websub={"hubs": [HUB]}).websub.hubs == (HUB,)
    for bad in (["hub.example.com"], ["ftp://hub.example.com/"], [HUB, HUB]):
        with pytest.raises(Exception, match="hub"):
            make_config(websub={"hubs": bad})


def test_changed_feed_urls_are_the_feeds_among_written_files() -> None:
    written = ["all.rss", "index.html", "sources/cls.atom", "feeds.opml", "topics/xsb.rss"]
    assert changed_feed_urls("https://f.example.org/", written) == [
        "https://f.example.org/all.rss",
        "https://f.example.org/sources/cls.atom",
        "https://f.example.org/topics/xsb.rss",
    ]


# --- the notifier against a real hub -----------------------------------------------------------


def test_every_hub_is_told_of_every_changed_feed_once(hub: Receiver) -> None:
    feeds = ["https://f.example.org/all.rss", "https://f.example.org/all.atom"]
    with httpx.Client() as client:
        notifier = HubNotifier([hub.url("/a"), hub.url("/b")], client)
        notifier.changed(feeds)
        notifier.changed(feeds[:1])  # changed again before the ping went: one ping
        assert notifier.pending == 4
        report = notifier.send_due()
    assert (report.sent, report.retrying, report.refused) == (4, [], [])
    assert notifier.pending == 0
    assert sorted(zip([r.path for r in hub.received], pinged(hub), strict=True)) == sorted(
        (path, feed) for path in ("/a", "/b") for feed in feeds
    )


def test_a_failing_hub_is_retried_with_backoff(hub: Receiver) -> None:
    clock = Clock()
    hub.reply(Reply(503, "busy"), Reply(503, "busy"))
    with httpx.Client() as client:
        notifier = HubNotifier([hub.url()], client, clock=clock)
        notifier.changed(["https://f.example.org/all.rss"])
        first = notifier.send_due()
        assert first.sent == 0 and "HTTP 503" in first.retrying[0][2]
        assert notifier.next_due() == clock.now + FIRST_RETRY_SECONDS
        assert notifier.send_due().sent == 0 and len(hub.received) == 1  # not due yet
        clock.now += FIRST_RETRY_SECONDS
        assert notifier.send_due().retrying  # second failure: the wait doubles
        assert notifier.next_due() == clock.now + 2 * FIRST_RETRY_SECONDS
        clock.now += 2 * FIRST_RETRY_SECONDS
        assert notifier.send_due().sent == 1
    assert notifier.pending == 0
    assert [r.status for r in hub.received] == [503, 503, 200]


@pytest.mark.parametrize("status", [202, 500])
def test_an_endless_answer_of_a_hub_is_not_read_to_its_end(status: int) -> None:
    hub = HostileReceiver(b"busy " * 13_000, pace=0, status=status)
    try:
        with httpx.Client() as client:
            notifier = HubNotifier([f"http://127.0.0.1:{hub.port}/"], client, timeout=5)
            notifier.changed(["https://f.example.org/all.rss"])
            report = notifier.send_due()
        assert hub.done.wait(60)
        assert hub.written < 64 * 1024 * 1024  # before: all of it, 256 MiB, held in memory
        if status == 202:
            assert report.sent == 1
        else:
            assert report.retrying[0][2].startswith("HTTP 500 busy busy")
    finally:
        hub.close()


def test_an_unreachable_hub_is_retried_and_a_refusing_one_is_not(hub: Receiver) -> None:
    hub.reply(Reply(400, "unknown topic"))
    dead = "http://127.0.0.1:9/"  # discard port: connection refused
    with httpx.Client() as client:
        notifier = HubNotifier([hub.url(), dead], client, timeout=2)
        notifier.changed(["https://f.example.org/all.rss"])
        report = notifier.send_due()
    refused = [(h, reason) for h, _, reason in report.refused]
    assert refused == [(hub.url(), "HTTP 400 unknown topic")]
    assert [h for h, _, _ in report.retrying] == [dead]
    assert notifier.pending == 1  # only the unreachable hub's ping waits


def test_a_failing_hub_costs_one_request_per_round(hub: Receiver) -> None:
    hub.reply(Reply(503, "down"))
    feeds = [f"https://f.example.org/sources/s{n}.rss" for n in range(5)]
    with httpx.Client() as client:
        notifier = HubNotifier([hub.url()], client)
        notifier.changed(feeds)
        report = notifier.send_due()
    assert len(hub.received) == 1  # not five: the others wait for the same retry
    assert [url for _, url, _ in report.retrying] == feeds
    assert notifier.pending == 5


def client_doing(*actions: Callable[[], object]) -> httpx.Client:
    """A client that runs the next of ``actions`` when a response arrives (what the service does
    meanwhile, on another thread); nothing once they are used up."""
    pending = list(actions)

    def next_action(response: httpx.Response) -> None:
        if pending:
            pending.pop(0)()

    return httpx.Client(event_hooks={"response": [next_action]})


def test_stopping_ends_a_round_after_the_ping_in_flight(hub: Receiver) -> None:
    with client_doing(lambda: notifier.stop()) as client:  # shutting down meanwhile
        notifier = HubNotifier([hub.url()], client)
        notifier.changed([f"https://f.example.org/sources/s{n}.rss" for n in range(5)])
        assert notifier.send_due().sent == 1
    assert len(hub.received) == 1 and notifier.pending == 4


def test_a_feed_changed_during_its_ping_is_pinged_again(hub: Receiver) -> None:
    feed = "https://f.example.org/all.atom"
    with client_doing(lambda: notifier.changed([feed])) as client:  # rendered again meanwhile
        notifier = HubNotifier([hub.url()], client)
        notifier.changed([feed])
        assert notifier.send_due().sent == 1
        assert notifier.pending == 1
        assert notifier.send_due().sent == 1
    assert pinged(hub) == [feed, feed]


# --- feeds build -------------------------------------------------------------------------------


def test_build_pings_the_hubs_for_the_feeds_it_changed(
    tmp_path: Path, hub: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, f'[websub]\nhubs = ["{hub.url()}"]\n')
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", BSE))
    assert main(["build", "--config", str(config), "--workers", "1"]) == 0
    base = "http://127.0.0.1/"
    first = sorted(pinged(hub))
    assert f"{base}all.rss" in first and f"{base}topics/beijiaosuo.atom" in first
    assert all(url.endswith((".rss", ".atom")) for url in first)
    assert "websub: " in capsys.readouterr().out
    assert main(["build", "--config", str(config), "--workers", "1"]) == 0
    assert sorted(pinged(hub)) == first  # nothing changed: no ping

    write(tmp_path / "articles" / "b.md", jekyll_post("央行开展逆回购", OTHER))
    assert main(["build", "--config", str(config), "--workers", "1", "--no-ping"]) == 0
    assert sorted(pinged(hub)) == first
    write(tmp_path / "articles" / "c.md", jekyll_post("央行再次开展逆回购", OTHER))
    assert main(["build", "--config", str(config), "--workers", "1"]) == 0
    latest = pinged(hub)[len(first) :]  # c.md's outlet and "all"; no topic changed
    outlet = [url for url in latest if url.startswith(f"{base}sources/")]
    assert len({url.rsplit(".", 1)[0] for url in outlet}) == 1 and len(outlet) == 2
    assert sorted(set(latest) - set(outlet)) == [f"{base}all.atom", f"{base}all.rss"]


def test_build_survives_a_dead_hub(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, '[websub]\nhubs = ["http://127.0.0.1:9/"]\n')
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", BSE))
    assert main(["build", "--config", str(config), "--workers", "1"]) == 0
    assert (tmp_path / "output" / "all.rss").exists()
    assert "websub: 0 hub ping(s) sent" in capsys.readouterr().out


# --- the service ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_service_pings_hubs_and_serves_discovery_links(tmp_path: Path, hub: Receiver) -> None:
    config = write_config(tmp_path, f'[websub]\nhubs = ["{hub.url()}"]\n')
    service = ServiceProcess(config).wait_ready()
    try:
        write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", BSE))
        base = "http://127.0.0.1/"
        wait_for(lambda: f"{base}topics/beijiaosuo.atom" in pinged(hub), what="ping")
        response = service.get("/topics/beijiaosuo.atom")
        assert response.headers["link"] == (
            f'<{hub.url()}>; rel="hub", <{base}topics/beijiaosuo.atom>; rel="self"'
        )
        assert "link" not in service.get("/index.html").headers
        wait_for(lambda: service.health()["websub_pending"] == 0,
                 what="no ping left")  # fmt: skip
        metrics = service.get("/metrics").text
        assert 'feeds_websub_pings_total{result="ok"}' in metrics
    finally:
        service.kill()


@pytest.mark.parametrize(
    ("base_url", "reachable"),
    [
        ("https://feeds.example.org/", True),
        ("http://8.8.8.8:8080/", True),
        ("http://127.0.0.1:8080/", False),
        ("http://localhost/", False),
        ("http://10.1.2.3/", False),
        ("http://[::1]:8080/", False),
        ("http://nas.local/", False),
    ],
)
def test_a_base_url_hubs_cannot_fetch_is_named(base_url: str, reachable: bool) -> None:
    assert (unreachable_from_hubs(base_url) is None) is reachable


def test_check_config_warns_when_hubs_cannot_fetch_the_feeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, f'[websub]\nhubs = ["{HUB}"]\n')  # base_url is 127.0.0.1
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "warning: websub.hubs: hubs are set, but base_url address 127.0.0.1" in out
