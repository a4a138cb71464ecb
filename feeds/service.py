"""The long-running service: catch up, watch, schedule, serve; stop cleanly on a signal.

Ingest is serialized by one lock: watcher batches and scheduled rescans never run at the same
time, so the store has one writer. Rendering follows each ingest and touches only dirty feeds.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from feeds import preflight
from feeds.config import Config, ConfigError
from feeds.errors import FeedsError
from feeds.ingest import BatchReport, EventSink
from feeds.log import setup_logging
from feeds.outputs import RenderReport
from feeds.pipeline import BuildReport, Pipeline
from feeds.server import Health, ServerThread, create_app, probe_listen
from feeds.store import Store, open_store
from feeds.watch import ArticleWatcher, Batch

if TYPE_CHECKING:
    from feeds.websub import WebSubHooks

log = logging.getLogger("feeds.service")
SHUTDOWN_SECONDS = 8.0
# A rescan leaves files modified within this many seconds to the watcher (a slow writer).
FRESH_FILE_SECONDS = 5.0


class Metrics:
    """Prometheus metrics of one service instance (own registry: tests run several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.files_seen = Counter("feeds_files_seen", "Article files read", registry=r)
        self.rejects = Counter(
            "feeds_files_rejected",
            "Files newly rejected (a new file or a new reason; not a retry failing again)",
            registry=r,
        )
        self.items_new = Counter("feeds_items_new", "Items created", registry=r)
        self.items_updated = Counter("feeds_items_updated", "Items updated", registry=r)
        self.items_removed = Counter("feeds_items_removed", "Items removed", registry=r)
        self.items_restored = Counter(
            "feeds_items_restored",
            "Removed items back (a file restored, a draft published)",
            registry=r,
        )
        self.feeds_written = Counter("feeds_feed_files_written", "Feed files written", registry=r)
        self.build_seconds = Histogram(
            "feeds_ingest_seconds",
            "Time to ingest and render one batch",
            ["trigger"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.deliveries = Counter(
            "feeds_alert_deliveries", "Webhook delivery attempts", ["result"], registry=r
        )
        self.websub_pings = Counter(
            "feeds_websub_pings", "WebSub hub pings", ["result"], registry=r
        )

    def record(self, batch: BatchReport, render: RenderReport) -> None:
        self.files_seen.inc(batch.seen)
        self.rejects.inc(batch.rejected_news)
        self.items_new.inc(batch.new)
        self.items_updated.inc(batch.updated)
        self.items_removed.inc(batch.removed)
        self.items_restored.inc(batch.restored)
        self.feeds_written.inc(len(render.written))


class LiveGauges(Collector):
    """The service's state, read at each scrape of ``/metrics`` (not only when ``/healthz``
    is asked, which a Prometheus that scrapes only ``/metrics`` never does)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        service = self.service
        errors, drafts = service.reader.count_errors()
        yield _gauge("feeds_items", "Items currently in the feeds", service.reader.count_items())
        yield _gauge("feeds_files_pending", "Files waiting to settle", service.watcher.pending)
        yield _gauge("feeds_alert_backlog", "Alerts waiting for delivery", service.alert_backlog())
        rejected = GaugeMetricFamily(
            "feeds_rejected_files", "Files rejected now, by kind", labels=["kind"]
        )
        rejected.add_metric(["error"], errors)
        rejected.add_metric(["draft"], drafts)
        yield rejected
        newest = service.state.newest_item
        if newest is not None:
            yield _gauge(
                "feeds_newest_item_timestamp_seconds",
                "When the newest item was first seen (Unix time)",
                newest.timestamp(),
            )
        # An outlet whose scraper died stops moving (alert on ``time() - …``).
        by_source = GaugeMetricFamily(
            "feeds_source_newest_article_timestamp_seconds",
            "Publication time of each outlet's newest article (Unix time)",
            labels=["source"],
        )
        for slug, newest_article in sorted(service.reader.newest_article_by_source().items()):
            by_source.add_metric([slug], newest_article.timestamp())
        yield by_source


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


@dataclass(slots=True)
class State:
    last_scan: datetime | None = None
    last_error: str | None = None
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    newest_item: datetime | None = None  # when the newest item was first seen


class Service:
    def __init__(
        self, config: Config, *, workers: int | None = None, allow_reissue: bool = False
    ) -> None:
        self.config = config
        self.metrics = Metrics()
        self.state = State()
        self.store: Store = open_store(config.state)
        # /healthz and /metrics read through a connection of their own, from what is committed:
        # a batch holds the writer's connection for its transaction (a catch-up that may
        # re-issue ids, for its whole run: minutes at 100,000 articles) and probes must answer.
        self.reader: Store = open_store(config.state)
        self.state.newest_item = self.store.newest_item_seen()
        self._lock = threading.Lock()
        self._alerts = _alert_hooks(config, self.store, self.metrics)
        self._websub = _websub_hooks(config, self.metrics)
        self.pipeline = Pipeline(
            config,
            self.store,
            workers=workers,
            on_event=self._alerts.sink,
            allow_reissue=allow_reissue,
            keep_file_index=True,
        )
        self.watcher = ArticleWatcher(
            config.articles,
            self.pipeline.accept,
            self.on_batch,
            debounce=config.service.debounce_seconds,
            settle=config.service.settle_seconds,
            on_root_back=self.on_root_back,
        )
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )
        self.server: ServerThread | None = None
        self.metrics.registry.register(LiveGauges(self))

    # -- work ------------------------------------------------------------------------------

    def rescan(self) -> None:
        """Full scan (stat only for unchanged files): catches whatever events were missed.

        Files modified within ``FRESH_FILE_SECONDS`` are left to the watcher (a writer may be
        at work); one more rescan shortly after reads them should the watcher not."""
        self._timed("rescan", self.pipeline.sync)
        if self.pipeline.deferred and self.scheduler.running:
            when = datetime.now(UTC) + timedelta(seconds=FRESH_FILE_SECONDS + 1)
            self.scheduler.add_job(
                self.rescan, "date", run_date=when, id="rescan-fresh", replace_existing=True
            )

    def on_batch(self, batch: Batch) -> None:
        # Ingest applies changed files before gone ones, so a path both re-created and listed
        # as gone (directory replaced) must not be forgotten after being re-read. A path that is
        # there again when the batch is applied is not gone either: its own events tell what it
        # is now, and a deletion seen late (a root removed and restored, then rescanned, or a
        # folder renamed back while its files were read) must not forget it.
        below = {p for folder in batch.gone_dirs for p in self.store.paths_under(folder)}
        gone = sorted((below | batch.gone) - batch.changed)

        def run() -> BuildReport:
            report = self.pipeline.ingest(sorted(batch.changed), gone, only_missing=True)
            return BuildReport(batch=report, render=self.pipeline.render())

        self._timed("watch", run)

    def on_root_back(self, path: str) -> None:
        """An article folder is watched again: files may have arrived while it was not."""
        self.rescan()

    def _timed(self, trigger: str, work: Callable[[], BuildReport]) -> None:
        started = time.perf_counter()
        with self._lock:
            try:
                result = work()
            except FeedsError as exc:
                self.state.last_error = str(exc)
                log.error("%s failed: %s", trigger, exc)
                self._reread_newest_item()
                return
            except Exception as exc:  # the service never dies on a batch
                self.state.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("%s failed", trigger)
                self._reread_newest_item()
                return
        batch, render = result.batch, result.render
        self.metrics.record(batch, render)
        self.metrics.build_seconds.labels(trigger).observe(time.perf_counter() - started)
        if trigger == "rescan":
            self.state.last_scan = datetime.now(UTC)
        if batch.new:
            self.state.newest_item = datetime.now(UTC)
        self.state.last_error = None
        if batch.new or batch.updated or batch.removed or batch.restored or render.written:
            log.info(
                "%s: %d new, %d updated, %d removed, %d restored, %d rejected; %d files written",
                trigger, batch.new, batch.updated, batch.removed, batch.restored,
                len(batch.rejected), len(render.written),
            )  # fmt: skip
        if batch.events:
            self._alerts.wake()
        if render.written:
            self._websub.changed(render.written)

    def _reread_newest_item(self) -> None:
        """After a failed batch: its items may be stored although their feeds were not written
        (output folder gone, disk full), and they count as arrived."""
        with contextlib.suppress(FeedsError, sqlite3.Error):  # the store failed: nothing stored
            self.state.newest_item = self.store.newest_item_seen() or self.state.newest_item

    def rescan_if_events_were_lost(self) -> None:
        self.watcher.check_roots()  # a missing article folder that appeared: watched, rescanned
        if self.watcher.consume_overflow():
            log.warning("file events may have been lost; rescanning now")
            self.rescan()

    def housekeeping(self) -> None:
        with self._lock:
            days = self.config.service.retention_days
            if days:
                cutoff = datetime.now(UTC) - timedelta(days=days)
                with self.store.transaction():
                    pruned = self.store.prune_removed(cutoff)
                if pruned:
                    log.info("housekeeping: forgot %d removed items", pruned)
            self.store.optimize()

    def health(self) -> Health:
        now = datetime.now(UTC)
        stale_after = timedelta(seconds=3 * self.config.service.rescan_seconds + 60)
        last = self.state.last_scan
        # Catching up at start counts from the start: the feeds already there are served, and
        # a liveness probe must not kill a service that is only reading a large archive.
        fresh = now - (last or self.state.started) < stale_after
        backlog = self.alert_backlog()
        count = self.reader.count_items()
        newest = self.state.newest_item
        detail: dict[str, object] = {
            "started": self.state.started.isoformat(),
            "newest_item": newest.isoformat() if newest else None,
        }
        if last is None:
            detail["catching_up"] = True
        if self.state.last_error:
            detail["last_error"] = self.state.last_error
        if self.config.websub.hubs:
            detail["websub_pending"] = self._websub.pending
        unwatched = self.watcher.unwatched_roots
        if unwatched:
            detail["unwatched_roots"] = list(unwatched)
        quiet = self._quiet_for(now)
        if quiet is not None:
            detail["quiet"] = (
                f"no new item for {quiet:.1f} h "
                f"(service.quiet_after_hours = {self.config.service.quiet_after_hours:g})"
            )
        return Health(
            ok=fresh and self.state.last_error is None and quiet is None,
            last_scan=last,
            items=count,
            files_pending=self.watcher.pending,
            alert_backlog=backlog,
            detail=detail,
        )

    def alert_backlog(self) -> int:
        return self.reader.alert_backlog() if self.config.webhooks else 0

    def _quiet_for(self, now: datetime) -> float | None:
        """Hours without a new item, when more than ``service.quiet_after_hours`` (the scrapers
        or the article folder may be gone); None otherwise. Counted from the service's start
        when there is no item yet."""
        limit = self.config.service.quiet_after_hours
        since = self.state.newest_item or self.state.started
        hours = (now - since).total_seconds() / 3600
        return hours if limit and hours > limit else None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, *, host: str, port: int, http: bool) -> None:
        preflight.log_findings(preflight.check(self.config, folders=False), log)
        if http:  # serve what is already there while catching up
            app = create_app(
                self.config.output,
                max_age=self.config.server.max_age,
                health=self.health,
                registry=self.metrics.registry,
                hubs=self.config.websub.hubs,
                base_url=self.config.base_url,
            )
            self.server = ServerThread(app, host, port)
            try:
                self.server.start()
            except OSError as exc:  # an address in use or not ours: one clear line, exit 1
                self.server = None
                raise FeedsError(
                    f"cannot listen on {host}:{port}: {exc.strerror or exc} (give another address"
                    " with --port/--host or [server] port/host, or serve no HTTP: --no-http)"
                ) from exc
            log.info("serving %s on http://%s:%d/", self.config.output, host, self.server.port)
        self.watcher.start()  # events during catch-up queue up behind the lock
        self.rescan()  # the catch-up reads every file: no writer seen at work yet
        self.pipeline.defer_fresh_seconds = FRESH_FILE_SECONDS
        with self._lock:
            self.pipeline.warm()
        interval = self.config.service.rescan_seconds
        self.scheduler.add_job(self.rescan, "interval", seconds=interval, id="rescan")
        self.scheduler.add_job(
            self.rescan_if_events_were_lost, "interval", seconds=10, id="overflow"
        )
        self.scheduler.add_job(self.housekeeping, "interval", hours=6, id="housekeeping")
        self._alerts.schedule(self.scheduler)
        self._websub.schedule(self.scheduler)
        self.scheduler.start()
        self._log_ready()

    def _log_ready(self) -> None:
        """One line an operator can read at start: what is published, what is wrong."""
        items = self.reader.count_items()
        rejected, _drafts = self.reader.count_errors()
        log.info(
            "ready: %d item(s) from %d article folder(s), %d rejected file(s) (feeds errors); "
            "watching for changes, full rescan every %ds",
            items, len(self.config.articles), rejected, self.config.service.rescan_seconds,
        )  # fmt: skip

    def stop(self) -> None:
        log.info("stopping")
        self.watcher.stop(timeout=SHUTDOWN_SECONDS / 2)  # flushes settled changes first
        self._websub.stop()
        self._alerts.stop()
        self.scheduler.shutdown(wait=True)
        if self.server is not None:
            self.server.stop()
        with self._lock:
            self._alerts.close()
            self._websub.close()
            self.store.close()
            self.reader.close()
        log.info("stopped")


class _NoAlerts:
    sink: EventSink | None = None

    def wake(self) -> None: ...

    def schedule(self, scheduler: BackgroundScheduler) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


def _alert_hooks(config: Config, store: Store, metrics: Metrics) -> Any:
    if not config.webhooks:
        return _NoAlerts()
    from feeds.service_alerts import AlertHooks

    return AlertHooks(config, store, metrics.deliveries)


class _NoWebSub:
    pending = 0

    def changed(self, written: Iterable[str]) -> None: ...

    def schedule(self, scheduler: BackgroundScheduler) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


def _websub_hooks(config: Config, metrics: Metrics) -> WebSubHooks | _NoWebSub:
    if not config.websub.hubs:
        return _NoWebSub()
    from feeds.websub import WebSubHooks

    pings = metrics.websub_pings
    return WebSubHooks(
        config.base_url, config.websub.hubs, lambda result, n: pings.labels(result).inc(n)
    )


def run_service(config: Config, args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT (exit 0). SIGHUP re-reads the config and restarts in place."""
    setup_logging(getattr(args, "log_level", None) or config.service.log_level,
                  getattr(args, "log_format", None) or config.service.log_format)  # fmt: skip
    listen = _listen_address(config, args)
    service = Service(config, workers=args.workers, allow_reissue=args.allow_reissue)
    stop = threading.Event()
    reload_requested = threading.Event()
    woken = threading.Event()  # no polling: the main thread sleeps until a signal

    def on_signal(signum: int, frame: FrameType | None) -> None:
        (reload_requested if signum == signal.SIGHUP else stop).set()
        woken.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    host, port, http = listen
    service.start(host=host, port=port, http=http)
    while not stop.is_set():
        woken.wait()
        woken.clear()
        if reload_requested.is_set() and not stop.is_set():
            if _config_reloadable(args, config, listen):
                break
            reload_requested.clear()
    service.stop()
    if reload_requested.is_set():
        log.info("reloading configuration (SIGHUP): restarting in place")
        _stop_pool_helpers()
        os.execv(sys.executable, [sys.executable, *sys.argv])
    return 0


def _stop_pool_helpers() -> None:
    """Stop and reap the forkserver and resource tracker a big batch started: they are this
    process's children, and after an exec nothing would reap them (two zombies at every
    SIGHUP). Their ``_stop`` is multiprocessing's private API (3.8+); without it, nothing."""
    from multiprocessing import forkserver, resource_tracker

    for module, name in ((forkserver, "_forkserver"), (resource_tracker, "_resource_tracker")):
        stop = getattr(getattr(module, name, None), "_stop", None)
        if stop is not None:
            with contextlib.suppress(OSError):
                stop()


def _listen_address(config: Config, args: argparse.Namespace) -> tuple[str, int, bool]:
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    return host, port, config.server.enabled and not args.no_http


def _config_reloadable(
    args: argparse.Namespace, running: Config, listen: tuple[str, int, bool]
) -> bool:
    """A SIGHUP keeps the running service (and says why) when the new config is invalid, or
    when a service with it could not start: its state database cannot be opened, its output
    folder cannot be written, or it would listen on an address that is taken. Only what the
    new config changes is tried, before anything stops."""
    from feeds.cli import check_output_writable, config_from

    try:
        new = config_from(args)
    except ConfigError as exc:
        log.error("SIGHUP ignored, the new config is invalid: %s", "; ".join(exc.problems))
        return False
    problems = []
    if new.state != running.state:
        try:
            open_store(new.state).close()
        except FeedsError as exc:
            problems.append(str(exc))
    if new.output != running.output:
        try:
            check_output_writable(new.output)
        except FeedsError as exc:
            problems.append(str(exc))
    host, port, http = _listen_address(new, args)
    if http and port and (host, port) != listen[:2]:
        try:
            probe_listen(host, port)
        except OSError as exc:
            problems.append(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    if problems:
        log.error("SIGHUP ignored, the new config could not start: %s", "; ".join(problems))
        return False
    return True
