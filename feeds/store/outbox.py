"""The alert outbox: every SQL statement about queued webhook alerts.

A row is one event for one webhook. It is written in the same transaction as the item that
caused it (``enqueue_alert``, an INSERT OR IGNORE on the unique event id, so the same event can
never be queued twice) and then moves ``pending`` -> ``delivered`` or ``pending`` -> ``dead``.
Rows of one webhook are delivered in ``id`` order; the first pending row of a webhook is the
head of its queue. ``lease_until`` keeps two delivering processes from sending the same rows.

``OutboxMixin`` is a base of ``SQLiteStore`` and uses its ``_run``/``_one``/``_all`` helpers
and ``transaction()``; all times are aware UTC datetimes, stored as Unix seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

AlertStatus = Literal["pending", "delivered", "dead"]
AlertFilter = Literal["all", "pending", "failed", "dead", "delivered"]

_COLUMNS: Final = (
    "id, event_id, webhook, event_type, item_id, payload, status, attempts, created, "
    "window_start, next_attempt, last_error, delivered_at, digest_id"
)
_FILTERS: Final[dict[AlertFilter, str]] = {
    "all": "1 = 1",
    "pending": "status = 'pending'",
    "failed": "(status = 'dead' OR (status = 'pending' AND attempts > 0))",
    "dead": "status = 'dead'",
    "delivered": "status = 'delivered'",
}


@dataclass(frozen=True, slots=True)
class NewAlert:
    """An alert to queue: ``payload`` is the Standard Webhooks JSON body (text)."""

    event_id: str
    webhook: str
    event_type: str
    item_id: str
    payload: str
    created: datetime


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    event_id: str
    webhook: str
    event_type: str
    item_id: str
    payload: str
    status: AlertStatus
    attempts: int
    created: datetime
    window_start: datetime  # retries stop ``max_retry_hours`` after this (reset by a retry)
    next_attempt: datetime
    last_error: str | None
    delivered_at: datetime | None
    digest_id: str | None  # event id of the digest message that carried this alert


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def _ts_up(moment: datetime) -> int:
    """Rounded up: a row scheduled for 10.2 s must not be sent at 10 s."""
    return math.ceil(moment.timestamp())


def _dt(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value), UTC)


def _row(values: Sequence[Any]) -> OutboxRow:
    (id_, event_id, webhook, event_type, item_id, payload, status, attempts, created,
     window_start, next_attempt, last_error, delivered_at, digest_id) = values  # fmt: skip
    return OutboxRow(
        id=int(id_),
        event_id=str(event_id),
        webhook=str(webhook),
        event_type=str(event_type),
        item_id=str(item_id),
        payload=str(payload),
        status=status,
        attempts=int(attempts),
        created=_dt(created),
        window_start=_dt(window_start),
        next_attempt=_dt(next_attempt),
        last_error=None if last_error is None else str(last_error),
        delivered_at=None if delivered_at is None else _dt(delivered_at),
        digest_id=None if digest_id is None else str(digest_id),
    )


def _marks(ids: Sequence[int]) -> str:
    return ", ".join("?" * len(ids))


class OutboxMixin:
    """Outbox statements for ``SQLiteStore`` (which provides the helpers declared below)."""

    if TYPE_CHECKING:

        def _one(self, sql: str, args: Sequence[object] = ()) -> Any: ...
        def _all(self, sql: str, args: Sequence[object] = ()) -> list[Any]: ...
        def _run(self, sql: str, args: Sequence[object] = ()) -> int: ...
        def transaction(self) -> AbstractContextManager[None]: ...

    # -- queueing --------------------------------------------------------------------------

    def enqueue_alert(self, alert: NewAlert) -> bool:
        """Queue an alert; False when its event id was queued before (nothing changes)."""
        created = _ts(alert.created)
        values = (alert.event_id, alert.webhook, alert.event_type, alert.item_id, alert.payload)
        inserted = self._run(
            "INSERT OR IGNORE INTO alert_outbox (event_id, webhook, event_type, item_id, "
            "payload, created, window_start, next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, created, created, created),
        )
        return inserted == 1

    # -- delivering ------------------------------------------------------------------------

    def alert_queues(self) -> list[str]:
        """Names of the webhooks that have pending alerts."""
        rows = self._all(
            "SELECT DISTINCT webhook FROM alert_outbox WHERE status = 'pending' ORDER BY webhook"
        )
        return [str(row[0]) for row in rows]

    def queued_alerts(self, webhook: str, limit: int) -> list[OutboxRow]:
        """The first ``limit`` pending alerts of a webhook, oldest first (the head first)."""
        rows = self._all(
            f"SELECT {_COLUMNS} FROM alert_outbox WHERE webhook = ? AND status = 'pending' "
            "ORDER BY id LIMIT ?",
            (webhook, limit),
        )
        return [_row(row) for row in rows]

    def claim_alerts(self, ids: Sequence[int], now: datetime, until: datetime) -> bool:
        """Lease pending rows for one send; False (nothing leased) if any is gone or leased."""
        with self.transaction():
            free = self._one(
                f"SELECT count(*) FROM alert_outbox WHERE id IN ({_marks(ids)}) "
                "AND status = 'pending' AND coalesce(lease_until, 0) <= ?",
                (*ids, _ts(now)),
            )
            if free is None or int(free[0]) != len(ids):
                return False
            self._run(
                f"UPDATE alert_outbox SET lease_until = ? WHERE id IN ({_marks(ids)})",
                (_ts_up(until), *ids),
            )
        return True

    def requests_left(self, webhook: str, now: datetime, budget: tuple[timedelta, int]) -> int:
        """How many of its ``budget`` (``limit`` requests per ``window``) the webhook has left
        at ``now``."""
        window, limit = budget
        row = self._one(
            "SELECT count(*) FROM alert_requests WHERE webhook = ? AND sent_at > ?",
            (webhook, (now - window).timestamp()),
        )
        return limit - (int(row[0]) if row else 0)

    def claim_for_request(
        self,
        webhook: str,
        ids: Sequence[int],
        now: datetime,
        until: datetime,
        budget: tuple[timedelta, int],
    ) -> bool:
        """``claim_alerts`` and spend one request of the webhook's ``budget`` (``limit``
        requests per ``window``), both or neither: False when the budget is spent (by any
        process using this database, before or since a restart) or a row is taken."""
        window = budget[0]
        with self.transaction():
            self._run(
                "DELETE FROM alert_requests WHERE webhook = ? AND sent_at <= ?",
                (webhook, (now - window).timestamp()),
            )
            if self.requests_left(webhook, now, budget) <= 0:
                return False
            if not self.claim_alerts(ids, now, until):
                return False
            self._run(
                "INSERT INTO alert_requests (webhook, sent_at) VALUES (?, ?)",
                (webhook, now.timestamp()),
            )
        return True

    def mark_alerts_delivered(
        self, ids: Sequence[int], at: datetime, digest_id: str | None = None
    ) -> None:
        self._run(
            "UPDATE alert_outbox SET status = 'delivered', attempts = attempts + 1, "
            "delivered_at = ?, digest_id = ?, lease_until = NULL, last_error = NULL "
            f"WHERE id IN ({_marks(ids)})",
            (_ts(at), digest_id, *ids),
        )

    def mark_alerts_failed(self, ids: Sequence[int], error: str, next_attempt: datetime) -> None:
        """One more failed attempt; the rows stay pending until ``next_attempt``."""
        self._run(
            "UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?, "
            f"next_attempt = ?, lease_until = NULL WHERE id IN ({_marks(ids)})",
            (error, _ts_up(next_attempt), *ids),
        )

    def mark_alerts_dead(self, ids: Sequence[int], error: str) -> None:
        """Give up: the rows become dead letters (``retry_alerts`` brings them back)."""
        self._run(
            "UPDATE alert_outbox SET status = 'dead', attempts = attempts + 1, last_error = ?, "
            f"lease_until = NULL WHERE id IN ({_marks(ids)})",
            (error, *ids),
        )

    # -- operating -------------------------------------------------------------------------

    def list_alerts(self, which: AlertFilter = "all", limit: int = 100) -> list[OutboxRow]:
        """Newest first. ``failed`` = dead letters plus pending rows that failed before."""
        rows = self._all(
            f"SELECT {_COLUMNS} FROM alert_outbox WHERE {_FILTERS[which]} ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [_row(row) for row in rows]

    def retry_alerts(self, ref: str | None, now: datetime) -> int:
        """Make alerts due now with a fresh retry window. ``ref`` is a row id or an event id
        (any status: a delivered alert is sent again); None retries every failed alert. A row
        leased by a delivery under way is left to it: freed, another process would send it
        while the first still does."""
        reset = (
            "UPDATE alert_outbox SET status = 'pending', next_attempt = ?, window_start = ?, "
            "lease_until = NULL, delivered_at = NULL, digest_id = NULL "
            "WHERE coalesce(lease_until, 0) <= ? AND "
        )
        moment = _ts(now)
        if ref is None:
            return self._run(reset + _FILTERS["failed"], (moment, moment, moment))
        if ref.isdigit():
            return self._run(reset + "id = ?", (moment, moment, moment, int(ref)))
        return self._run(reset + "event_id = ?", (moment, moment, moment, ref))

    def alert_leased(self, ref: str, now: datetime) -> bool:
        """Whether a delivery is sending this alert (row id or event id) right now."""
        column = "id" if ref.isdigit() else "event_id"
        row = self._one(
            f"SELECT count(*) FROM alert_outbox WHERE {column} = ? AND lease_until > ?",
            (int(ref) if ref.isdigit() else ref, _ts(now)),
        )
        return bool(row and row[0])

    def alert_backlog(self) -> int:
        """Alerts not delivered yet (dead letters excluded): for /healthz and metrics."""
        row = self._one("SELECT count(*) FROM alert_outbox WHERE status = 'pending'")
        return int(row[0]) if row else 0

    def alert_counts(self) -> dict[str, int]:
        rows = self._all("SELECT status, count(*) FROM alert_outbox GROUP BY status")
        return {str(status): int(count) for status, count in rows}

    def prune_alerts(self, before: datetime) -> int:
        """Forget delivered alerts older than ``before`` (pending and dead ones stay)."""
        return self._run(
            "DELETE FROM alert_outbox WHERE status = 'delivered' AND delivered_at < ?",
            (_ts(before),),
        )
