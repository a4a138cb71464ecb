"""HTTP side: real uvicorn in a thread on 127.0.0.1, real httpx client, real files."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import h11
import httpx
import prometheus_client
import pytest
from starlette.types import Receive, Scope, Send

from feeds.server import (
    CONTENT_TYPES,
    MAX_HEADER_BYTES,
    Health,
    ServerThread,
    _ArtefactCache,
    _percent_encode_high,
    _RequestLineEncoder,
    accepts_gzip,
    create_app,
)

RSS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>全部</title>'
    + "".join(f"<item><title>新闻 {i}</title><guid>id-{i}</guid></item>" for i in range(50))
    + "</channel></rss>\n"
).encode()
ATOM = b'<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom"/>\n'
OPML = b'<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0"><body/></opml>\n'
INDEX = "<!doctype html><title>财经新闻</title><p>订阅</p>\n".encode()
SECRET = b"TOP-SECRET-OUTSIDE-OUTPUT"
MAX_AGE = 120
PAST = 1_700_000_000  # 2023-11-14, a whole second


def write_atomic(path: Path, data: bytes, mtime: int | None = None) -> None:
    """Write like the service does: temp file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".tmp-{path.name}")
    temp.write_bytes(data)
    if mtime is not None:
        os.utime(temp, (mtime, mtime))
    os.replace(temp, path)


def healthy() -> Health:
    return Health(
        ok=True,
        last_scan=datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        items=42,
        files_pending=1,
        alert_backlog=2,
        detail={"version": "0.1.0"},
    )


@dataclass
class HealthBox:
    state: Health = field(default_factory=healthy)
    error: Exception | None = None

    def __call__(self) -> Health:
        if self.error is not None:
            raise self.error
        return self.state


@dataclass
class Site:
    root: Path  # the tmp folder holding output/ and files outside it
    output: Path
    url: str
    port: int
    health: HealthBox
    counter: prometheus_client.Counter


def write_baseline(root: Path) -> None:
    output = root / "output"
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    output.mkdir()
    write_atomic(output / "index.html", INDEX)
    write_atomic(output / "feeds.opml", OPML)
    write_atomic(output / "all.rss", RSS, mtime=PAST)
    write_atomic(output / "all.atom", ATOM)
    write_atomic(output / "sources" / "cls.rss", RSS)
    write_atomic(output / "topics" / "hong-guan.atom", ATOM)
    write_atomic(output / "sitemap.xml", b"<urlset/>\n")
    write_atomic(root / "secret.rss", SECRET)


