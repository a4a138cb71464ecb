"""Drain the alert outbox to the webhooks, with an injected ``httpx.Client`` and clock.

Per target (webhook): one request at a time, in queue order; the head of a queue waits for its
retry time and everything behind it waits too, while other targets go on (each target drains
in its own thread). A request succeeds on 2xx only (redirects are not followed) and, for the
chat platforms, only when the body says so (WeCom/DingTalk ``errcode == 0``, Feishu
``code == 0``). Failures are retried with exponential backoff and full jitter, ``Retry-After``
honoured on 429/503, until ``max_retry_hours`` after the alert was queued; then the alert is a
dead letter. A 4xx other than 408/429 is permanent: dead at once. When more alerts are queued
than a target's per-minute budget allows, ONE digest message carries as many as it can show
(the rest go in the next one).

Delivery is at least once: a crash between the receiver's answer and the outbox update sends
that alert again, with the same ``webhook-id``. Secrets are never logged; URLs and errors are
redacted before they are logged or stored.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

import httpx

from feeds.alert_messages import digest_capacity, format_digest, format_message
from feeds.alert_payload import Alert, alert_from_payload, utf8_len
from feeds.alerts import digest_id, sample_alert, utc_now
from feeds.classify import topic_slug
from feeds.config import Config, ConfigError, WebhookConfig, WebhookFormat, resolve_secret
from feeds.http_answer import read_answer
from feeds.outputs import site_of
from feeds.signing import prepare_request
from feeds.store import Store
from feeds.store.outbox import OutboxRow

log = logging.getLogger("feeds.delivery")

DIGEST_MAX: Final = 100  # alerts one digest message may carry
# A JSON digest carries every event in full (≈1-3 KB each): it stops at this size, well under
# the 100 KB request limit many receivers have by default (Express's body-parser), which would
# answer 413 — a permanent failure that would bury every carried alert at once.
JSON_DIGEST_BYTES: Final = 64 * 1024
DIGEST_EVENT_OVERHEAD: Final = 64  # bytes an event adds to a digest besides its payload
RATE_WINDOW: Final = timedelta(minutes=1)
BACKOFF_BASE_SECONDS: Final = 10.0
BACKOFF_CAP_SECONDS: Final = 4 * 3600.0
MIN_DELAY_SECONDS: Final = 1.0
LEASE_MARGIN: Final = timedelta(seconds=30)
DELIVERED_RETENTION: Final = timedelta(days=30)
PRUNE_EVERY: Final = timedelta(hours=1)
MAX_WORKERS: Final = 8
DETAIL_CHARS: Final = 300
BODY_CHARS: Final = 2000
# Of a receiver's answer, at most this much is read (a platform answers some 100 bytes), and
# only for timeout_seconds in all: an endless or trickling answer cannot hold the delivery.
ANSWER_BYTES: Final = 64 * 1024

# Chat platforms' "too many messages" codes -> how long they throttle (seconds).
RATE_LIMIT_CODES: Final[Mapping[str, Mapping[int, float]]] = {
    "wecom": {45009: 60.0},  # api freq out of limit (20 messages/minute per bot)
    "dingtalk": {130101: 600.0, 410100: 600.0},  # send too fast: throttled for 10 minutes
    "feishu": {11232: 60.0},  # frequency limited (100/minute, 5/second per bot)
}
CHAT_FORMATS: Final = ("wecom", "dingtalk", "feishu")
# A robot refusing this message's content (its "custom keywords" security setting): (code,
# text the answer's message contains). Retrying cannot help, and the alerts queued behind it
# would wait out its whole retry window, so it is a dead letter at once. DingTalk answers every
# security failure with 310000 (a wrong signature too, which is retried): hence the text.
CONTENT_REFUSALS: Final[Mapping[str, tuple[int, str]]] = {
    "dingtalk": (310000, "keywords not in content"),
    "feishu": (19024, ""),  # Key Words Not Found
}


# --- redaction --------------------------------------------------------------------------------

_TOKEN_SEGMENT = re.compile(r"(?=[^/]*\d)[^/]{8,}")
REDACTED: Final = "***"


def _secret_segments(path: str) -> list[str]:
    return [segment for segment in path.split("/") if _TOKEN_SEGMENT.fullmatch(segment)]


def redact_url(url: str) -> str:
    """Scheme, host and path with token-like segments and every query value masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return REDACTED
    path = parts.path
    for segment in _secret_segments(path):
        path = path.replace(segment, REDACTED)
    query = "&".join(f"{key}={REDACTED}" for key, _ in parse_qsl(parts.query, True))
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that ``redact_url`` hides (to scrub them from any text), in every
    spelling an answer or an error may echo them: as sent (percent-encoded), decoded, and
    encoded again."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    as_sent = [pair.partition("=")[2] for pair in parts.query.split("&")]
    segments = _secret_segments(parts.path)
    values = [*as_sent, *(v for _, v in parse_qsl(parts.query)), *segments]
    values += [unquote(segment) for segment in segments]
    spelled = {
        form
        for value in values
        if len(value) >= 4
        for form in (value, quote(value, safe=""), quote_plus(value))
    }
    return [url, parts.netloc, *sorted(spelled)]


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret (longest first) replaced by ``***``."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


