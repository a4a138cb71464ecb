"""Alert wiring for the service: the ingest sink and the delivery job."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import httpx
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import Counter

from feeds.alerts import AlertPlanner
from feeds.config import Config
from feeds.delivery import Deliverer
from feeds.store import Store

DELIVERY_INTERVAL_SECONDS = 5


class AlertHooks:
    """One Deliverer and one HTTP client for the service's life."""

    def __init__(self, config: Config, store: Store, deliveries: Counter) -> None:
        self.store = store
        self.sink = AlertPlanner(config)
        self.client = httpx.Client(follow_redirects=False)
        self.deliverer = Deliverer(
            config,
            store,
            self.client,
            on_result=lambda result, count: deliveries.labels(result).inc(count),
        )
        self._scheduler: BackgroundScheduler | None = None
        self._delivering = threading.Lock()

    def deliver(self) -> None:
        if not self._delivering.acquire(blocking=False):
            return  # the delivery still running goes on to what became due
        try:
            self.deliverer.deliver_due()
        finally:
            self._delivering.release()

    def schedule(self, scheduler: BackgroundScheduler) -> None:
        """Every few seconds. A second instance may start while a slow receiver holds the first
        (it returns at once): with one, the scheduler logged a 'skipped' warning every tick."""
        self._scheduler = scheduler
        scheduler.add_job(
            self.deliver,
            "interval",
            seconds=DELIVERY_INTERVAL_SECONDS,
            id="alerts",
            max_instances=2,
        )

    def wake(self) -> None:
        """Deliver now rather than at the next tick: new items just arrived."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.modify_job("alerts", next_run_time=datetime.now(UTC))

    def stop(self) -> None:
        """Before the scheduler is shut down: the running delivery ends after its request."""
        self.deliverer.stop()

    def close(self) -> None:
        self.client.close()