@pytest.fixture(scope="module")
def shared_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One server for the module (start/stop costs ~0.2 s); ``site`` resets its state per test."""
    root = tmp_path_factory.mktemp("site")
    write_baseline(root)
    registry = prometheus_client.CollectorRegistry()
    counter = prometheus_client.Counter("feeds_test_polls", "polls seen", registry=registry)
    health = HealthBox()
    output = root / "output"
    app = create_app(output, max_age=MAX_AGE, health=health, registry=registry)
    server = ServerThread(app, "127.0.0.1", 0)
    server.start()
    try:
        yield Site(root, output, f"http://127.0.0.1:{server.port}", server.port, health, counter)
    finally:
        server.stop()


@pytest.fixture
def site(shared_site: Site) -> Site:
    write_baseline(shared_site.root)
    shared_site.health.state = healthy()
    shared_site.health.error = None
    return shared_site


@pytest.fixture
def client(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=5, headers={"Accept-Encoding": "identity"}) as c:
        yield c


def raw_get(port: int, target: bytes, extra_headers: bytes = b"", method: bytes = b"GET") -> bytes:
    """Send a request byte for byte (httpx would normalise the path) and return the response."""
    request = (
        method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    ) + extra_headers
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request + b"\r\n")
        chunks: list[bytes] = []
        for _ in range(1000):
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# --------------------------------------------------------------------------- content types


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/", "text/html; charset=utf-8", INDEX),
        ("/index.html", "text/html; charset=utf-8", INDEX),
        ("/all.rss", "application/rss+xml; charset=utf-8", RSS),
        ("/all.atom", "application/atom+xml; charset=utf-8", ATOM),
        ("/feeds.opml", "text/x-opml; charset=utf-8", OPML),
        ("/sources/cls.rss", "application/rss+xml; charset=utf-8", RSS),
        ("/topics/hong-guan.atom", "application/atom+xml; charset=utf-8", ATOM),
        ("/sitemap.xml", "application/xml; charset=utf-8", b"<urlset/>\n"),
    ],
)
def test_serves_artefacts_with_types_and_headers(
    client: httpx.Client, path: str, content_type: str, body: bytes
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == body
    assert response.headers["content-length"] == str(len(body))
    assert response.headers["cache-control"] == f"public, max-age={MAX_AGE}"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in response.headers


def test_content_type_table_is_the_documented_one() -> None:
    assert set(CONTENT_TYPES) == {".rss", ".atom", ".opml", ".html", ".xml", ".json"}
    assert all(value.endswith("; charset=utf-8") for value in CONTENT_TYPES.values())


def test_last_modified_is_file_mtime(client: httpx.Client) -> None:
    response = client.get("/all.rss")
    assert response.headers["last-modified"] == formatdate(PAST, usegmt=True)


def assert_one_current_date(headers: httpx.Headers, before: float, after: float) -> None:
    values = headers.get_list("date")
    assert len(values) == 1, values
    assert values[0].endswith(" GMT")
    assert int(before) <= parsedate_to_datetime(values[0]).timestamp() <= after


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/all.rss", {}, 200),
        ("HEAD", "/all.rss", {}, 200),
        ("GET", "/all.rss", {"If-Modified-Since": formatdate(PAST, usegmt=True)}, 304),
        ("GET", "/all.rss", {"Accept-Encoding": "gzip"}, 200),
        ("GET", "/missing.rss", {}, 404),
        ("POST", "/all.rss", {}, 405),
        ("GET", "/healthz", {}, 200),
        ("GET", "/metrics", {}, 200),
        ("GET", "/" + "a" * 3000 + ".rss", {}, 414),
    ],
)
def test_every_response_has_one_current_date(
    client: httpx.Client, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    before = time.time()
    response = client.request(method, path, headers=headers)
    after = time.time()
    assert response.status_code == status
    assert_one_current_date(response.headers, before, after)


def test_error_response_has_a_date(site: Site, client: httpx.Client) -> None:
    site.health.error = RuntimeError("boom")
    before = time.time()
    response = client.get("/healthz")
    after = time.time()
    assert response.status_code == 500
    assert_one_current_date(response.headers, before, after)


def test_date_follows_the_clock_on_a_kept_alive_connection(client: httpx.Client) -> None:
    first = parsedate_to_datetime(client.get("/all.rss").headers["date"]).timestamp()
    while time.time() < first + 1.2:  # into a later second
        time.sleep(0.1)
    before = time.time()
    response = client.get("/all.rss")
    assert_one_current_date(response.headers, before, time.time())
    assert parsedate_to_datetime(response.headers["date"]).timestamp() > first


@pytest.mark.parametrize(
    "name", ["notes.txt", "data.json", "run.py", "README", "all.rss.bak", "all.RSS.gz"]
)
def test_unknown_extensions_are_404_even_when_present(
    site: Site, client: httpx.Client, name: str
) -> None:
    write_atomic(site.output / name, b"present")
    response = client.get(f"/{name}")
    assert response.status_code == 404
    assert b"present" not in response.content


def test_missing_file_is_404(client: httpx.Client) -> None:
    assert client.get("/sources/nope.rss").status_code == 404
    assert client.get("/nope/").status_code == 404


def test_query_string_is_ignored(client: httpx.Client) -> None:
    response = client.get("/all.rss", params={"t": "123"})
    assert response.status_code == 200
    assert response.content == RSS


# --------------------------------------------------------------------------- ETag


def test_etag_is_strong_and_stable(client: httpx.Client) -> None:
    first = client.get("/all.rss").headers["etag"]
    second = client.get("/all.rss").headers["etag"]
    assert first == second
    assert first.startswith('"') and first.endswith('"')
    assert not first.startswith("W/")
    assert first == client.get("/sources/cls.rss").headers["etag"]  # same bytes, same tag
    assert first != client.get("/all.atom").headers["etag"]


def test_etag_changes_with_content_not_with_rewrite(site: Site, client: httpx.Client) -> None:
    before = client.get("/all.rss")
    write_atomic(site.output / "all.rss", RSS, mtime=PAST + 3600)  # identical bytes, new inode
    same = client.get("/all.rss")
    assert same.headers["etag"] == before.headers["etag"]
    assert same.headers["last-modified"] == formatdate(PAST + 3600, usegmt=True)
    write_atomic(site.output / "all.rss", RSS.replace(b"</channel>", b"<x/></channel>"))
    changed = client.get("/all.rss")
    assert changed.headers["etag"] != before.headers["etag"]
    assert changed.content.endswith(b"<x/></channel></rss>\n")


def test_etag_is_a_content_hash(client: httpx.Client) -> None:
    etag = client.get("/all.atom").headers["etag"].strip('"')
    assert hashlib.sha256(ATOM).hexdigest().startswith(etag)
    assert len(etag) >= 16


# --------------------------------------------------------------------------- conditional GET


def test_if_none_match_gives_304_with_validators(client: httpx.Client) -> None:
    etag = client.get("/all.rss").headers["etag"]
    response = client.get("/all.rss", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["last-modified"] == formatdate(PAST, usegmt=True)
    assert response.headers["cache-control"] == f"public, max-age={MAX_AGE}"
    assert "content-length" not in response.headers or response.headers["content-length"] == "0"


@pytest.mark.parametrize(
    ("template", "status"),
    [
        ("{etag}", 304),
        ("W/{etag}", 304),  # weak comparison for If-None-Match
        ('"other", {etag}', 304),
        ('"a","b" ,  W/{etag}', 304),
        ("*", 304),
        ('"other"', 200),
        ('"{bare}"x', 200),  # not our tag
        ("", 200),
    ],
)
def test_if_none_match_forms(client: httpx.Client, template: str, status: int) -> None:
    etag = client.get("/all.rss").headers["etag"]
    value = template.format(etag=etag, bare=etag.strip('"') + "0")
    response = client.get("/all.rss", headers={"If-None-Match": value})
    assert response.status_code == status
    if status == 200:
        assert response.content == RSS


def test_if_none_match_misses_after_change(site: Site, client: httpx.Client) -> None:
    etag = client.get("/all.rss").headers["etag"]
    write_atomic(site.output / "all.rss", RSS + b"\n")
    response = client.get("/all.rss", headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.headers["etag"] != etag


@pytest.mark.parametrize(
    ("offset", "status"),
    [(0, 304), (3600, 304), (-1, 200), (-86400, 200)],
)
def test_if_modified_since(client: httpx.Client, offset: int, status: int) -> None:
    response = client.get(
        "/all.rss", headers={"If-Modified-Since": formatdate(PAST + offset, usegmt=True)}
    )
    assert response.status_code == status
    assert response.content == (b"" if status == 304 else RSS)


def test_if_modified_since_ignores_garbage(client: httpx.Client) -> None:
    response = client.get("/all.rss", headers={"If-Modified-Since": "yesterday-ish"})
    assert response.status_code == 200


def test_if_none_match_takes_precedence(client: httpx.Client) -> None:
    fresh = formatdate(PAST + 60, usegmt=True)
    headers = {"If-None-Match": '"something-else"', "If-Modified-Since": fresh}
    assert client.get("/all.rss", headers=headers).status_code == 200


def test_stale_after_rewrite_gives_200(site: Site, client: httpx.Client) -> None:
    last_modified = client.get("/all.rss").headers["last-modified"]
    write_atomic(site.output / "all.rss", RSS + b"<!-- new -->", mtime=PAST + 10)
    response = client.get("/all.rss", headers={"If-Modified-Since": last_modified})
    assert response.status_code == 200
    assert parsedate_to_datetime(response.headers["last-modified"]).timestamp() == PAST + 10


# --------------------------------------------------------------------------- gzip


def get_raw(
    client: httpx.Client, path: str, headers: dict[str, str]
) -> tuple[httpx.Response, bytes]:
    with client.stream("GET", path, headers=headers) as response:
        return response, b"".join(response.iter_raw())


def test_gzip_variant(client: httpx.Client) -> None:
    plain = client.get("/all.rss")
    response, raw = get_raw(client, "/all.rss", {"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["content-type"] == "application/rss+xml; charset=utf-8"
    assert int(response.headers["content-length"]) == len(raw) < len(RSS)
    assert gzip.decompress(raw) == RSS == plain.content
    gz_etag = response.headers["etag"]
    assert gz_etag != plain.headers["etag"]
    assert gz_etag == plain.headers["etag"][:-1] + '-gz"'
    _, again = get_raw(client, "/all.rss", {"Accept-Encoding": "gzip"})
    assert again == raw


def test_gzip_is_deterministic(site: Site, client: httpx.Client) -> None:
    _, first = get_raw(client, "/all.rss", {"Accept-Encoding": "gzip"})
    write_atomic(site.output / "all.rss", RSS, mtime=PAST + 99)  # forces a recompress
    response, second = get_raw(client, "/all.rss", {"Accept-Encoding": "gzip"})
    assert response.headers["last-modified"] == formatdate(PAST + 99, usegmt=True)
    assert first == second
    assert first[4:8] == b"\x00\x00\x00\x00"  # gzip header MTIME field


def test_gzip_etag_gives_304(client: httpx.Client) -> None:
    gz_etag = client.get("/all.rss", headers={"Accept-Encoding": "gzip"}).headers["etag"]
    response = client.get("/all.rss", headers={"Accept-Encoding": "gzip", "If-None-Match": gz_etag})
    assert response.status_code == 304
    assert response.headers["etag"] == gz_etag
    assert response.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in response.headers
    weak = client.get(
        "/all.rss", headers={"Accept-Encoding": "gzip", "If-None-Match": "W/" + gz_etag}
    )
    assert weak.status_code == 304


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("x-gzip", True),
        ("GZIP;q=0.5", True),
        ("*", True),
        ("br;q=1, *;q=0.1", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=0, *;q=1", False),  # explicit gzip entry beats the wildcard
        ("*;q=0", False),
        ("identity", False),
        ("br, deflate", False),
        ("gzip;q=abc", False),
        ("", False),
    ],
)
def test_accept_encoding_negotiation(client: httpx.Client, accept: str, gzipped: bool) -> None:
    assert accepts_gzip(accept) is gzipped
    response, raw = get_raw(client, "/all.rss", {"Accept-Encoding": accept})
    assert response.status_code == 200
    assert ("content-encoding" in response.headers) is gzipped
    assert (gzip.decompress(raw) if gzipped else raw) == RSS


def test_tiny_file_is_not_gzipped(site: Site, client: httpx.Client) -> None:
    write_atomic(site.output / "tiny.xml", b"<a/>")
    response, raw = get_raw(client, "/tiny.xml", {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert raw == b"<a/>"


# --------------------------------------------------------------------------- methods


@pytest.mark.parametrize("accept", ["identity", "gzip"])
def test_head_matches_get(client: httpx.Client, accept: str) -> None:
    headers = {"Accept-Encoding": accept}
    got = client.get("/all.rss", headers=headers)
    head = client.head("/all.rss", headers=headers)
    assert head.status_code == 200
    assert head.content == b""
    for name in (
        "content-type",
        "content-length",
        "etag",
        "last-modified",
        "cache-control",
        "vary",
        "x-content-type-options",
    ):
        assert head.headers[name] == got.headers[name], name
    assert head.headers.get("content-encoding") == got.headers.get("content-encoding")


def test_head_conditional(client: httpx.Client) -> None:
    etag = client.head("/all.atom").headers["etag"]
    assert client.head("/all.atom", headers={"If-None-Match": etag}).status_code == 304


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
@pytest.mark.parametrize("path", ["/all.rss", "/", "/healthz", "/metrics", "/missing.rss"])
def test_other_methods_are_405(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path, content=b"x")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_405_via_raw_socket_with_body_left_unread(site: Site) -> None:
    response = raw_get(site.port, b"/all.rss", b"Content-Length: 5\r\n", method=b"POST")
    assert status_of(response) == 405
    assert b"\r\nallow: get, head\r\n" in response.lower()
    assert RSS not in response


# --------------------------------------------------------------------------- path safety


TRAVERSALS = [
    b"/../secret.rss",
    b"/../../../../../../etc/passwd",
    b"/sources/../../secret.rss",
    b"/%2e%2e/secret.rss",
    b"/%2E%2E/secret.rss",
    b"/.%2e/secret.rss",
    b"/%2e./secret.rss",
    b"/sources/%2e%2e%2f%2e%2e%2fsecret.rss",
    b"/..%2fsecret.rss",
    b"/..%2Fsecret.rss",
    b"/%2fetc%2fpasswd",
    b"/%2F..%2Fsecret.rss",
    b"/..\\secret.rss",
    b"/sources\\..\\..\\secret.rss",
    b"/%5c..%5csecret.rss",
    b"/..%5Csecret.rss",
    b"/%252e%252e/secret.rss",
    b"/%252e%252e%252fsecret.rss",
    b"/%25252e%25252e/secret.rss",
    b"/all.rss%00",
    b"/all.rss%00.html",
    b"/%00../secret.rss",
    b"//etc/passwd",
    b"//" + b"/".join([b".."] * 3) + b"/secret.rss",
    b"/./all.rss",
    b"/sources/./cls.rss",
    b"/sources//cls.rss",
    b"/%c0%ae%c0%ae/secret.rss",  # overlong UTF-8 dot
    b"/%e2%80%a5/secret.rss",  # two-dot leader
    b"http://127.0.0.1/../secret.rss",
    b"/C:/Windows/win.ini",
]


@pytest.mark.parametrize("target", TRAVERSALS, ids=lambda t: t.decode("latin-1"))
def test_traversal_spellings_are_404(site: Site, target: bytes) -> None:
    response = raw_get(site.port, target)
    assert status_of(response) == 404, response[:200]
    assert SECRET not in response
    assert b"root:" not in response


def test_literal_nul_and_absolute_paths_never_200(site: Site) -> None:
    for target in (b"/all.rss\x00", b"/etc/passwd", str(site.root / "secret.rss").encode()):
        response = raw_get(site.port, target)
        assert status_of(response) in (400, 404), target
        assert SECRET not in response


def test_symlinks_out_of_output_are_refused(site: Site, client: httpx.Client) -> None:
    outside = site.root / "elsewhere"
    write_atomic(outside / "feed.rss", SECRET)
    (site.output / "passwd.rss").symlink_to("/etc/passwd")
    (site.output / "sources" / "evil.rss").symlink_to(site.root / "secret.rss")
    (site.output / "relative.rss").symlink_to("../secret.rss")
    (site.output / "ext").symlink_to(outside, target_is_directory=True)
    for path in ("/passwd.rss", "/sources/evil.rss", "/relative.rss", "/ext/feed.rss"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert SECRET not in response.content
        assert b"root:" not in response.content


def test_symlink_inside_output_is_followed(site: Site, client: httpx.Client) -> None:
    (site.output / "alias.rss").symlink_to("all.rss")
    (site.output / "hidden-target.rss").symlink_to(".tmp-x.rss")
    write_atomic(site.output / ".tmp-x.rss", b"half-written")
    assert client.get("/alias.rss").content == RSS
    assert client.get("/hidden-target.rss").status_code == 404


@pytest.mark.parametrize(
    "name", [".tmp-all.rss", ".gitkeep", ".hidden.html", "sources/.draft.rss", ".git/config.xml"]
)
def test_hidden_files_are_404(site: Site, client: httpx.Client, name: str) -> None:
    write_atomic(site.output / name, b"hidden content")
    response = client.get(f"/{name}")
    assert response.status_code == 404
    assert b"hidden content" not in response.content


@pytest.mark.parametrize("path", ["/sources", "/sources/", "/topics/", "/dir.rss", "/dir.rss/"])
def test_directories_are_404(site: Site, client: httpx.Client, path: str) -> None:
    (site.output / "dir.rss").mkdir()
    write_atomic(site.output / "dir.rss" / "index.html", b"inner")
    response = client.get(path)
    assert response.status_code == 404
    assert b"cls.rss" not in response.content


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_404_without_blocking(site: Site, client: httpx.Client) -> None:
    os.mkfifo(site.output / "pipe.rss")
    started = time.monotonic()
    assert client.get("/pipe.rss").status_code == 404
    assert time.monotonic() - started < 3


def test_over_long_url_is_414(client: httpx.Client) -> None:
    assert client.get("/" + "a" * 3000 + ".rss").status_code == 414
    assert client.get("/all.rss?" + "q" * 3000).status_code == 414
    assert client.get("/all.rss?" + "q" * 1000).status_code == 200


def test_over_large_headers_are_431(site: Site) -> None:
    response = raw_get(site.port, b"/all.rss", b"X-Big: " + b"b" * 20_000 + b"\r\n")
    assert status_of(response) == 431
    assert RSS not in response
    fine = raw_get(site.port, b"/all.rss", b"X-Small: " + b"b" * 4_000 + b"\r\n")
    assert status_of(fine) == 200


def test_huge_headers_are_cut_off_by_the_parser(site: Site) -> None:
    try:
        response = raw_get(site.port, b"/all.rss", b"X-Huge: " + b"h" * 300_000 + b"\r\n")
    except ConnectionError:
        return  # the server hung up before reading it all: refused
    assert response == b"" or status_of(response) in (400, 431)
    assert RSS not in response


# --------------------------------------------------------------------------- health and metrics


def test_healthz_ok(site: Site, client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "status": "ok",
        "last_scan": "2024-05-01T10:00:00+00:00",
        "items": 42,
        "files_pending": 1,
        "alert_backlog": 2,
        "version": "0.1.0",
    }
    assert list(response.json())[:5] == [
        "status",
        "last_scan",
        "items",
        "files_pending",
        "alert_backlog",
    ]


def test_healthz_degraded_is_503(site: Site, client: httpx.Client) -> None:
    site.health.state = Health(
        ok=False,
        last_scan=None,
        items=0,
        files_pending=7,
        alert_backlog=300,
        detail={"status": "spoofed", "reason": "scan stalled", "since": datetime(2024, 1, 2)},
    )
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"  # detail cannot override the fixed fields
    assert body["last_scan"] is None
    assert body["files_pending"] == 7
    assert body["alert_backlog"] == 300
    assert body["reason"] == "scan stalled"
    assert body["since"] == "2024-01-02T00:00:00"
    assert client.head("/healthz").status_code == 503


def test_failing_health_is_500_and_server_survives(
    site: Site, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    site.health.error = RuntimeError("db password=hunter2 unreachable")
    with caplog.at_level(logging.ERROR, logger="feeds.server"):
        response = client.get("/healthz")
    assert response.status_code == 500
    assert response.text == "Internal Server Error\n"
    assert "hunter2" not in response.text
    assert any("request failed" in record.getMessage() for record in caplog.records)
    site.health.error = None
    assert client.get("/healthz").status_code == 200
    assert client.get("/all.rss").status_code == 200


def test_metrics_exposes_registry(site: Site, client: httpx.Client) -> None:
    site.counter.inc(3)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == prometheus_client.CONTENT_TYPE_LATEST
    assert response.headers["cache-control"] == "no-store"
    assert "# TYPE feeds_test_polls_total counter" in response.text
    total = metric_value(response.text, "feeds_test_polls_total")
    assert total >= 3
    site.counter.inc()
    assert metric_value(client.get("/metrics").text, "feeds_test_polls_total") == total + 1


def metric_value(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in exposition")


# --------------------------------------------------------------------------- robustness


def test_concurrent_reads_during_rewrites_are_consistent(site: Site) -> None:
    versions = [RSS, RSS.replace(b"</channel>", b"<v2/></channel>")]
    expected = {data: '"' + hashlib.sha256(data).hexdigest()[:32] + '"' for data in versions}
    stop = threading.Event()

    def writer() -> None:
        for i in range(300):
            if stop.is_set():
                return
            write_atomic(site.output / "all.rss", versions[i % 2])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with httpx.Client(base_url=site.url, timeout=5) as c:
            for _ in range(60):
                response = c.get("/all.rss", headers={"Accept-Encoding": "identity"})
                assert response.status_code == 200
                assert response.headers["etag"] == expected[response.content]
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_cache_reuses_and_is_bounded(tmp_path: Path) -> None:
    cache = _ArtefactCache(max_entries=3, max_bytes=10_000)
    path = tmp_path / "a.rss"
    write_atomic(path, RSS[:500])
    first = cache.load(str(path))
    assert first is not None
    assert cache.load(str(path)) is first  # unchanged file: not re-read or re-hashed
    write_atomic(path, RSS[:500])
    rewritten = cache.load(str(path))
    assert rewritten is not None and rewritten is not first
    assert rewritten.etag == first.etag
    for i in range(10):
        write_atomic(tmp_path / f"f{i}.rss", RSS[:500])
        assert cache.load(str(tmp_path / f"f{i}.rss")) is not None
    assert len(cache) == 3
    big = tmp_path / "big.rss"
    write_atomic(big, os.urandom(20_000))
    assert cache.load(str(big)) is not None  # served, just not cached
    assert len(cache) == 3
    assert cache.load(str(tmp_path / "missing.rss")) is None
    assert cache.load(str(tmp_path)) is None


# --------------------------------------------------------------------------- raw bytes in URLs

NEWS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>要闻</title>'
    + "".join(
        f"<item><title>{title}</title><guid>n-{n}</guid></item>"
        for n, title in enumerate(["北交所发布新规", "北证50上涨", "广告：北交所开户", "沪市收盘"])
    )
    + "</channel></rss>\n"
).encode()
QUERY = "filter=北交所|北证&filterout=广告&limit=20"
RAW_TARGET = f"/news.rss?{QUERY}".encode()  # what newsboat and curl send
ENCODED_TARGET = f"/news.rss?{quote(QUERY, safe='=&|')}".encode()  # what browsers send


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def request_bytes(target: bytes, *, method: bytes = b"GET", extra: bytes = b"") -> bytes:
    return method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n"


def read_reply(reader: BinaryIO) -> Reply:
    status_line = reader.readline()
    assert status_line.startswith(b"HTTP/1.1 "), f"no answer: {status_line!r}"
    status = int(status_line.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")  # none: the server closes after the answer
    return Reply(status, headers, reader.read(int(length)) if length else reader.read())


@contextlib.contextmanager
def connection(port: int) -> Iterator[tuple[socket.socket, BinaryIO]]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with sock.makefile("rb") as reader:
            yield sock, reader


def exchange(port: int, *requests: bytes) -> list[Reply]:
    """Each request on one kept-alive connection, sent once the previous answer is in."""
    replies = []
    with connection(port) as (sock, reader):
        for request in requests:
            sock.sendall(request)
            replies.append(read_reply(reader))
    return replies


def fetch(port: int, target: bytes) -> Reply:
    (reply,) = exchange(port, request_bytes(target))
    return reply


def test_raw_utf8_query_is_served_as_its_percent_encoded_form(site: Site) -> None:
    write_atomic(site.output / "news.rss", NEWS)
    raw, encoded = fetch(site.port, RAW_TARGET), fetch(site.port, ENCODED_TARGET)
    assert raw.status == encoded.status == 200
    assert raw.body == encoded.body
    assert raw.headers["etag"] == encoded.headers["etag"]
    assert "北交所发布新规".encode() in raw.body and "北证50".encode() in raw.body
    assert "广告".encode() not in raw.body and "沪市".encode() not in raw.body


def test_raw_request_split_byte_by_byte_is_served(site: Site) -> None:
    write_atomic(site.output / "news.rss", NEWS)
    request = request_bytes(RAW_TARGET, extra=b"Connection: close\r\n")
    with connection(site.port) as (sock, reader):
        for index in range(len(request)):  # splits every character and the blank line too
            sock.sendall(request[index : index + 1])
            time.sleep(0.002)
        split = read_reply(reader)
    whole = fetch(site.port, ENCODED_TARGET)
    assert split.status == whole.status == 200
    assert split.body == whole.body and split.headers["etag"] == whole.headers["etag"]


def test_pipelined_and_kept_alive_requests_with_raw_utf8(site: Site) -> None:
    write_atomic(site.output / "news.rss", NEWS)
    plain, filtered = fetch(site.port, b"/news.rss"), fetch(site.port, ENCODED_TARGET)
    pipelined = b"".join(request_bytes(t) for t in (b"/news.rss", RAW_TARGET, b"/news.rss"))
    with connection(site.port) as (sock, reader):
        sock.sendall(pipelined + request_bytes(RAW_TARGET))  # one read holds all four
        replies = [read_reply(reader) for _ in range(4)]
    replies += exchange(site.port, request_bytes(b"/news.rss"), request_bytes(RAW_TARGET))
    assert [reply.status for reply in replies] == [200] * 6
    assert [reply.body for reply in replies] == [plain.body, filtered.body] * 3
    assert plain.body != filtered.body


@pytest.mark.parametrize("cut", [1, 2, 3], ids=["CRLFCR|LF", "CRLF|CRLF", "CR|LFCRLF"])
def test_pipelined_request_behind_a_split_blank_line(site: Site, cut: int) -> None:
    write_atomic(site.output / "news.rss", NEWS)
    first = request_bytes(b"/news.rss")
    with connection(site.port) as (sock, reader):
        sock.sendall(first[:-cut])
        time.sleep(0.05)  # two reads: the first head ends in the second one
        sock.sendall(first[-cut:] + request_bytes(RAW_TARGET))
        replies = [read_reply(reader) for _ in range(2)]
    assert [reply.status for reply in replies] == [200, 200]
    assert replies[1].body == fetch(site.port, ENCODED_TARGET).body


@pytest.mark.parametrize("name", ["全部.rss", "北交所.rss", "sources/财联社.rss"])
def test_raw_utf8_in_the_path_is_still_404(site: Site, name: str) -> None:
    write_atomic(site.output / name, RSS)  # present, but not a plain ASCII path
    for target in (f"/{name}", f"/{name}?filter=北交所"):
        assert fetch(site.port, target.encode()).status == 404, target
        assert fetch(site.port, quote(target, safe="/?=").encode()).status == 404, target


def test_url_limit_counts_the_percent_encoded_form(site: Site) -> None:
    def target(chars: int) -> bytes:
        return ("/all.rss?filter=" + "北" * chars).encode()  # 3 bytes raw, 9 encoded each

    assert fetch(site.port, target(700)).status == 414  # 2,116 bytes as received
    assert fetch(site.port, target(300)).status == 414  # 916 as received, 2,716 encoded
    assert fetch(site.port, quote(target(300), safe="/?=").encode()).status == 414
    assert fetch(site.port, target(200)).status == 200  # 1,816 encoded


def test_only_bytes_from_0x80_are_encoded() -> None:
    every_byte = bytes(range(256))
    high = b"".join(b"%%%02X" % byte for byte in range(0x80, 0x100))
    assert _percent_encode_high(every_byte) == every_byte[:0x80] + high


def test_request_line_encoder_hands_h11_one_request_at_a_time() -> None:
    conn = _RequestLineEncoder(MAX_HEADER_BYTES)
    second = request_bytes("/x?é".encode())
    conn.receive_data(request_bytes(RAW_TARGET) + second)
    request = conn.next_event()
    assert isinstance(request, h11.Request) and request.target == ENCODED_TARGET
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    # the next request waits, unparsed and as received, until the next cycle, as in h11 (and
    # uvicorn stops reading from the socket meanwhile)
    assert conn.next_event() is h11.PAUSED
    assert conn.trailing_data == (second, False)
    conn.send(h11.Response(status_code=204, headers=[]))
    conn.send(h11.EndOfMessage())
    conn.start_next_cycle()
    request = conn.next_event()
    assert isinstance(request, h11.Request) and request.target == b"/x?%C3%A9"


# What an app sees, so that bytes outside request lines can be shown to arrive untouched.
async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    seen = {
        "target": scope["raw_path"] + b"?" + scope["query_string"],
        "x-word": dict(scope["headers"]).get(b"x-word", b""),
        "body": body,
    }
    reply = json.dumps({key: value.decode("latin-1") for key, value in seen.items()}).encode()
    length = str(len(reply)).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]}
    )
    await send({"type": "http.response.body", "body": reply})


def seen_by_app(reply: Reply) -> dict[str, bytes]:
    assert reply.status == 200, reply
    return {key: value.encode("latin-1") for key, value in json.loads(reply.body).items()}


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    with ServerThread(echo_app, "127.0.0.1", 0) as server:
        yield server.port


LOOKALIKE = "GET /?北 HTTP/1.1\r\n北交所\r\n\r\n".encode()  # a body that looks like a request


def post_with_raw_bytes(word: str, body: bytes) -> bytes:
    extra = b"X-Word: %s\r\nContent-Length: %d\r\n" % (word.encode(), len(body))
    return request_bytes(f"/echo?q={word}".encode(), method=b"POST", extra=extra) + body


def test_raw_utf8_in_headers_and_bodies_is_left_alone(echo_port: int) -> None:
    requests = [post_with_raw_bytes("北交所", LOOKALIKE), post_with_raw_bytes("沪市", b"x")]
    first, second = (seen_by_app(reply) for reply in exchange(echo_port, *requests))
    assert first == {
        "target": b"/echo?q=%E5%8C%97%E4%BA%A4%E6%89%80",
        "x-word": "北交所".encode(),  # as h11 hands header values on: raw
        "body": LOOKALIKE,
    }
    assert second == {
        "target": b"/echo?q=%E6%B2%AA%E5%B8%82",
        "x-word": "沪市".encode(),
        "body": b"x",
    }


def test_request_behind_a_body_in_the_same_read(echo_port: int) -> None:
    requests = [post_with_raw_bytes("北交所", LOOKALIKE), request_bytes("/echo?q=沪市".encode())]
    with connection(echo_port) as (sock, reader):
        sock.sendall(b"".join(requests))
        first, second = read_reply(reader), read_reply(reader)
    assert seen_by_app(first)["body"] == LOOKALIKE  # the body keeps its length and bytes
    # h11 has read past the body, so this line is not rewritten: refused as before the encoder
    assert second.status == 400


# --------------------------------------------------------------------------- server thread


def test_server_thread_lifecycle(tmp_path: Path) -> None:
    registry = prometheus_client.CollectorRegistry()
    app = create_app(tmp_path, health=HealthBox(), registry=registry)
    server = ServerThread(app, "127.0.0.1", 0)
    with pytest.raises(RuntimeError):
        _ = server.port
    server.start(timeout=10)
    port = server.port
    assert port > 0
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 404  # no index yet
    started = time.monotonic()
    server.stop(timeout=5)
    assert time.monotonic() - started < 5
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def context_switches(native_id: int) -> int:
    lines = Path(f"/proc/self/task/{native_id}/status").read_text().splitlines()
    prefixes = ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
    return sum(int(line.split()[1]) for line in lines if line.startswith(prefixes))


def new_http_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "feeds-http" and t not in before]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_idle_server_thread_never_wakes(tmp_path: Path) -> None:
    app = create_app(tmp_path, health=HealthBox(), registry=prometheus_client.CollectorRegistry())
    before = set(threading.enumerate())
    with ServerThread(app, "127.0.0.1", 0):
        (thread,) = new_http_threads(before)
        assert thread.native_id is not None
        switches = context_switches(thread.native_id)
        for _ in range(50):  # let start-up finish, however busy the machine is
            time.sleep(0.1)
            switches, previous = context_switches(thread.native_id), switches
            if switches == previous:
                break
        time.sleep(0.5)  # uvicorn's own main loop would wake 5 times
        assert context_switches(thread.native_id) == switches


def test_server_thread_stops_at_once_after_start(tmp_path: Path) -> None:
    app = create_app(tmp_path, health=HealthBox(), registry=prometheus_client.CollectorRegistry())
    before = set(threading.enumerate())
    for _ in range(5):  # stop may come before, during or after the main loop starts waiting
        server = ServerThread(app, "127.0.0.1", 0)
        server.start()
        port = server.port
        server.stop()
        assert not new_http_threads(before)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_server_thread_context_manager_and_keep_alive(tmp_path: Path) -> None:
    write_atomic(tmp_path / "all.rss", RSS)
    app = create_app(tmp_path, health=HealthBox(), registry=prometheus_client.CollectorRegistry())
    with ServerThread(app, "127.0.0.1", 0) as server, httpx.Client(timeout=5) as c:
        url = f"http://127.0.0.1:{server.port}/all.rss"
        assert [c.get(url).status_code for _ in range(5)] == [200] * 5
    # stop() returned although the client still held a keep-alive connection


@pytest.fixture
def quick_heads(tmp_path: Path) -> Iterator[int]:
    """A server that gives each request head 0.5 s (the service gives 10 s)."""
    (tmp_path / "all.rss").write_bytes(RSS)
    app = create_app(tmp_path, health=healthy, registry=prometheus_client.CollectorRegistry())
    server = ServerThread(app, "127.0.0.1", 0, head_timeout=0.5)
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


@pytest.mark.parametrize("sent", [b"", b"GET /all.rss HTTP/1.1\r\nHost: x\r\n"])
def test_a_head_that_never_completes_is_cut_off(quick_heads: int, sent: bytes) -> None:
    """Idle or trickling connections cannot hold the process's file descriptors forever."""
    with socket.create_connection(("127.0.0.1", quick_heads), timeout=5) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server, without an answer
        assert 0.4 < time.monotonic() - started < 3


def test_slow_but_complete_heads_and_kept_alive_connections_are_served(quick_heads: int) -> None:
    request = b"GET /all.rss HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", quick_heads), timeout=5) as sock:
        for _ in range(3):  # each head within its own 0.5 s, three in a row on one connection
            for piece in (request[:10], request[10:]):
                sock.sendall(piece)
                time.sleep(0.2)
            reply = b""
            while not reply.endswith(RSS):
                reply += sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200 ")


# --- clients that stop reading ------------------------------------------------------------------

BIG = os.urandom(8 * 1024 * 1024)  # incompressible: the answer is this large on the wire
TCP_ESTABLISHED = 1  # tcpi_state, the first byte of TCP_INFO (Linux)


@pytest.fixture
def quick_writes(tmp_path: Path) -> Iterator[int]:
    """A server that lets an answer stand still for 1 s (the service: 30 s)."""
    (tmp_path / "big.rss").write_bytes(BIG)
    (tmp_path / "all.rss").write_bytes(RSS)
    app = create_app(tmp_path, health=healthy, registry=prometheus_client.CollectorRegistry())
    server = ServerThread(app, "127.0.0.1", 0, write_timeout=1.0)
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def reader(port: int, window: int = 4096) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window)  # the server's writes stall
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /big.rss HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n")
    return sock


def established(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_ESTABLISHED


def test_a_client_that_stops_reading_is_cut_off(quick_writes: int) -> None:
    """It would hold its connection and the rest of the feed in memory for ever."""
    stalled = [reader(quick_writes) for _ in range(3)]
    try:
        with httpx.Client(timeout=10) as client:  # others are served meanwhile
            assert client.get(f"http://127.0.0.1:{quick_writes}/all.rss").content == RSS
        for _ in range(600):  # the server resets them after 1 s without progress
            if not any(established(sock) for sock in stalled):
                break
            time.sleep(0.1)
        assert not any(established(sock) for sock in stalled)
    finally:
        for sock in stalled:
            sock.close()


def test_a_slow_reader_that_keeps_reading_gets_the_whole_answer(quick_writes: int) -> None:
    with reader(quick_writes, 64 * 1024) as sock:
        received = b""
        while not received.endswith(BIG):
            chunk = sock.recv(64 * 1024)
            assert chunk, f"cut off after {len(received)} bytes"
            received += chunk
            time.sleep(0.01)  # slower than the server writes, never standing still
        assert received.startswith(b"HTTP/1.1 200 ")