# --- outcomes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request achieved. ``detail`` and ``body`` are already redacted."""

    ok: bool
    retryable: bool = True
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None  # seconds the receiver asked us to wait
    body: str = ""


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """``Retry-After``: delay seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def _body_code(fmt: str, data: Any) -> tuple[str, Any, str]:
    """(key, code, message) of a chat platform's answer."""
    if not isinstance(data, dict):
        return "code", "?", "not a JSON object"
    if fmt == "feishu":
        key = "code" if "code" in data else "StatusCode"
        return key, data.get(key, 0), str(data.get("msg") or data.get("StatusMessage") or "")
    return "errcode", data.get("errcode", 0), str(data.get("errmsg") or "")


def chat_outcome(fmt: str, status: int, text: str) -> Outcome:
    """A 2xx answer of WeCom/DingTalk/Feishu: success only if the body's code is 0."""
    try:
        data = json.loads(text)
    except ValueError:
        return Outcome(False, True, status, f"HTTP {status} without a JSON answer", body=text)
    key, code, message = _body_code(fmt, data)
    if code == 0:
        return Outcome(True, status=status, body=text)
    wait = RATE_LIMIT_CODES.get(fmt, {}).get(code) if isinstance(code, int) else None
    detail = f"HTTP {status}, {key} {code}: {message}"
    retryable = not _refuses_content(fmt, code, message)
    return Outcome(False, retryable, status, detail, retry_after=wait, body=text)


def _refuses_content(fmt: str, code: Any, message: str) -> bool:
    refusal = CONTENT_REFUSALS.get(fmt)
    return refusal is not None and code == refusal[0] and refusal[1] in message.lower()


def classify_response(
    fmt: WebhookFormat, status: int, headers: Mapping[str, str], text: str, now: datetime
) -> Outcome:
    """2xx = success (chat bodies checked); 408/429/3xx/5xx = retry; other 4xx = permanent."""
    if 200 <= status < 300:
        return (
            chat_outcome(fmt, status, text)
            if fmt in CHAT_FORMATS
            else Outcome(True, True, status, body=text)
        )
    detail = f"HTTP {status}: {_first_line(text)}"
    wait = retry_after_seconds(headers.get("retry-after"), now) if status in (429, 503) else None
    permanent = 400 <= status < 500 and status not in (408, 429)
    return Outcome(False, not permanent, status, detail, retry_after=wait, body=text)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:DETAIL_CHARS]


def backoff_seconds(attempts: int, draw: float) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempts)), at least one second."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** min(attempts, 30))
    return max(MIN_DELAY_SECONDS, ceiling * draw)


# --- reports ----------------------------------------------------------------------------------


@dataclass(slots=True)
class DeliveryReport:
    sent: int = 0  # alerts delivered (a digest counts every alert it carried)
    failed: int = 0  # alerts whose attempt failed and that will be retried
    dead: int = 0  # alerts that became dead letters
    digests: int = 0  # digest messages sent

    def add(self, other: DeliveryReport) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.dead += other.dead
        self.digests += other.digests


ResultHook = Callable[[str, int], None]  # ("sent" | "failed" | "dead", alert count)


# --- sending ----------------------------------------------------------------------------------


def post(
    client: httpx.Client,
    webhook: WebhookConfig,
    message_id: str,
    message: dict[str, Any],
    now: datetime,
    environ: Mapping[str, str] | None = None,
) -> Outcome:
    """Sign and POST one message; never raises for network or receiver trouble."""
    try:
        url = resolve_secret(webhook.url, environ) or ""
        secret = resolve_secret(webhook.secret, environ)
    except ConfigError as exc:
        return Outcome(False, True, detail="; ".join(exc.problems))
    try:
        request = prepare_request(webhook.format, url, secret, message_id, message, now)
    except ValueError:  # a whsec_ secret that is not base64
        return Outcome(False, True, detail="the secret cannot be used (whsec_ needs base64)")
    hidden = [*url_secrets(url), *url_secrets(request.url), secret]
    deadline = time.monotonic() + webhook.timeout_seconds
    try:
        with client.stream(
            "POST",
            request.url,
            content=request.body,
            headers=request.headers,
            timeout=webhook.timeout_seconds,
            follow_redirects=False,
        ) as response:
            text = read_answer(response, ANSWER_BYTES, deadline)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        detail = scrub(f"{type(exc).__name__}: {exc}", hidden)[:DETAIL_CHARS]
        return Outcome(False, not isinstance(exc, httpx.InvalidURL), detail=detail)
    except TimeoutError:
        detail = f"the answer took over {webhook.timeout_seconds:g} s"
        return Outcome(False, True, response.status_code, detail)
    outcome = classify_response(webhook.format, response.status_code, response.headers, text, now)
    return _redacted(outcome, hidden)


def _redacted(outcome: Outcome, hidden: Sequence[str | None]) -> Outcome:
    return Outcome(
        outcome.ok,
        outcome.retryable,
        outcome.status,
        scrub(outcome.detail, hidden)[:DETAIL_CHARS],
        outcome.retry_after,
        scrub(outcome.body, hidden)[:BODY_CHARS],
    )


def send_test(
    config: Config,
    name: str,
    client: httpx.Client,
    now: Callable[[], datetime] = utc_now,
    environ: Mapping[str, str] | None = None,
) -> Outcome:
    """Send a sample alert through the real format and signing (``feeds alerts test``)."""
    webhooks = {webhook.name: webhook for webhook in config.webhooks}
    if name not in webhooks:
        raise KeyError(f"no webhook named {name!r}")
    webhook = webhooks[name]
    moment = now()
    names = {topic_slug(topic): topic.name for topic in config.topics}
    alert = sample_alert(webhook, site_of(config), moment, names)
    message = format_message(webhook.format, alert, config.zone)
    return post(client, webhook, alert.id, message, moment, environ)


def _json_digest_rows(rows: Sequence[OutboxRow]) -> list[OutboxRow]:
    """The longest prefix of ``rows`` whose JSON digest stays within ``JSON_DIGEST_BYTES``."""
    size = 0
    for count, row in enumerate(rows):
        size += utf8_len(row.payload) + DIGEST_EVENT_OVERHEAD
        if size > JSON_DIGEST_BYTES and count > 0:
            return list(rows[:count])
    return list(rows)


class Deliverer:
    """Drains due alerts. Each target's per-minute budget is kept in the state database, so a
    restart, or ``feeds alerts deliver`` run beside the service, cannot exceed it. ``now`` and
    ``draw`` (a uniform [0, 1) source) are injectable."""

    def __init__(
        self,
        config: Config,
        store: Store,
        client: httpx.Client,
        *,
        now: Callable[[], datetime] = utc_now,
        draw: Callable[[], float] = random.random,
        environ: Mapping[str, str] | None = None,
        on_result: ResultHook | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.client = client
        self.now = now
        self.draw = draw
        self.environ = environ
        self.on_result = on_result
        self.webhooks = {webhook.name: webhook for webhook in config.webhooks}
        self._pruned: datetime | None = None
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Send nothing more: the request in flight finishes and is recorded, the rest stays
        queued (a shutdown must not wait for a slow receiver to take the whole backlog)."""
        self._stopping.set()

    def deliver_due(self) -> DeliveryReport:
        """Send whatever is due now, every target in parallel; returns what happened."""
        report = DeliveryReport()
        queues = self.store.alert_queues()
        report.add(self._bury_orphans(q for q in queues if q not in self.webhooks))
        targets = [self.webhooks[q] for q in queues if q in self.webhooks]
        if len(targets) == 1:
            report.add(self.drain(targets[0]))
        elif targets:
            with ThreadPoolExecutor(min(MAX_WORKERS, len(targets))) as pool:
                for result in pool.map(self.drain, targets):
                    report.add(result)
        self._prune()
        return report

    def drain(self, webhook: WebhookConfig) -> DeliveryReport:
        """One target: requests in queue order until it is empty, waiting or over budget."""
        report = DeliveryReport()
        for _ in range(webhook.rate_per_minute + 1):  # each round spends one request
            if self._stopping.is_set():
                break
            batch = self._next_batch(webhook)
            if not batch:
                break
            try:
                outcome = self._send(webhook, batch)
            except Exception as exc:  # a bug must not strand leased rows or other targets
                log.exception("delivery to %s crashed", webhook.name)
                outcome = Outcome(False, True, detail=f"internal error: {type(exc).__name__}")
            self._settle(webhook, batch, outcome, report)
            if not outcome.ok and outcome.retryable:  # a dead letter does not hold up the rest
                break
        return report

    # -- choosing what to send -------------------------------------------------------------

    def _next_batch(self, webhook: WebhookConfig) -> list[OutboxRow]:
        """The head alone, or a digest of everything queued when that exceeds the budget."""
        rows = self.store.queued_alerts(webhook.name, DIGEST_MAX + 1)
        now = self.now()
        if not rows or rows[0].next_attempt > now:
            return []
        budget = (RATE_WINDOW, webhook.rate_per_minute)
        left = self.store.requests_left(webhook.name, now, budget)
        if left <= 0:
            return []
        batch = rows[:1] if len(rows) <= left else self._digest_rows(webhook, rows[:DIGEST_MAX])
        lease = now + timedelta(seconds=webhook.timeout_seconds) + LEASE_MARGIN
        ids = [r.id for r in batch]
        return batch if self.store.claim_for_request(webhook.name, ids, now, lease, budget) else []

    def _digest_rows(self, webhook: WebhookConfig, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
        """The rows one digest carries: for ``json`` as many as fit ``JSON_DIGEST_BYTES``; for a
        chat format as many as its message can list (an alert marked delivered by a digest
        must have been shown in it; the rest go in the next one)."""
        if webhook.format == "json":
            return _json_digest_rows(rows)
        try:
            alerts = [alert_from_payload(row.event_id, row.payload) for row in rows]
        except (ValueError, KeyError, TypeError):
            return list(rows)  # _send reports the unreadable payload
        return list(rows[: digest_capacity(webhook.format, alerts, self.config.zone)])

    # -- sending ---------------------------------------------------------------------------

    def _send(self, webhook: WebhookConfig, batch: Sequence[OutboxRow]) -> Outcome:
        now = self.now()
        try:
            alerts = [alert_from_payload(row.event_id, row.payload) for row in batch]
        except (ValueError, KeyError, TypeError) as exc:
            return Outcome(False, False, detail=f"unreadable outbox payload: {exc}")
        alerts = [self._with_current_sources(alert) for alert in alerts]
        if len(alerts) == 1:
            message_id = alerts[0].id
            message = self._single(webhook, batch[0], alerts[0])
        else:
            message_id = digest_id([alert.id for alert in alerts])
            message = format_digest(webhook.format, alerts, self.config.zone, now)
        return post(self.client, webhook, message_id, message, now, self.environ)

    def _with_current_sources(self, alert: Alert) -> Alert:
        """A story may have gained outlets since it was queued: name every one known now."""
        current = self.store.item_sources(alert.item.id)
        if not current or current == alert.item.sources:
            return alert
        return replace(alert, item=replace(alert.item, sources=current))

    def _single(self, webhook: WebhookConfig, row: OutboxRow, alert: Alert) -> dict[str, Any]:
        if webhook.format == "json":  # the stored body as planned, with today's source list
            stored: dict[str, Any] = json.loads(row.payload)
            item = stored.get("data", {}).get("item")
            if isinstance(item, dict):
                item["sources"] = [{"slug": s, "name": n} for s, n in alert.item.sources]
            return stored
        return format_message(webhook.format, alert, self.config.zone)

    # -- recording the outcome -------------------------------------------------------------

    def _settle(
        self,
        webhook: WebhookConfig,
        batch: Sequence[OutboxRow],
        outcome: Outcome,
        report: DeliveryReport,
    ) -> None:
        ids = [row.id for row in batch]
        if outcome.ok:
            digest = digest_id([row.event_id for row in batch]) if len(batch) > 1 else None
            self.store.mark_alerts_delivered(ids, self.now(), digest)
            self._count(report, "sent", len(ids), digests=int(digest is not None))
            via = f" in digest {digest}" if digest else ""
            log.info("%d alert(s) delivered to %s%s", len(ids), webhook.name, via)
        elif not outcome.retryable:
            self._bury(webhook, ids, outcome.detail, report)
        else:
            self._reschedule(webhook, batch, outcome, report)

    def _reschedule(
        self,
        webhook: WebhookConfig,
        batch: Sequence[OutboxRow],
        outcome: Outcome,
        report: DeliveryReport,
    ) -> None:
        now = self.now()
        delay = self._delay(batch, outcome)
        window = timedelta(hours=webhook.max_retry_hours)
        expired = [row.id for row in batch if now >= row.window_start + window]
        if expired:
            gave_up = f"{outcome.detail} (gave up after {webhook.max_retry_hours:g} h)"
            self._bury(webhook, expired, gave_up, report)
        live = [row for row in batch if row.id not in expired]
        for row in live:
            retry_at = min(now + delay, row.window_start + window)
            self.store.mark_alerts_failed([row.id], outcome.detail, retry_at)
        if live:
            self._count(report, "failed", len(live))
            wait = delay.total_seconds()
            log.warning(
                "delivery to %s failed, retry in %.0f s: %s", webhook.name, wait, outcome.detail
            )

    def _bury(
        self, webhook: WebhookConfig, ids: Sequence[int], reason: str, report: DeliveryReport
    ) -> None:
        self.store.mark_alerts_dead(ids, reason)
        self._count(report, "dead", len(ids))
        log.warning("%d alert(s) to %s are dead letters: %s", len(ids), webhook.name, reason)

    def _delay(self, batch: Sequence[OutboxRow], outcome: Outcome) -> timedelta:
        if outcome.retry_after is not None:
            return timedelta(seconds=max(MIN_DELAY_SECONDS, outcome.retry_after))
        attempts = max(row.attempts for row in batch)
        return timedelta(seconds=backoff_seconds(attempts, self.draw()))

    def _count(self, report: DeliveryReport, result: str, count: int, digests: int = 0) -> None:
        setattr(report, result, getattr(report, result) + count)
        report.digests += digests
        if self.on_result is not None:
            self.on_result(result, count)

    # -- housekeeping ----------------------------------------------------------------------

    def _bury_orphans(self, names: Iterable[str]) -> DeliveryReport:
        """Alerts of a webhook no longer in the config become dead letters (retryable)."""
        report = DeliveryReport()
        for name in names:
            reason = f"webhook {name!r} is not configured"
            while rows := self.store.queued_alerts(name, DIGEST_MAX):
                self.store.mark_alerts_dead([row.id for row in rows], reason)
                self._count(report, "dead", len(rows))
        return report

    def _prune(self) -> None:
        now = self.now()
        if self._pruned is None or now - self._pruned >= PRUNE_EVERY:
            self._pruned = now
            self.store.prune_alerts(now - DELIVERED_RETENTION)
