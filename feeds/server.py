"""HTTP side of the service: serves the output folder, ``/healthz`` and ``/metrics``.

The output folder is written by the service with temp file + rename, so a file's identity
(size, mtime_ns, ctime_ns, inode, device) changes whenever its content may have changed. Each
artefact is read, hashed and gzipped once per identity and kept in a small LRU cache; requests in
between only cost an ``open`` + ``fstat``.

Only known feed artefacts are reachable (``.rss``, ``.atom``, ``.opml``, ``.html``, ``.xml``), only
through plain ASCII path segments that resolve to a regular file inside the real output folder;
``<name>.json`` is the JSON Feed made from ``<name>.atom`` (``feeds.jsonfeed``), kept like a
filtered feed. Everything is read-only: any method but GET and HEAD gets 405.

Raw bytes >= 0x80 in a request line (Chinese filter words from newsboat or curl) are
percent-encoded before h11 parses the line, so such a request is served as its percent-encoded
form would be; h11 itself answers 400 to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gzip
import hashlib
import json
import logging
import os
import re
import socket
import stat
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote_to_bytes

try:  # POSIX only: the kernel's send queue is measured where it can be
    import fcntl
    import termios
except ImportError:  # pragma: no cover
    fcntl = termios = None  # type: ignore[assignment]

import h11
import prometheus_client
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from feeds.feedfilter import FeedFilter, FilterError, filter_feed
from feeds.jsonfeed import json_feed
from feeds.model import FEED_SUFFIXES
from feeds.render import CONTENT_SECURITY_POLICY

__all__ = ["CONTENT_TYPES", "Health", "ServerThread", "create_app"]

logger = logging.getLogger(__name__)

CONTENT_TYPES: Mapping[str, str] = {
    ".rss": "application/rss+xml; charset=utf-8",
    ".atom": "application/atom+xml; charset=utf-8",
    ".opml": "text/x-opml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".json": "application/feed+json; charset=utf-8",  # made from the .atom beside it
}
JSON_FEED_SUFFIX = ".json"
ALLOWED_METHODS = ("GET", "HEAD")
ALLOW_HEADER = ", ".join(ALLOWED_METHODS)
# path + query as the app sees them, i.e. after raw bytes >= 0x80 became %XX (_RequestLineEncoder):
# a raw request gets the answer its percent-encoded form gets, and as encoding never shortens a
# line, the request as received is held to the limit too. Longer -> 414.
MAX_URL_BYTES = 2048
HEAD_TIMEOUT = 10.0  # seconds a connection has to send each request head
WRITE_TIMEOUT = 30.0  # seconds a connection may take none of the answer it is owed
MAX_HEADER_BYTES = 8 * 1024  # header names + values -> 431; h11 refuses larger partial reads
CACHE_ENTRIES = 256
CACHE_BYTES = 128 * 1024 * 1024  # body + gzip bytes held by the artefact cache
FILTERED_CACHE_ENTRIES = 64
FILTERED_CACHE_BYTES = 32 * 1024 * 1024
GZIP_LEVEL = 6
ETAG_HEX_CHARS = 32  # 128 bits of SHA-256
INDEX_FILE = "index.html"

# One path segment: ASCII letters, digits, "_", "-", "."; never starting with "." (hidden files,
# "." and ".." segments). Checked after a single percent-decoding, so "%2e%2e", "%2f", "%5c",
# "%00" and double-encoded "%252e" all fail.
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")
_ETAG_RE = re.compile(r'(?:W/)?("[^"]*")')
_HIGH_BYTES_RE = re.compile(rb"[\x80-\xff]+")
_HEAD_END_RE = re.compile(rb"\n\r?\n")  # where h11 ends a request head (its blank_line_regex)
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None) if termios is not None else None  # SIOCOUTQ
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block the worker thread
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


@dataclass(frozen=True)
class Health:
    """What ``/healthz`` reports; the service supplies a callable returning it."""

    ok: bool
    last_scan: datetime | None
    items: int
    files_pending: int
    alert_backlog: int
    detail: Mapping[str, object] = field(default_factory=dict)


# --------------------------------------------------------------------------- artefact cache


@dataclass(frozen=True)
class _Artefact:
    """One file's bytes with everything a response needs, computed once per identity."""

    identity: tuple[int, ...]  # see _identity
    body: bytes
    gzipped: bytes | None  # None when gzip would not make it smaller
    etag: str
    gzip_etag: str
    mtime: int  # whole seconds, the Last-Modified value
    last_modified: str

    @property
    def cost(self) -> int:
        return len(self.body) + len(self.gzipped or b"")


