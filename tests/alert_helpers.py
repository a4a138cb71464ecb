"""Test doubles for webhook delivery: a real HTTP receiver on 127.0.0.1 and a settable clock.

The receiver verifies signatures itself, written from the platforms' documented algorithms
(not from ``feeds.signing``): Standard Webhooks (``webhook-signature``), DingTalk 加签
(``timestamp``/``sign`` query parameters) and Feishu 签名校验 (``timestamp``/``sign`` in the
body). A request that fails verification is answered the way the platform would answer it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

from feeds.alert_payload import Alert, MatchReason, alert_item, alert_payload, feed_links
from feeds.alerts import event_id
from feeds.delivery import Deliverer
from feeds.model import Article, Site
from feeds.store import Store
from feeds.store.outbox import NewAlert

SUCCESS_BODIES: dict[str, Any] = {
    "json": "ok",
    "slack": "ok",
    "wecom": {"errcode": 0, "errmsg": "ok"},
    "dingtalk": {"errcode": 0, "errmsg": "ok"},
    "feishu": {"code": 0, "msg": "success", "data": {}},
}
TOLERANCE = timedelta(minutes=5)


class Clock:
    """A settable UTC clock for ``now=`` parameters."""

    def __init__(self, start: datetime | None = None) -> None:
        self.moment = start or datetime(2024, 5, 14, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> datetime:
        self.moment += timedelta(seconds=seconds)
        return self.moment

    def set(self, moment: datetime) -> None:
        self.moment = max(self.moment, moment)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None  # None: the platform's success body
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds between reading the request and answering (a slow platform)


@dataclass(frozen=True)
class Received:
    path: str
    raw_query: str
    headers: dict[str, str]
    body: bytes
    verified: bool | None  # None: nothing to verify (no secret)
    status: int  # what the receiver answered
    accepted: bool  # the answer meant success

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def json(self) -> Any:
        return json.loads(self.body)


# --- verification from the documented algorithms ---------------------------------------------


def verify_standard(secret: str, headers: dict[str, str], body: bytes, now: datetime) -> bool:
    key = (
        base64.b64decode(secret[len("whsec_") :])
        if secret.startswith("whsec_")
        else secret.encode()
    )
    msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "0")
    if abs(datetime.fromtimestamp(int(stamp), UTC) - now) > TOLERANCE:
        return False
    content = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split() if "," in s]
    return any(hmac.compare_digest(expected, sig) for sig in offered)


def verify_dingtalk(secret: str, raw_query: str, now: datetime) -> bool:
    params = parse_qs(raw_query)
    stamp = params.get("timestamp", ["0"])[0]
    string_to_sign = f"{stamp}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    in_time = abs(datetime.fromtimestamp(int(stamp) / 1000, UTC) - now) < timedelta(hours=1)
    url_encoded = f"sign={quote_plus(expected)}" in raw_query  # "then URL-encode"
    return in_time and url_encoded and params.get("sign", [""])[0] == expected


def verify_feishu(secret: str, body: bytes, now: datetime) -> bool:
    data = json.loads(body)
    stamp = str(data.get("timestamp", "0"))
    key = f"{stamp}\n{secret}".encode()
    expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    in_time = abs(datetime.fromtimestamp(int(stamp), UTC) - now) < timedelta(hours=1)
    return in_time and hmac.compare_digest(expected, str(data.get("sign", "")))


SIGNATURE_FAILURES: dict[str, Reply] = {
    "json": Reply(401, "bad signature"),
    "dingtalk": Reply(200, {"errcode": 310000, "errmsg": "sign not match"}),
    "feishu": Reply(200, {"code": 19021, "msg": "sign match fail or timestamp is not in time"}),
}


# --- the receiver -----------------------------------------------------------------------------


class Receiver:
    """A webhook endpoint on 127.0.0.1. ``script`` replies are used first, then success."""

    def __init__(
        self,
        fmt: str = "json",
        secret: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.fmt = fmt
        self.secret = secret
        self.clock = clock or (lambda: datetime.now(UTC))
        self.script: deque[Reply] = deque()
        self.max_body: int | None = None  # larger bodies get 413, like Express's 100 KB default
        self.received: list[Received] = []
        self.port = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, path: str = "/hook", query: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")

    # -- scripting and reading ----------------------------------------------------------------

    def reply(self, *replies: Reply) -> None:
        self.script.extend(replies)

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.accepted]

    def accepted_ids(self) -> list[str]:
        return [r.webhook_id for r in self.accepted]

    # -- handling ------------------------------------------------------------------------------

    def _verify(self, headers: dict[str, str], raw_query: str, body: bytes) -> bool | None:
        if not self.secret:
            return None
        now = self.clock()
        if self.fmt == "json":
            return verify_standard(self.secret, headers, body, now)
        if self.fmt == "dingtalk":
            return verify_dingtalk(self.secret, raw_query, now)
        if self.fmt == "feishu":
            return verify_feishu(self.secret, body, now)
        return None

    def _answer(self, verified: bool | None, size: int) -> Reply:
        with self._lock:
            if self.max_body is not None and size > self.max_body:
                return Reply(413, "request entity too large")
            if verified is False:
                return SIGNATURE_FAILURES[self.fmt]
            return self.script.popleft() if self.script else Reply()

    def _accepted(self, reply: Reply) -> bool:
        if not 200 <= reply.status < 300:
            return False
        body = SUCCESS_BODIES[self.fmt] if reply.body is None else reply.body
        if isinstance(body, dict):
            return body.get("errcode", body.get("code", 0)) == 0
        return True

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("content-length", "0"))
        body = request.rfile.read(length)
        headers = {k.lower(): v for k, v in request.headers.items()}
        parts = urlsplit(request.path)
        verified = self._verify(headers, parts.query, body)
        reply = self._answer(verified, len(body))
        record = Received(
            parts.path, parts.query, headers, body, verified, reply.status, self._accepted(reply)
        )
        with self._lock:
            self.received.append(record)
        time.sleep(reply.delay)
        payload = SUCCESS_BODIES[self.fmt] if reply.body is None else reply.body
        data = payload if isinstance(payload, str) else json.dumps(payload)
        encoded = data.encode()
        request.send_response(reply.status)
        for name, value in reply.headers.items():
            request.send_header(name, value)
        request.send_header("content-length", str(len(encoded)))
        request.end_headers()
        request.wfile.write(encoded)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


# --- queueing alerts directly (delivery tests that need no pipeline) --------------------------

SITE = Site("https://feeds.example.org/", "财经新闻", "test")


def story(title: str, when: datetime) -> Article:
    text = f"{title}。北交所成交额明显放大，市场关注度持续提升。"
    return Article(
        path=f"/articles/{title}.md", title=title, title_derived=False,
        link="https://www.stcn.com/article/detail/1.html", published=when,
        date_origin="front-matter", updated=None, source_name="证券时报网",
        source_slug="zhengquanshibaowang", categories=(), language="zh-CN",
        content_html=f"<p>{text}</p>", text=text, summary=text, image=None,
    )  # fmt: skip


def queue_alerts(store: Store, webhook: str, titles: Sequence[str], now: datetime) -> list[str]:
    """Queue one ``item.new`` alert per title, as the planner would; returns the event ids."""
    ids = []
    for title in titles:
        item_id = hashlib.sha256(title.encode()).hexdigest()[:32]
        article = story(title, now)
        alert = Alert(
            id=event_id(item_id, webhook, "item.new"),
            type="item.new",
            occurred=now,
            item=alert_item(item_id, article, []),
            match=MatchReason("keywords", "北交所", "content", "北交所成交额明显放大"),
            feeds=feed_links(SITE, article.source_slug, []),
        )
        payload = json.dumps(alert_payload(alert), ensure_ascii=False)
        assert store.enqueue_alert(NewAlert(alert.id, webhook, "item.new", item_id, payload, now))
        ids.append(alert.id)
    return ids


def run_until_idle(deliverer: Deliverer, store: Store, clock: Clock, rounds: int = 40) -> int:
    """Deliver, jumping the clock to the next retry (or past a full rate window) until the
    outbox has nothing pending; returns the number of rounds used."""
    for used in range(1, rounds + 1):
        deliverer.deliver_due()
        pending = store.list_alerts("pending", 10_000)
        if not pending:
            return used
        soonest = min(row.next_attempt for row in pending)
        if soonest > clock():
            clock.set(soonest)
        else:
            clock.advance(61)
    raise AssertionError(f"the outbox did not settle in {rounds} rounds")


# --- a hostile server -------------------------------------------------------------------------


class HostileReceiver:
    """Answers one POST with ``status`` and then a body that never ends: ``pace`` seconds
    between chunks of ``chunk`` bytes, until the client goes away. Counts what it wrote."""

    def __init__(self, chunk: bytes, pace: float, status: int = 200) -> None:
        self.chunk, self.pace, self.status = chunk, pace, status
        self.written = 0
        self.done = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
            while len(body) < length:
                body += conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: text/plain\r\n\r\n" % self.status)
                while self.written < 1 << 28:  # 256 MiB at most
                    conn.sendall(self.chunk)
                    self.written += len(self.chunk)
                    if self.pace:
                        time.sleep(self.pace)
            except OSError:  # the client went away
                pass
        self.done.set()

    def close(self) -> None:
        self.sock.close()
