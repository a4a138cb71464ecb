"""The real service process under attack over HTTP, and the secrets it must keep.

* Traversal in every spelling (raw sockets: httpx would normalize the path), absolute-form
  targets, symlinks inside the output folder pointing outside, hidden files: never a 200, never
  a byte of what lies outside ``output/``.
* No directory listing; only GET and HEAD; 414 for long URLs, 431 for large headers.
* Webhook secrets (from the environment and from files) and tokens in webhook URLs never appear
  in the log, in ``feeds alerts list --json``, in ``feeds alerts test``, in ``/healthz``,
  ``/metrics``, the output folder or the state database, even when the receiver echoes the
  whole request back in its error answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import hexo_post, write
from tests.service_process import ServiceProcess, wait_for, write_config

pytestmark = pytest.mark.slow

OUTSIDE = b"OUTSIDE-THE-OUTPUT-FOLDER-7f3a"
SIGNING_SECRET = "sig-secret-不可泄露-4242"
DING_SECRET = "SECded1ca7e5b0c4f2a9e8d7c6b5a4f3e2d1"
PATH_TOKEN = "tok3nS3cretPathXyz"
QUERY_TOKEN = "qtok+SECRET/123="  # characters that travel percent-encoded
FILE_TOKEN = "fileTok987654321abc"
DOWN_TOKEN = "downTok5550123zz"
SECRETS = [SIGNING_SECRET, DING_SECRET, PATH_TOKEN, QUERY_TOKEN, FILE_TOKEN, DOWN_TOKEN]


def spellings(secret: str) -> set[bytes]:
    """Every form a secret could take in text: as is, percent-encoded, JSON-escaped."""
    forms = {secret, quote(secret, safe=""), quote(secret), json.dumps(secret)[1:-1]}
    return {form.encode("utf-8") for form in forms}


def assert_no_secret(data: bytes | str, where: str) -> None:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    for secret in SECRETS:
        for form in spellings(secret):
            assert form not in raw, f"{secret!r} leaked into {where} as {form!r}"


# --- an echoing webhook receiver ----------------------------------------------------------------


class EchoReceiver:
    """Answers every POST with 500 and the whole request (line, headers, body) echoed back,
    the worst a broken receiver can do: its answer is logged and stored as the error."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length).decode("utf-8", "replace")
                echo = f"rejected POST {self.path} headers {dict(self.headers)} body {body}"
                receiver.requests.append(echo)
                data = echo.encode("utf-8")
                self.send_response(500)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    service: ServiceProcess
    tmp: Path
    receiver: EchoReceiver
    env: dict[str, str]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("http")
    receiver = EchoReceiver()
    (tmp / "ding-url.txt").write_text(
        f"http://127.0.0.1:{receiver.port}/robot/send?access_token={FILE_TOKEN}\n", "utf-8"
    )
    (tmp / "ding-secret.txt").write_text(DING_SECRET + "\n", "utf-8")
    query = quote(QUERY_TOKEN, safe="")
    json_url = (
        f"http://127.0.0.1:{receiver.port}/services/T01/B02/{PATH_TOKEN}?access_token={query}"
    )
    extra = f"""
[[webhooks]]
name = "json-desk"
url = "{json_url}"
format = "json"
secret = "env:FEEDS_TEST_SIGNING_SECRET"
keywords = ["北交所"]
[[webhooks]]
name = "ding-desk"
url = "file:{tmp / "ding-url.txt"}"
format = "dingtalk"
secret = "file:{tmp / "ding-secret.txt"}"
keywords = ["北交所"]
[[webhooks]]
name = "down-desk"
url = "http://127.0.0.1:{closed_port()}/hook/{DOWN_TOKEN}?key={DOWN_TOKEN}"
format = "wecom"
keywords = ["北交所"]
"""
    config = write_config(tmp, extra)
    text = config.read_text("utf-8").replace("[service]\n", '[service]\nlog_level = "DEBUG"\n', 1)
    config.write_text(text, "utf-8")
    (tmp / "secret.rss").write_bytes(OUTSIDE)
    (tmp / "outside").mkdir()
    (tmp / "outside" / "feed.rss").write_bytes(OUTSIDE)
    write(
        tmp / "articles" / "old.md", hexo_post("北交所旧闻", ["北交所旧闻正文，足够长的一段文字。"])
    )
    env = {**os.environ, "FEEDS_TEST_SIGNING_SECRET": SIGNING_SECRET}
    old = os.environ.get("FEEDS_TEST_SIGNING_SECRET")
    os.environ["FEEDS_TEST_SIGNING_SECRET"] = SIGNING_SECRET  # the child inherits it
    service = ServiceProcess(config).wait_ready()
    try:
        yield Running(service, tmp, receiver, env)
    finally:
        service.kill()
        receiver.stop()
        if old is None:
            os.environ.pop("FEEDS_TEST_SIGNING_SECRET", None)
        else:
            os.environ["FEEDS_TEST_SIGNING_SECRET"] = old


def raw(port: int | None, request: bytes) -> bytes:
    """Send bytes as they are and read the whole answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", port or 0), timeout=10) as sock:
        sock.sendall(request)
        chunks: list[bytes] = []
        for _ in range(10_000):
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def request(port: int | None, target: bytes, method: bytes = b"GET", headers: bytes = b"") -> bytes:
    line = method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    return raw(port, line + headers + b"\r\n")


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


# --- traversal ----------------------------------------------------------------------------------

TRAVERSALS = [
    b"/../secret.rss", b"/../feeds.toml", b"/../../../../../../etc/passwd",
    b"/topics/../../secret.rss", b"/%2e%2e/secret.rss", b"/%2E%2E/feeds.toml", b"/.%2e/secret.rss",
    b"/%2e./secret.rss", b"/topics/%2e%2e%2f%2e%2e%2fsecret.rss", b"/..%2fsecret.rss",
    b"/..%2Ffeeds.toml", b"/topics%2f..%2f..%2fsecret.rss", b"/%2fetc%2fpasswd",
    b"/%2F..%2Fsecret.rss", b"/..\\secret.rss", b"/topics\\..\\..\\secret.rss",
    b"/%5c..%5csecret.rss", b"/..%5Csecret.rss", b"/%252e%252e/secret.rss",
    b"/%252e%252e%252fsecret.rss", b"/%25252e%25252e/secret.rss", b"/all.rss%00",
    b"/all.rss%00.html", b"/%00../secret.rss", b"//etc/passwd", b"///etc/passwd",
    b"//../secret.rss", b"/./all.rss", b"/topics/./beijiaosuo.rss", b"/topics//beijiaosuo.rss",
    b"/%c0%ae%c0%ae/secret.rss", b"/%e2%80%a5/secret.rss", b"/..;/secret.rss",
    b"/%u002e%u002e/secret.rss", b"/outside/feed.rss", b"/../outside/feed.rss",
    b"http://127.0.0.1/../secret.rss", b"http://x/../feeds.toml", b"http://x/%2e%2e/secret.rss",
    b"https://127.0.0.1/../../etc/passwd", b"file:///etc/passwd", b"../secret.rss",
    b"secret.rss", b"*", b"/C:/Windows/win.ini", b"/" + b"../" * 40 + b"etc/passwd",
]  # fmt: skip


def test_traversal_in_every_spelling_is_refused(running: Running) -> None:
    port = running.service.port
    for target in TRAVERSALS:
        response = request(port, target)
        assert status(response) in (400, 404), (target, response[:120])
        assert OUTSIDE not in response and b"root:x:" not in response, target
        assert_no_secret(response, f"the answer to {target!r}")
    assert status(request(port, b"/all.rss")) == 200  # and the server still serves


def test_symlinks_inside_output_pointing_outside_are_refused(running: Running) -> None:
    output = running.tmp / "output"
    links = {
        "passwd.rss": Path("/etc/passwd"),
        "leak.rss": running.tmp / "secret.rss",
        "config.xml": running.tmp / "feeds.toml",
        "relative.rss": Path("../secret.rss"),
        "escape": running.tmp / "outside",
        "topics/up.rss": Path("../../secret.rss"),
    }
    for name, target in links.items():
        (output / name).symlink_to(target)
    try:
        for path in ("/passwd.rss", "/leak.rss", "/config.xml", "/relative.rss",
                     "/escape/feed.rss", "/topics/up.rss"):  # fmt: skip
            response = request(running.service.port, path.encode())
            assert status(response) == 404, (path, response[:120])
            assert OUTSIDE not in response and b"root:x:" not in response
            assert_no_secret(response, path)
    finally:
        for name in links:
            (output / name).unlink()


def test_no_directory_listing_and_no_hidden_files(running: Running) -> None:
    output = running.tmp / "output"
    (output / ".hidden.rss").write_bytes(OUTSIDE)
    try:
        for path in (b"/topics/", b"/topics", b"/sources/", b"/sources", b"/.hidden.rss",
                     b"/output/", b"/articles/", b"/state/feeds.db", b"/.git/"):  # fmt: skip
            response = request(running.service.port, path)
            assert status(response) == 404, (path, response[:120])
            assert b"beijiaosuo.rss" not in response and OUTSIDE not in response
    finally:
        (output / ".hidden.rss").unlink()
    root = request(running.service.port, b"/")
    assert status(root) == 200
    assert root.split(b"\r\n\r\n", 1)[1] == (output / "index.html").read_bytes()  # the page


# --- methods and sizes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method", [b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE", b"PROPFIND", b"FOO"]
)
def test_only_get_and_head(running: Running, method: bytes) -> None:
    for path in (b"/all.rss", b"/healthz", b"/metrics", b"/nowhere"):
        response = request(running.service.port, path, method, b"Content-Length: 0\r\n")
        assert status(response) == 405, (method, path, response[:120])
        assert b"\r\nallow: get, head\r\n" in response.lower()
        assert b"<rss" not in response


def test_connect_and_head(running: Running) -> None:
    connect = raw(running.service.port, b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status(connect) in (400, 405), connect[:120]
    head = request(running.service.port, b"/all.rss", b"HEAD")
    get = request(running.service.port, b"/all.rss")
    assert status(head) == status(get) == 200
    assert head.split(b"\r\n\r\n", 1)[1] == b""
    assert b"<rss" in get


def test_url_and_header_size_caps(running: Running) -> None:
    port = running.service.port
    assert status(request(port, b"/" + b"a" * 3000 + b".rss")) == 414
    assert status(request(port, b"/all.rss?" + b"q" * 3000)) == 414
    assert status(request(port, b"/all.rss?" + b"q" * 500)) == 200
    big = request(port, b"/all.rss", headers=b"X-Big: " + b"b" * 20_000 + b"\r\n")
    assert status(big) == 431 and b"<rss" not in big
    many = b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 100) for n in range(100))
    assert status(request(port, b"/all.rss", headers=many)) == 431
    assert status(request(port, b"/all.rss", headers=b"X-Ok: " + b"o" * 2000 + b"\r\n")) == 200


def test_raw_utf8_filter_words_in_the_url(running: Running) -> None:
    """As newsboat and curl send them: raw UTF-8 in the query works, in the path it is 404."""
    port = running.service.port
    raw_query = request(port, "/all.rss?filter=北交所|北证".encode())
    encoded = request(port, b"/all.rss?filter=%E5%8C%97%E4%BA%A4%E6%89%80|%E5%8C%97%E8%AF%81")
    assert status(raw_query) == status(encoded) == 200
    assert raw_query.split(b"\r\n\r\n", 1)[1] == encoded.split(b"\r\n\r\n", 1)[1]
    assert "北交所旧闻".encode() in raw_query
    assert status(request(port, "/全部.rss?filter=北交所".encode())) == 404
    assert status(request(port, ("/all.rss?filter=" + "北" * 700).encode())) == 414


# --- secrets ------------------------------------------------------------------------------------


def feeds_cli(running: Running, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feeds", *args, "--config", str(running.tmp / "feeds.toml")],
        capture_output=True, text=True, timeout=60, cwd=running.tmp, env=running.env,
    )  # fmt: skip


def test_secrets_never_appear_in_logs_errors_health_or_files(running: Running) -> None:
    write(
        running.tmp / "articles" / "new.md",
        hexo_post("北交所新规", ["北交所发布新规，正文足够长。"]),
    )

    def all_failed_once() -> bool:
        listed = feeds_cli(running, "alerts", "list", "--json").stdout.splitlines()
        rows = [json.loads(line) for line in listed]
        return len(rows) == 3 and all(row["attempts"] >= 1 and row["last_error"] for row in rows)

    wait_for(all_failed_once, timeout=60, what="a failed attempt for each webhook")
    assert len(running.receiver.requests) >= 2  # it echoed our requests, tokens and all
    assert any(PATH_TOKEN in echo for echo in running.receiver.requests)
    listing = feeds_cli(running, "alerts", "list", "--json")
    failed = feeds_cli(running, "alerts", "list", "--failed")
    tested = [feeds_cli(running, "alerts", "test", name) for name in ("json-desk", "ding-desk")]
    health = running.service.get("/healthz").content
    metrics = running.service.get("/metrics").content
    assert "HTTP 500" in listing.stdout and "rejected POST" in listing.stdout
    assert all("HTTP 500" in result.stdout for result in tested)
    outputs: list[tuple[str, bytes | str]] = [
        ("the service log", "\n".join(running.service.log)),
        ("alerts list --json", listing.stdout + listing.stderr),
        ("alerts list --failed", failed.stdout + failed.stderr),
        *((f"alerts test {n}", r.stdout + r.stderr) for n, r in zip("jd", tested, strict=True)),
        ("/healthz", health),
        ("/metrics", metrics),
    ]
    for where, data in outputs:
        assert_no_secret(data, where)
    for path in (running.tmp / "output").rglob("*"):
        if path.is_file():
            assert_no_secret(path.read_bytes(), str(path))
    for path in (running.tmp / "state").iterdir():
        assert_no_secret(path.read_bytes(), str(path))


# --- what a browser may do with what is served -------------------------------------------------


def headers_of(response: bytes) -> dict[str, str]:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in head)}


def test_pages_and_feeds_carry_a_content_security_policy(running: Running) -> None:
    """The index runs nothing and loads nothing but its own style sheet, even if text from an
    article got past the escaping; feeds and the OPML list opened in a browser likewise."""
    port = running.service.port
    for path in (b"/", b"/index.html", b"/all.rss", b"/all.atom", b"/feeds.opml"):
        response = request(port, path)
        headers = headers_of(response)
        assert status(response) == 200 and headers["x-content-type-options"] == "nosniff"
        policy = {
            name: sources
            for name, _, sources in (d.strip().partition(" ") for d in
                                     headers["content-security-policy"].split(";"))
        }  # fmt: skip
        assert policy["default-src"] == "'none'", (path, policy)
        assert policy["base-uri"] == policy["form-action"] == policy["frame-ancestors"] == "'none'"
        assert "script-src" not in policy and "unsafe" not in headers["content-security-policy"]
        if path in (b"/", b"/index.html"):  # the page's own <style> is what the policy allows
            page = response.split(b"\r\n\r\n", 1)[1].decode("utf-8")
            styles = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
            digests = {
                "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
                for s in styles
            }
            assert styles and digests == set(policy["style-src"].split())