def _identity(st: os.stat_result) -> tuple[int, ...]:
    # ctime_ns too: unlike mtime it cannot be set back with utime, so an inode reused for a
    # same-size file with a copied mtime is still told apart.
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _build_artefact(body: bytes, st: os.stat_result) -> _Artefact:
    return _artefact_of(body, _identity(st), st.st_mtime_ns // 1_000_000_000)


def _artefact_of(body: bytes, identity: tuple[int, ...], mtime: int) -> _Artefact:
    digest = hashlib.sha256(body).hexdigest()[:ETAG_HEX_CHARS]
    packed = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
    return _Artefact(
        identity=identity,
        body=body,
        gzipped=packed if len(packed) < len(body) else None,
        etag=f'"{digest}"',
        gzip_etag=f'"{digest}-gz"',
        mtime=mtime,
        last_modified=email.utils.formatdate(mtime, usegmt=True),
    )


class _ArtefactCache:
    """LRU of artefacts keyed by real path; an entry is reused while the file identity holds."""

    def __init__(self, max_entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, _Artefact] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def load(self, real_path: str) -> _Artefact | None:
        """The artefact for a regular file at ``real_path``; None if it is not one."""
        try:
            fd = os.open(real_path, _OPEN_FLAGS)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            cached = self._get(real_path, _identity(st))
            if cached is not None:
                return cached
            with open(fd, "rb", closefd=False) as handle:
                body = handle.read()
            after = os.fstat(fd)
        finally:
            os.close(fd)
        artefact = _build_artefact(body, st)
        if _identity(after) == artefact.identity and len(body) == st.st_size:
            self._put(real_path, artefact)
        return artefact

    def derived(self, key: str, base: _Artefact, make: Callable[[bytes], bytes]) -> _Artefact:
        """``make(base.body)`` as an artefact of its own (a filtered feed), kept under ``key``
        while the file ``base`` was read from stays the same."""
        cached = self._get(key, base.identity)
        if cached is not None:
            return cached
        artefact = _artefact_of(make(base.body), base.identity, base.mtime)
        self._put(key, artefact)
        return artefact

    def _get(self, key: str, identity: tuple[int, ...]) -> _Artefact | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.identity != identity:
                return None
            self._entries.move_to_end(key)
            return entry

    def _put(self, key: str, artefact: _Artefact) -> None:
        if artefact.cost > self._max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.cost
            self._entries[key] = artefact
            self._bytes += artefact.cost
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.cost


# --------------------------------------------------------------------------- path safety


def _request_segments(scope: Scope) -> list[str] | None:
    """The requested path as safe segments (``[]`` for ``/``), or None if it is not acceptable."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        raw = str(scope.get("path", "")).encode("utf-8", "surrogateescape")
    if not raw.startswith(b"/"):
        return None
    try:
        decoded = unquote_to_bytes(raw).decode("ascii")
    except UnicodeDecodeError:
        return None
    if decoded == "/":
        return []
    segments = decoded[1:].split("/")
    if all(_SEGMENT_RE.fullmatch(segment) for segment in segments):
        return segments
    return None


def _content_type(name: str) -> str | None:
    _, dot, suffix = name.rpartition(".")
    return CONTENT_TYPES.get(f".{suffix.lower()}") if dot else None


def _resolve(root_real: str, segments: list[str]) -> str | None:
    """Real path of the target if it stays inside ``root_real`` and is a visible known artefact."""
    real = os.path.realpath(os.path.join(root_real, *segments))
    try:
        relative = os.path.relpath(real, root_real)
    except ValueError:  # other drive on Windows
        return None
    parts = relative.split(os.sep)
    if any(part.startswith(".") for part in parts) or _content_type(parts[-1]) is None:
        return None
    return real


# --------------------------------------------------------------------------- content negotiation


def _qvalue(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (explicitly or via ``*``), q > 0."""
    gzip_q: float | None = None
    star_q: float | None = None
    for member in accept_encoding.split(","):
        coding, _, params = member.partition(";")
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            gzip_q = max(gzip_q or 0.0, _qvalue(params))
        elif coding == "*":
            star_q = _qvalue(params)
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def _if_none_match(value: str, etags: tuple[str, ...]) -> bool:
    """Weak comparison (RFC 9110 13.1.2): any listed tag equals one of ours, W/ ignored."""
    if any(member.strip() == "*" for member in value.split(",")):
        return True
    return any(tag in etags for tag in _ETAG_RE.findall(value))


def _modified_since(value: str, mtime: int) -> bool:
    try:
        since = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return True  # an invalid date is ignored
    return mtime > since.timestamp()


def _is_not_modified(headers: Headers, artefact: _Artefact) -> bool:
    none_match = headers.getlist("if-none-match")
    if none_match:
        return _if_none_match(", ".join(none_match), (artefact.etag, artefact.gzip_etag))
    since = headers.getlist("if-modified-since")
    return len(since) == 1 and not _modified_since(since[0], artefact.mtime)


# --------------------------------------------------------------------------- responses


def _plain(status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
    return PlainTextResponse(f"{text}\n", status_code=status, headers=headers)


def _not_found() -> Response:
    return _plain(404, "Not Found")


def _artefact_response(
    request: Request, artefact: _Artefact, content_type: str, cache_control: str
) -> Response:
    use_gzip = artefact.gzipped is not None and accepts_gzip(
        ", ".join(request.headers.getlist("accept-encoding"))
    )
    headers = {
        "ETag": artefact.gzip_etag if use_gzip else artefact.etag,
        "Last-Modified": artefact.last_modified,
        "Cache-Control": cache_control,
        "Vary": "Accept-Encoding",
    }
    if _is_not_modified(request.headers, artefact):
        return Response(status_code=304, headers=headers)
    headers["Content-Type"] = content_type
    headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    body = artefact.gzipped if use_gzip and artefact.gzipped is not None else artefact.body
    return Response(body, headers=headers)  # Starlette drops the body for HEAD


def websub_links(hubs: Sequence[str], self_url: str) -> str:
    """The ``Link`` header WebSub subscribers look for: the hubs, and the feed's own URL."""
    return ", ".join([*(f'<{hub}>; rel="hub"' for hub in hubs), f'<{self_url}>; rel="self"'])


def _jsonable(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def health_payload(state: Health) -> dict[str, object]:
    """The ``/healthz`` JSON object; the fixed fields win over same-named ``detail`` keys."""
    payload: dict[str, object] = {str(key): value for key, value in state.detail.items()}
    payload.update(
        status="ok" if state.ok else "degraded",
        last_scan=state.last_scan.isoformat() if state.last_scan is not None else None,
        items=state.items,
        files_pending=state.files_pending,
        alert_backlog=state.alert_backlog,
    )
    head = ("status", "last_scan", "items", "files_pending", "alert_backlog")
    return {key: payload[key] for key in (*head, *(k for k in payload if k not in head))}


# --------------------------------------------------------------------------- guard middleware


_date_cache: tuple[int, bytes] = (-1, b"")


def _http_date() -> bytes:
    """The ``Date`` header value for now (uvicorn's own, refreshed by polling, is off)."""
    global _date_cache
    second = int(time.time())
    cached_second, value = _date_cache
    if cached_second != second:
        value = email.utils.formatdate(second, usegmt=True).encode("ascii")
        _date_cache = (second, value)
    return value


class _Guard:
    """Outer checks for every request: URL length, method, nosniff, and no crash on errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        early = self._early_response(scope)
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-content-type-options", b"nosniff"),
                    (b"date", _http_date()),
                ]
            await send(message)

        try:
            await (early or self.app)(scope, receive, guarded_send)
        except Exception:
            logger.exception("request failed: %s %r", scope.get("method"), scope.get("path"))
            if not started:
                await _plain(500, "Internal Server Error")(scope, receive, guarded_send)

    @staticmethod
    def _early_response(scope: Scope) -> Response | None:
        raw = scope.get("raw_path") or str(scope.get("path", "")).encode()
        if len(raw) + len(scope.get("query_string", b"")) > MAX_URL_BYTES:
            return _plain(414, "URI Too Long")
        if (
            sum(len(name) + len(value) for name, value in scope.get("headers", ()))
            > MAX_HEADER_BYTES
        ):
            return _plain(431, "Request Header Fields Too Large")
        if scope.get("method") not in ALLOWED_METHODS:
            return _plain(405, "Method Not Allowed", {"Allow": ALLOW_HEADER})
        return None


# --------------------------------------------------------------------------- app


def create_app(
    output_dir: Path,
    *,
    max_age: int = 300,
    health: Callable[[], Health],
    registry: prometheus_client.CollectorRegistry,
    hubs: Sequence[str] = (),
    base_url: str = "",
) -> Starlette:
    """The ASGI app serving ``output_dir`` plus ``/healthz`` and ``/metrics``. With WebSub
    ``hubs``, feeds carry a ``Link`` header naming them and the feed's URL under ``base_url``."""
    root_real = os.path.realpath(output_dir)
    cache = _ArtefactCache()
    # Filtered feeds apart: any number of distinct queries cannot push the files out.
    filtered = _ArtefactCache(FILTERED_CACHE_ENTRIES, FILTERED_CACHE_BYTES)
    cache_control = f"public, max-age={max(0, int(max_age))}"

    def lookup(segments: list[str], wanted: FeedFilter | None, url: str) -> _Artefact | None:
        as_json = segments[-1].endswith(JSON_FEED_SUFFIX)
        if as_json:  # a JSON Feed is made from the Atom feed of the same name
            segments = [*segments[:-1], segments[-1].removesuffix(JSON_FEED_SUFFIX) + ".atom"]
        real = _resolve(root_real, segments)
        artefact = cache.load(real) if real is not None else None
        if artefact is None or (wanted is None and not as_json):
            return artefact
        query = wanted.query() if wanted is not None else ""
        own_url = f"{url}?{query}" if query else url

        def make(body: bytes) -> bytes:
            if wanted is not None:
                body = filter_feed(body, wanted, own_url)
            return json_feed(body, own_url) if as_json else body

        key = f"{real}{JSON_FEED_SUFFIX if as_json else ''}?{query}"
        return filtered.derived(key, artefact, make)

    async def serve_file(request: Request) -> Response:
        segments = _request_segments(request.scope)
        if segments is None:
            return _not_found()
        segments = segments or [INDEX_FILE]
        content_type = _content_type(segments[-1])
        if content_type is None:
            return _not_found()
        is_json = segments[-1].endswith(JSON_FEED_SUFFIX)
        is_feed = is_json or segments[-1].endswith(FEED_SUFFIXES)
        url = (base_url or str(request.base_url)) + "/".join(segments)
        query: bytes = request.scope.get("query_string", b"")
        try:
            wanted = FeedFilter.from_query(query) if is_feed and query else None
        except FilterError as exc:
            return _plain(400, f"Bad Request: {exc}")
        artefact = await run_in_threadpool(lookup, segments, wanted, url)
        if artefact is None:
            return _not_found()
        response = _artefact_response(request, artefact, content_type, cache_control)
        # Hubs are told of the unfiltered RSS and Atom feeds only.
        if hubs and is_feed and not is_json and wanted is None:
            response.headers["Link"] = websub_links(hubs, url)
        return response

    async def healthz(request: Request) -> Response:
        state = await run_in_threadpool(health)
        body = json.dumps(health_payload(state), ensure_ascii=False, default=_jsonable)
        return Response(
            body.encode("utf-8"),
            status_code=200 if state.ok else 503,
            headers={"Cache-Control": "no-store", "Content-Type": "application/json"},
        )

    async def metrics(request: Request) -> Response:
        data = await run_in_threadpool(prometheus_client.generate_latest, registry)
        return Response(
            data,
            headers={
                "Cache-Control": "no-store",
                "Content-Type": prometheus_client.CONTENT_TYPE_LATEST,
            },
        )

    routes = [
        Route("/healthz", healthz, methods=list(ALLOWED_METHODS)),
        Route("/metrics", metrics, methods=list(ALLOWED_METHODS)),
        Route("/{path:path}", serve_file, methods=list(ALLOWED_METHODS)),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(_Guard)])
    app.state.artefact_cache = cache
    return app


# --------------------------------------------------------------------------- raw bytes in URLs


def _percent_encode_high(data: bytes) -> bytes:
    """Each byte >= 0x80 as ``%XX``; every other byte, and so every delimiter, stays as it is."""
    if data.isascii():
        return data
    return _HIGH_BYTES_RE.sub(lambda run: b"%" + run[0].hex("%").upper().encode(), data)


class _RequestLineEncoder(h11.Connection):
    """An h11 connection that percent-encodes bytes >= 0x80 in request lines, nowhere else.

    Received bytes are held back and handed to h11 piece by piece, so that h11 never holds a byte
    past the end of the request head it is reading: a pipelined request's line stays here until
    h11 starts the next cycle. Where a request line begins is h11's own knowledge (idle, nothing
    buffered), never a guess from framing of our own; when h11 does hold bytes of the next request
    (a pipelined request behind a body), they go on raw, and h11 answers 400 as it always did.
    """

    def __init__(self, max_incomplete_event_size: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size)
        self._held = bytearray()
        self._held_eof = False
        self._eof_passed = False
        self._in_request_line = True  # the next byte given to h11 belongs to a request line
        self._head_tail = b""  # the last bytes of this head given to h11: a split blank line

    def receive_data(self, data: bytes) -> None:
        if data and self._held_eof:
            raise RuntimeError("received close, then received more data?")
        self._held += data
        self._held_eof = self._held_eof or not data

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        event = super().next_event()
        while event is h11.NEED_DATA and self._pass_on():
            event = super().next_event()
        if event is h11.NEED_DATA and self._held:
            return h11.PAUSED  # a pipelined request waits for start_next_cycle, as in h11
        return event

    def start_next_cycle(self) -> None:
        super().start_next_cycle()
        buffered = super().trailing_data[0]
        self._in_request_line = not buffered
        self._head_tail = buffered[-2:]

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        data, closed = super().trailing_data
        return data + bytes(self._held), closed or self._held_eof

    def _pass_on(self) -> bool:
        """Hand h11 what it may see next; False when nothing can go yet."""
        if self._held and self.their_state is h11.IDLE:
            self._pass_on_head()
        elif self._held and self.their_state is not h11.DONE:
            super().receive_data(bytes(self._held))  # a body, or data h11 will refuse
            self._held.clear()
        elif self._held_eof and not self._held and not self._eof_passed:
            self._eof_passed = True
            super().receive_data(b"")
        else:
            return False
        return True

    def _pass_on_head(self) -> None:
        if self._in_request_line:
            line = self._take(self._held.find(b"\n") + 1 or len(self._held))
            self._in_request_line = not line.endswith(b"\n")
            self._give_head(_percent_encode_high(line))
            if self._in_request_line:
                return
        self._give_head(self._take(self._head_end()))

    def _head_end(self) -> int:
        """How many held bytes reach the end of the head (all of them if it is not here yet)."""
        across = _HEAD_END_RE.search(self._head_tail + self._held[:2])
        if across is not None and across.end() > len(self._head_tail):
            return across.end() - len(self._head_tail)
        within = _HEAD_END_RE.search(self._held)
        return within.end() if within is not None else len(self._held)

    def _take(self, count: int) -> bytes:
        piece = bytes(self._held[:count])
        del self._held[:count]
        return piece

    def _give_head(self, piece: bytes) -> None:
        if piece:  # an empty piece would tell h11 the connection closed
            self._head_tail = (self._head_tail + piece)[-2:]
            super().receive_data(piece)


class _H11Protocol(H11Protocol):
    """uvicorn's h11 protocol with request lines percent-encoded (``_RequestLineEncoder``)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, object],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn = _RequestLineEncoder(config.h11_max_incomplete_event_size or MAX_HEADER_BYTES)
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._unsent = 0  # bytes waiting in the transport when the write timer was armed
        self._wrote = False  # the transport's buffer drained below its low mark since then

    # A connection gets ``head_timeout`` seconds for each request head: uvicorn's keep-alive
    # timeout ends when any byte arrives, and nothing limits a head that never completes, so
    # idle or trickling clients could hold every file descriptor of the process (the ingest
    # then cannot open articles).
    head_timeout = HEAD_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a head arrived (or the connection ended)
            self._cancel_head_timer()

    # A client that stops reading holds its connection (and the unsent rest of a feed, copied
    # into the transport's buffer) forever: nothing in uvicorn times out a write, and closing
    # waits for the buffer to drain. A connection whose unsent data (in the transport and in
    # the kernel's send queue) has not shrunk for ``write_timeout`` seconds is reset.
    write_timeout = WRITE_TIMEOUT

    def pause_writing(self) -> None:
        super().pause_writing()
        self._watch_writes()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._wrote = True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_writes()  # an answer still on its way holds the connection open
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # the next request's head

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().connection_lost(exc)

    def _watch_writes(self) -> None:
        if self._write_timer is None and self.transport.get_write_buffer_size():
            self._unsent = self._unsent_bytes()
            self._wrote = False
            self._write_timer = self.loop.call_later(self.write_timeout, self._check_writes)

    def _check_writes(self) -> None:
        self._write_timer = None
        if not self.transport.get_write_buffer_size():
            return  # all handed to the kernel: an idle connection (the head timer's)
        if self._wrote or self._unsent_bytes() < self._unsent:  # the client took some
            self._watch_writes()
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:  # reset, so the kernel drops its copy too (no lingering close)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def _unsent_bytes(self) -> int:
        """What the client has not taken yet: the transport's buffer and the kernel's send
        queue (which the client drains first; Linux, elsewhere the buffer only)."""
        unsent = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        if sock is not None and _OUTQ is not None:
            with contextlib.suppress(OSError, ValueError):
                queued = fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0")
                unsent += int(struct.unpack("i", queued)[0])
        return unsent

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.close()


# --------------------------------------------------------------------------- server thread


class _QuietServer(uvicorn.Server):
    """A uvicorn server whose main loop sleeps until asked to exit.

    uvicorn's own main loop wakes every 0.1 s to poll ``should_exit`` and refresh its Date
    header; an idle service must not wake at all. ``request_exit`` may be called from any
    thread, before, during or after the main loop.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit = asyncio.Event()

    async def main_loop(self) -> None:
        await self.on_tick(0)  # sets the default headers once (no Date: see ServerThread)
        with self._exit_lock:
            self._loop = asyncio.get_running_loop()
            if self.should_exit:
                return
        await self._exit.wait()

    def request_exit(self) -> None:
        """Graceful stop: the main loop returns and uvicorn shuts down as usual."""
        with self._exit_lock:
            self.should_exit = True
            loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(self._exit.set)


class ServerThread:
    """Runs uvicorn for ``app`` in a daemon thread on ``host:port`` (port 0 = a free port)."""

    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        *,
        log_level: str = "warning",
        head_timeout: float = HEAD_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
    ) -> None:
        self.host = host
        protocol = type(
            "_H11Protocol",
            (_H11Protocol,),
            {"head_timeout": head_timeout, "write_timeout": write_timeout},
        )
        self._requested_port = port
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            log_config=None,  # leave the service's logging set-up alone
            http=protocol,  # h11_max_incomplete_event_size caps request line + headers
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            ws="none",
            lifespan="auto",
            server_header=False,
            date_header=False,  # _Guard adds it; uvicorn would wake 10 times a second for it
            timeout_keep_alive=5,
        )
        self._server = _QuietServer(self._config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        """The bound port; only known once ``start`` has returned."""
        if self._socket is None:
            raise RuntimeError("server not started")
        return int(self._socket.getsockname()[1])

    def start(self, timeout: float = 10) -> None:
        """Start serving; returns once the socket accepts connections."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._socket = _bind(self.host, self._requested_port)
        self._thread = threading.Thread(target=self._run, name="feeds-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("HTTP server failed to start") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"HTTP server not up after {timeout} s")
            time.sleep(0.01)

    def stop(self, timeout: float = 5) -> None:
        """Graceful shutdown (finish in-flight requests), forced after ``timeout`` seconds."""
        thread = self._thread
        if thread is not None:
            self._server.request_exit()
            thread.join(timeout)
            if thread.is_alive():
                self._server.force_exit = True
                thread.join(timeout)
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        assert self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # reported by start(); never an unhandled thread error
            self._error = exc
            logger.exception("HTTP server stopped with an error")


def probe_listen(host: str, port: int) -> None:
    """Raise OSError when ``host:port`` cannot be listened on (taken, no such address)."""
    _bind(host, port).close()


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock
