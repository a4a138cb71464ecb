"""WebSub publishing: tell each configured hub which feeds changed.

Every feed names its hubs (``render``); a reader that subscribes through a hub (FreshRSS,
Inoreader, …) gets new entries pushed seconds after a feed changes instead of at its next poll.
The W3C Recommendation leaves "informing the hub" to the hub; the form every public hub takes
is a POST of ``hub.mode=publish`` and ``hub.url=<feed URL>``, one feed per request here (not
every hub takes several ``hub.url`` in one).

Pings are kept in memory, one per (hub, feed): a feed that changes again before its ping is
sent is pinged once. A hub that fails (network, 5xx, 408, 429) is tried again with backoff,
for as long as the process lives; a hub that refuses a ping (other 4xx) is not asked again
about that change. A ping lost to a restart only delays the push: the hub learns of the feed's
next change, and readers still poll.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from feeds.http_answer import read_answer
from feeds.model import FEED_SUFFIXES

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger("feeds.websub")
TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS = 30.0
MAX_RETRY_SECONDS = 1800.0
_RETRIED_STATUSES = frozenset({408, 425, 429})
_USER_AGENT = "feeds (WebSub publisher)"
_REASON_BYTES = 4096  # of a refusing hub's answer, read for the log line
JOB_ID = "websub"


def unreachable_from_hubs(base_url: str) -> str | None:
    """Why a hub could not fetch feeds under ``base_url`` (a loopback or private address),
    or None. Hubs fetch the feed they are told about: a ping naming such a URL does nothing."""
    host = urlsplit(base_url).hostname or ""
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".lan")):
        return f"base_url host {host!r} is not reachable from a public hub"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not address.is_global:
        return f"base_url address {host} is not reachable from a public hub"
    return None


def changed_feed_urls(base_url: str, written: Iterable[str]) -> list[str]:
    """The URLs of the feeds among the files just written (relative paths)."""
    return [base_url + path for path in written if path.endswith(FEED_SUFFIXES)]


@dataclass(slots=True)
class _Ping:
    due: float
    attempts: int = 0
    version: int = 0  # bumped when the feed changes again (also while a ping is in flight)


@dataclass(slots=True)
class PingReport:
    sent: int = 0
    retrying: list[tuple[str, str, str]] = field(default_factory=list)  # hub, feed, reason
    refused: list[tuple[str, str, str]] = field(default_factory=list)


class HubNotifier:
    """Pending pings and their delivery. ``changed`` may be called from any thread;
    ``send_due`` from one thread at a time."""

    def __init__(
        self,
        hubs: Sequence[str],
        client: httpx.Client,
        *,
        timeout: float = TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hubs = tuple(hubs)
        self.client = client
        self.timeout = timeout
        self.clock = clock
        self._pings: dict[tuple[str, str], _Ping] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pings)

    def changed(self, feed_urls: Iterable[str]) -> int:
        """Queue a ping of every hub for each feed; returns how many pings are pending."""
        now = self.clock()
        with self._lock:
            for url in feed_urls:
                for hub in self.hubs:
                    ping = self._pings.get((hub, url))
                    if ping is None:
                        self._pings[(hub, url)] = _Ping(due=now)
                    else:  # keeps its backoff if its hub is failing
                        ping.version += 1
            return len(self._pings)

    def next_due(self) -> float | None:
        """When the earliest pending ping is due (on ``clock``), or None."""
        with self._lock:
            return min((ping.due for ping in self._pings.values()), default=None)

    def send_due(self) -> PingReport:
        """Send every due ping. A hub that fails one is not asked again in this round (its
        other due pings wait for the same retry): a hub that hangs costs one timeout, not one
        per feed. ``stop()`` ends the round after the ping in flight."""
        report = PingReport()
        now = self.clock()
        with self._lock:
            due = [(key, ping.version) for key, ping in self._pings.items() if ping.due <= now]
        failing: dict[str, str] = {}
        for (hub, url), version in due:
            if self._stopping.is_set():
                break
            reason: str | None
            if hub in failing:
                retry, reason = True, failing[hub]
            else:
                retry, reason = self._publish(hub, url)
                if reason is not None and retry:
                    failing[hub] = reason
            self._settle(hub, url, version, retry=retry, failed=reason is not None)
            if reason is None:
                report.sent += 1
            else:
                (report.retrying if retry else report.refused).append((hub, url, reason))
        _log_failures(report)
        return report

    def stop(self) -> None:
        """Make a ``send_due`` running in another thread return soon (at shutdown)."""
        self._stopping.set()

    def _settle(self, hub: str, url: str, version: int, *, retry: bool, failed: bool) -> None:
        with self._lock:
            ping = self._pings[(hub, url)]
            if failed and retry:
                ping.attempts += 1
                backoff = FIRST_RETRY_SECONDS * 2 ** (ping.attempts - 1)
                ping.due = self.clock() + min(backoff, MAX_RETRY_SECONDS)
            elif ping.version == version:
                del self._pings[(hub, url)]
            else:  # changed again while this ping was in flight: ping again
                ping.attempts, ping.due = 0, self.clock()

    def _publish(self, hub: str, url: str) -> tuple[bool, str | None]:
        """(retry?, failure reason or None for success)."""
        deadline = time.monotonic() + self.timeout
        try:
            with self.client.stream(
                "POST",
                hub,
                data={"hub.mode": "publish", "hub.url": url},
                timeout=self.timeout,
                headers={"User-Agent": _USER_AGENT},
            ) as response:
                if response.is_success:
                    return False, None  # the answer is not read
                text = read_answer(response, _REASON_BYTES, deadline)
        except httpx.HTTPError as exc:
            return True, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except TimeoutError:
            return True, f"HTTP {response.status_code}, the answer took over {self.timeout:g} s"
        reason = f"HTTP {response.status_code} {text[:200].strip()}".strip()
        return response.status_code >= 500 or response.status_code in _RETRIED_STATUSES, reason


def _log_failures(report: PingReport) -> None:
    """One line per hub and outcome, not one per feed (a hub that is down fails them all)."""
    for failures, what in ((report.retrying, "will retry"), (report.refused, "refused")):
        by_hub: dict[str, list[tuple[str, str]]] = {}
        for hub, url, reason in failures:
            by_hub.setdefault(hub, []).append((url, reason))
        for hub, pings in by_hub.items():
            url, reason = pings[0]
            log.warning(
                "websub: %d ping(s) to %s %s: %s (first: %s)", len(pings), hub, what, reason, url
            )


class WebSubHooks:
    """The service's side: pings queued after each render, sent by a scheduler job that runs
    at once after a change and every ``FIRST_RETRY_SECONDS`` while pings wait for a retry."""

    def __init__(
        self, base_url: str, hubs: Sequence[str], on_result: Callable[[str, int], None]
    ) -> None:
        self.base_url = base_url
        self.client = httpx.Client(follow_redirects=False)
        self.notifier = HubNotifier(hubs, self.client)
        self.on_result = on_result
        self._scheduler: BackgroundScheduler | None = None

    @property
    def pending(self) -> int:
        return self.notifier.pending

    def changed(self, written: Iterable[str]) -> None:
        urls = changed_feed_urls(self.base_url, written)
        if urls:
            self.notifier.changed(urls)
            if self._scheduler is not None and self._scheduler.running:
                self._scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC))

    def send(self) -> None:
        if not self.notifier.pending:
            return
        report = self.notifier.send_due()
        for result, count in (
            ("ok", report.sent),
            ("retry", len(report.retrying)),
            ("refused", len(report.refused)),
        ):
            if count:
                self.on_result(result, count)

    def schedule(self, scheduler: BackgroundScheduler) -> None:
        self._scheduler = scheduler
        scheduler.add_job(
            self.send,
            "interval",
            seconds=FIRST_RETRY_SECONDS,
            id=JOB_ID,
            next_run_time=datetime.now(UTC),  # what the catch-up before the start changed
        )

    def stop(self) -> None:
        """Before the scheduler's shutdown: a ping round in progress ends after one request."""
        self.notifier.stop()

    def close(self) -> None:
        self.client.close()
