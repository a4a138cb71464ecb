"""Hostile input on disk: every file below is generated into tmp_path (nothing odd lives in git).

Each hostile file either becomes an item (when it can be read honestly) or is rejected with a
clear reason that is logged once and listed by ``feeds errors``; the good files built beside
them are always intact (their items, and every feed file, which must parse).

Encoding traps, hostile and mistyped YAML, binary, empty and huge files, deep HTML, odd file
names, symlink loops, files vanishing mid-build, unreadable files, an unwritable output folder
and a full disk (a small tmpfs, as root).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import feedparser
import pytest

import feeds.pipeline as feeds_pipeline
import feeds.scan as feeds_scan
from feeds.config import Config
from feeds.errors import OutputError, StoreError
from feeds.normalize import LIST_MAX_ITEMS, NAME_MAX_CHARS, TITLE_MAX_CHARS
from feeds.pipeline import Pipeline
from feeds.publish import publish_many
from feeds.store import open_store
from feeds.text import xml_safe
from tests.conftest import ROOT, build, config_at, hexo_post, jekyll_post, write

MAX_BYTES = 1_000_000
IS_ROOT = os.geteuid() == 0
RNG = random.Random(20240514)
HANZI = [chr(c) for c in range(0x4E00, 0x9FA5)]


def sentence(n: int = 60, encoding: str = "utf-8") -> str:
    """Distinct random Chinese text, so near-duplicate detection never merges two cases."""
    chars = "".join(RNG.choice(HANZI) for _ in range(n * 2))
    usable = chars.encode(encoding, "ignore").decode(encoding)  # what the encoding can carry
    return usable[:n] + "。"


def post(title: str, *, extra: str = "", body: str | None = None) -> str:
    text = body if body is not None else f"<p>{sentence()}</p>"
    return f"---\ntitle: {json.dumps(title, ensure_ascii=False)}\n{extra}---\n\n{text}\n"


def hostile_config(tmp: Path, **overrides: Any) -> Config:
    (tmp / "articles").mkdir(parents=True, exist_ok=True)
    limits = {"input": {"max_file_bytes": MAX_BYTES}, "feed": {"limit": 1000}}
    return config_at(tmp, **{**limits, **overrides})


# --- the good files every build carries ---------------------------------------------------------


def write_good(articles: Path) -> dict[str, str]:
    """Good posts of both dialects; returns {path: title}."""
    good = {
        articles / "good" / "hexo.md": hexo_post("北交所好文章一号", [sentence(), sentence()]),
        articles / "good" / "2024-05-14-jekyll.md": jekyll_post(
            "东财好文章二号", [sentence(), sentence()], link="http://finance.eastmoney.com/a/2.html"
        ),
        articles / "good" / "plain.html": post("纯HTML好文章三号"),
    }
    for path, text in good.items():
        write(path, text)
    titles = ["北交所好文章一号", "东财好文章二号", "纯HTML好文章三号"]
    return {str(path): title for path, title in zip(good, titles, strict=True)}


def feed_titles(config: Config, relpath: str) -> list[str]:
    parsed = feedparser.parse((config.output / relpath).read_bytes())
    assert parsed.bozo == 0, (relpath, parsed.get("bozo_exception"))
    return [entry.title for entry in parsed.entries]


def assert_every_feed_parses(output: Path) -> None:
    for path in output.rglob("*"):
        if path.suffix in (".rss", ".atom"):
            parsed = feedparser.parse(path.read_bytes())
            assert parsed.bozo == 0, (path, parsed.get("bozo_exception"))
        assert not path.name.endswith(".tmp"), f"a temporary file was left behind: {path}"


def stored(config: Config) -> dict[str, str]:
    """{path: title} of every live item's member files."""
    store = open_store(config.state)
    try:
        return {path: item.title for item in store.iter_items() for path in item.paths}
    finally:
        store.close()


def stored_errors(config: Config) -> dict[str, str]:
    store = open_store(config.state)
    try:
        return {error.path: error.reason for error in store.errors()}
    finally:
        store.close()


def assert_good_intact(config: Config, good: dict[str, str]) -> None:
    items = stored(config)
    for path, title in good.items():
        assert items.get(path) == title, (path, items.get(path))
    titles = feed_titles(config, "all.rss")
    for title in good.values():
        assert titles.count(title) == 1, title
    assert feed_titles(config, "topics/beijiaosuo.atom").count("北交所好文章一号") == 1
    assert_every_feed_parses(config.output)


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.INFO)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def captured_logs() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = _Collect(records)
    logger = logging.getLogger("feeds")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def messages(records: list[logging.LogRecord]) -> list[str]:
    return [record.getMessage() for record in records]


# --- the cases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    name: str | bytes  # file name inside articles/hostile
    data: bytes | None = None  # None: ``make`` creates the entry
    expect: str = "item"  # "item" | "rejected" | "skipped" (logged, not read)
    detail: str = ""  # the item's title, or a fragment of the reason / log line
    make: Callable[[Path], None] | None = None


def text_post(title: str, **kwargs: Any) -> bytes:
    return post(title, **kwargs).encode("utf-8")


def encoded(title: str, encoding: str, *, bom: bytes = b"", newline: str = "\n") -> bytes:
    text = post(title, body=f"<p>{sentence(60, encoding)}</p>")
    return bom + text.replace("\n", newline).encode(encoding)


def utf8_with(inserted: bytes) -> bytes:
    data = text_post("夹杂编码", body=f"<p>{sentence()}</p><p>{sentence()}</p>")
    middle = len(data) // 2
    while (data[middle] & 0xC0) == 0x80:  # not inside a character
        middle += 1
    return data[:middle] + inserted + data[middle:]


def alias_bomb() -> bytes:
    lines = ["---", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, 10):
        previous = "a" if n == 1 else f"a{n - 1}"
        lines.append(f"a{n}: &a{n} [" + ",".join([f"*{previous}"] * 9) + "]")
    return ("\n".join([*lines, "title: boom", "---", "body"]) + "\n").encode()


PWNED = "/tmp/feeds-hostile-pwned"  # a YAML constructor that ran code would create this

ENCODINGS = [
    Case("utf8-bom-crlf", "bom-crlf.md", encoded("BOM加CRLF", "utf-8", bom=codecs.BOM_UTF8,
         newline="\r\n"), detail="BOM加CRLF"),
    Case("cr-only", "cr.md", encoded("老式换行", "utf-8", newline="\r"), detail="老式换行"),
    Case("utf16le-bom", "u16le.md", encoded("UTF16小端", "utf-16-le", bom=codecs.BOM_UTF16_LE),
         detail="UTF16小端"),
    Case("utf16be-bom", "u16be.md", encoded("UTF16大端", "utf-16-be", bom=codecs.BOM_UTF16_BE),
         detail="UTF16大端"),
    Case("utf16le-no-bom", "u16le-nobom.md", encoded("无BOM小端一号", "utf-16-le"),
         detail="无BOM小端一号"),
    Case("utf16be-no-bom", "u16be-nobom.md", encoded("无BOM大端", "utf-16-be"),
         detail="无BOM大端"),
    Case("utf32-bom", "u32.md", encoded("UTF32文章", "utf-32"), detail="UTF32文章"),
    Case("gbk", "gbk.md", encoded("国标编码文章", "gbk"), detail="国标编码文章"),
    Case("gb18030-4-byte", "gb18030.md", encoded("四字节𠀀文章", "gb18030"), detail="四字节𠀀文章"),
    Case("big5", "big5.md", encoded("北交所發布新規", "big5"), detail="北交所發布新規"),
    Case("utf8-with-gbk-inside", "mixed.md", utf8_with("深交所公告".encode("gbk")), "rejected",
         "invalid UTF-8 at byte"),
    Case("invalid-utf8-in-the-middle", "invalid.md", utf8_with(b"\xff\xfe\x80"), "rejected",
         "invalid UTF-8 at byte"),
    Case("utf8-cut-inside-a-character", "cut.md",
         text_post("截断", body=sentence()).rstrip(b"\n")[:-1], "rejected", "invalid UTF-8"),
    Case("utf16-bom-odd-length", "u16odd.md", encoded("奇数", "utf-16")[:-1], "rejected",
         "invalid utf-16"),
    Case("latin-1", "latin1.md", "---\ntitle: café crème\n---\nbody é".encode("latin-1"),
         "rejected", "undecodable text"),
]  # fmt: skip

YAML = [
    Case("alias-bomb", "bomb.md", alias_bomb(), "rejected", "aliases are not allowed"),
    Case("merge-key-alias", "merge.md", b"---\nbase: &b {title: x}\n<<: *b\n---\nbody\n",
         "rejected", "aliases are not allowed"),
    Case("python-object-tag", "pyobj.md",
         f"---\ntitle: !!python/object/apply:os.system ['touch {PWNED}']\n---\nx\n".encode(),
         "rejected", "bad YAML front matter"),
    Case("bad-timestamp-tag", "stamp.md", b"---\ntitle: t\ndate: !!timestamp 'yesterday'\n---\nx\n",
         "rejected", "bad YAML front matter"),
    Case("deep-flow-nesting", "deep.md", b"---\ntitle: " + b"[" * 50_000 + b"]" * 50_000
         + b"\n---\nx\n", "rejected", "bad YAML front matter"),
    Case("tab-indentation", "tabs.md", b"---\ntitle: x\n\tdate: 2024\n---\nx\n", "rejected",
         "bad YAML front matter"),
    Case("front-matter-is-a-list", "list.md", b"---\n- a\n- b\n---\nx\n", "rejected",
         "front matter is a list"),
    Case("front-matter-is-a-string", "str.md", b"---\njust words\n---\nx\n", "rejected",
         "front matter is a str"),
    Case("unterminated", "unterminated.md", b"---\ntitle: x\nbody without an end\n",
         "rejected", "unterminated YAML front matter"),
    Case("broken-toml", "broken.md", b'+++\ntitle = "x\n+++\nbody\n', "rejected",
         "bad TOML front matter"),
    Case("huge-scalar-title", "huge-title.md", text_post("长" * 300_000), detail="长" * 10),
    Case("huge-plain-key", "huge-key.md", b"---\n" + b"k" * 500_000 + b": v\ntitle: x\n---\nx\n",
         "rejected", "bad YAML front matter"),  # YAML caps implicit keys at 1024 characters
    Case("60000-categories", "cats.md", ("---\ntitle: 分类太多\ncategories:\n" + "".join(
        f" - 分类{n}\n" for n in range(60_000)) + "---\n<p>" + sentence() + "</p>\n").encode(),
         detail="分类太多"),
    Case("binary-title", "binary-title.md", b"---\ntitle: !!binary aGVsbG8=\n---\n<p>"
         + sentence().encode() + b"</p>\n"),
    Case("duplicate-keys", "dupkeys.md", b"---\ntitle: first\ntitle: second\n---\n<p>"
         + sentence().encode() + b"</p>\n", detail="second"),
    Case("empty-front-matter", "empty-fm.md", b"---\n---\n<p>" + sentence().encode()
         + b"</p>\n"),
]  # fmt: skip

BODIES = [  # text cmark writes as bytes that are no UTF-8
    Case("noncharacter-entities-in-markdown", "nonchar.md", text_post("非字符实体",
         body=f"{sentence()}\n\n&#xFFFF; &#xfffe; &#65535; &#1; &#xD800; &#x110000;\n"),
         detail="非字符实体"),
]  # fmt: skip

WRONG_TYPES = ["[1, 2]", "{a: 1}", "42", "true", "null", "2024-05-14", "[2024-05-14]", ".nan",
               "-.inf", "{date: {x: [1]}}", "''", "0x1F", "!!binary aGk="]  # fmt: skip
FIELDS = ["title", "date", "updated", "categories", "tags", "description", "link", "url",
          "source", "author", "image", "headimg", "lang"]  # fmt: skip
MISTYPED = [
    Case(f"{field}-as-{n}", f"type-{field}-{n}.md",
         f"---\n{field}: {value}\n{'' if field == 'title' else 'title: 字段' + field + str(n)}"
         f"\n---\n\n<p>{sentence()}</p>\n".encode())
    for field in FIELDS for n, value in enumerate(WRONG_TYPES)
]  # fmt: skip

BINARY = [
    Case("png", "image.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4,
         "rejected", "binary file"),
    Case("elf", "program.md", b"\x7fELF\x02\x01\x01\x00" + bytes(500), "rejected", "binary file"),
    Case("random-bytes-without-nul", "noise.md",
         bytes(RNG.randrange(1, 256) for _ in range(4000)), "rejected", ""),
    Case("empty", "empty.md", b"", "rejected", "empty file"),
    Case("whitespace-only", "blank.md", b" \n\t\r\n  \n",
         "rejected", "empty file"),
    Case("bom-only", "bom.md", codecs.BOM_UTF8, "rejected", "no front matter"),
    Case("no-front-matter", "README.md", "# 说明\n\n只是笔记。\n".encode(), "rejected",
         "no front matter"),
    Case("too-large", "huge.md", text_post("太大", body="字" * (MAX_BYTES // 3 + 10)), "rejected",
         "file too large"),
    Case("deep-html", "deep.html", text_post("深层嵌套", body="<div>" * 60_000 + "深处的文字。"
         + "</div>" * 60_000), detail="深层嵌套"),
    Case("unclosed-tags", "unclosed.html", text_post("未闭合", body="<b><i><u>" * 30_000 + "x"),
         detail="未闭合"),
]  # fmt: skip


def _loop(folder: Path) -> None:
    os.symlink("loop-b.md", folder / "loop-a.md")
    os.symlink("loop-a.md", folder / "loop-b.md")


def _self_loop(folder: Path) -> None:
    os.symlink("self.md", folder / "self.md")


def _dangling(folder: Path) -> None:
    os.symlink("does-not-exist.md", folder / "dangling.md")


def _directory_loop(folder: Path) -> None:
    os.symlink("..", folder / "up")  # articles/hostile/up -> articles: a loop back to the root


def _fifo(folder: Path) -> None:
    os.mkfifo(folder / "fifo.md")


def _directory_named_like_a_file(folder: Path) -> None:
    write(folder / "folder.md" / "inside.md", post("目录里的文章"))


def _non_utf8_folder(folder: Path) -> None:
    target = os.path.join(os.fsencode(folder), b"dir-\xff")
    os.mkdir(target)
    with open(os.path.join(target, b"inside.md"), "wb") as handle:
        handle.write(text_post("坏目录名里的文章"))


LONG_NAME = "长" * 83 + "xx.md"  # 254 bytes: NAME_MAX is 255
NAMES = [
    Case("leading-dash", "-rf.md", text_post("前导短横线"), detail="前导短横线"),
    Case("double-dash", "--help.md", text_post("双短横线"), detail="双短横线"),
    Case("quotes", "it's \"quoted\".md", text_post("引号文件名"), detail="引号文件名"),
    Case("hash", "#1 news#x.md", text_post("井号文件名"), detail="井号文件名"),
    Case("spaces", "  spaced  name .md", text_post("空格文件名"), detail="空格文件名"),
    Case("newline", "line\nbreak.md", text_post("换行文件名"), detail="换行文件名"),
    Case("tab-and-controls", "tab\there\x01.md", text_post("控制字符文件名"),
         detail="控制字符文件名"),
    Case("glob-characters", "[x]*?.md", text_post("通配符文件名"), detail="通配符文件名"),
    Case("backslash-and-shell", "a\\b;$(x)`y`&.md", text_post("反斜杠文件名"),
         detail="反斜杠文件名"),
    Case("emoji", "📈 行情.md", text_post("表情文件名"), detail="表情文件名"),
    Case("near-name-max", LONG_NAME, text_post("超长文件名"), detail="超长文件名"),
    Case("non-utf8-name", b"gbk-\xb1\xb1\xbd\xbb.md", text_post("非UTF8文件名"), "skipped",
         "not valid UTF-8"),
    Case("non-utf8-folder", "dir-\udcff/inside.md", None, "skipped", "not valid UTF-8",
         _non_utf8_folder),
]  # fmt: skip

SPECIAL = [
    Case("symlink-loop", "loop-a.md", None, "rejected", "Too many levels of symbolic links",
         _loop),
    Case("symlink-loop-partner", "loop-b.md", None, "rejected",
         "Too many levels of symbolic links"),
    Case("symlink-to-itself", "self.md", None, "rejected", "Too many levels of symbolic links",
         _self_loop),
    Case("dangling-symlink", "dangling.md", None, "rejected", "broken symbolic link", _dangling),
    Case("directory-symlink-loop", "up", None, "none", "", _directory_loop),
    Case("fifo", "fifo.md", None, "none", "", _fifo),
    Case("directory-named-like-a-file", "folder.md/inside.md", None, "item", "目录里的文章",
         _directory_named_like_a_file),
]  # fmt: skip

CASES = [*ENCODINGS, *YAML, *BODIES, *MISTYPED, *BINARY, *NAMES, *SPECIAL]
assert len({case.id for case in CASES}) == len(CASES)


def case_path(hostile: Path, case: Case) -> str:
    if isinstance(case.name, bytes):
        return os.fsdecode(os.path.join(os.fsencode(hostile), case.name))
    return os.fsdecode(os.fsencode(str(hostile / case.name)))


@dataclass
class Built:
    config: Config
    hostile: Path
    good: dict[str, str]
    rejected: dict[str, str]
    logs: list[str]
    items: dict[str, str]
    errors: dict[str, str]
    seconds: float


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    tmp = tmp_path_factory.mktemp("hostile")
    config = hostile_config(tmp)
    articles = tmp / "articles"
    good = write_good(articles)
    hostile = articles / "hostile"
    hostile.mkdir()
    for case in CASES:
        if case.make is not None:
            case.make(hostile)
            continue
        if case.data is None:  # made by another case
            continue
        with open(os.path.join(os.fsencode(hostile), os.fsencode(case.name)), "wb") as handle:
            handle.write(case.data)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(PWNED)
    started = time.monotonic()
    with captured_logs() as records:
        report = build(config, workers=2)
    seconds = time.monotonic() - started
    print(f"hostile build: {len(CASES)} cases in {seconds:.1f} s")
    return Built(
        config=config,
        hostile=hostile,
        good=good,
        rejected=dict(report.batch.rejected),
        logs=messages(records),
        items=stored(config),
        errors=stored_errors(config),
        seconds=seconds,
    )


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_each_hostile_file(built: Built, case: Case) -> None:
    path = case_path(built.hostile, case)
    if case.expect == "rejected":
        assert path in built.rejected, f"not rejected: {path!r}"
        reason = built.rejected[path]
        assert case.detail in reason, reason
        assert built.errors.get(path) == reason  # listed by `feeds errors`
        assert sum(f"rejected {path}: {reason}" == line for line in built.logs) == 1
        assert path not in built.items
    elif case.expect == "item":
        assert path in built.items, f"no item for {path!r}; rejected: {built.rejected.get(path)}"
        title = built.items[path]
        assert title == xml_safe(title).strip() and title
        assert len(title) <= TITLE_MAX_CHARS
        if case.detail:
            assert title.startswith(case.detail), title
        assert path not in built.errors
    elif case.expect == "skipped":
        logged = [line for line in built.logs if repr(os.fsencode(path)) in line]
        assert len(logged) == 1 and case.detail in logged[0], built.logs
        assert path not in built.items and path not in built.errors
    else:  # "none": neither an item nor an error, and nothing read twice
        assert not any(p.startswith(path) for p in [*built.items, *built.errors])
    assert not os.path.exists(PWNED)


def test_good_files_are_intact_beside_every_hostile_one(built: Built) -> None:
    assert_good_intact(built.config, built.good)
    hostile_items = [p for p in built.items if p.startswith(str(built.hostile))]
    expected = [case for case in CASES if case.expect == "item"]
    assert len(hostile_items) == len(expected)  # the directory loop added no second copies
    assert built.seconds < 60


def test_mistyped_fields_keep_sane_values(built: Built) -> None:
    store = open_store(built.config.state)
    try:
        listing = {path: item for item in store.iter_items() for path in item.paths}
        for case in MISTYPED:
            item = listing[case_path(built.hostile, case)]
            assert item.title and item.published.tzinfo is not None
            assert item.link is None or item.link.startswith(("http://", "https://"))
    finally:
        store.close()
    all_rss = feedparser.parse((built.config.output / "all.rss").read_bytes())
    for entry in all_rss.entries:
        assert len(entry.get("tags", [])) <= 2 * LIST_MAX_ITEMS
        assert all(len(tag.term) <= NAME_MAX_CHARS for tag in entry.get("tags", []))


def test_a_second_build_reads_and_logs_nothing_again(built: Built) -> None:
    with captured_logs() as records:
        report = build(built.config)
    assert report.batch.new == report.batch.updated == report.batch.removed == 0
    assert report.batch.rejected == []  # rejected files are not re-read while unchanged
    assert not [line for line in messages(records) if line.startswith("rejected")]
    assert stored_errors(built.config) == built.errors


def test_feeds_errors_lists_every_rejection(built: Built, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "feeds", "errors", "--json",
         "--articles", str(built.config.articles[0]), "--output", str(built.config.output),
         "--state", str(built.config.state)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=True,
    )  # fmt: skip
    listed = {
        record["path"]: record["reason"]
        for record in map(json.loads, result.stdout.split("\n")[:-1])
    }
    assert listed == built.errors
    expected = {case_path(built.hostile, c) for c in CASES if c.expect == "rejected"}
    assert set(listed) == expected, set(listed) ^ expected


def test_a_unit_separator_in_a_file_name_is_listed_as_one_path(tmp_path: Path) -> None:
    config = hostile_config(tmp_path)
    path = write(tmp_path / "articles" / "a\x1fb.md", post("分隔符文件名"))
    build(config)
    assert stored(config) == {str(path): "分隔符文件名"}


# --- files that change under the build ----------------------------------------------------------


def test_a_file_vanishing_during_a_first_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first build reads files as the walk lists them; one may still vanish in between."""
    config = hostile_config(tmp_path)
    good = write_good(tmp_path / "articles")
    doomed = write(tmp_path / "articles" / "doomed.md", post("将要消失"))
    real_paths = feeds_scan.every_path

    def list_then_delete(*args: Any, **kwargs: Any) -> Iterator[str]:
        listed = list(real_paths(*args, **kwargs))
        doomed.unlink(missing_ok=True)
        yield from listed

    monkeypatch.setattr(feeds_pipeline, "every_path", list_then_delete)
    report = build(config)
    # Not bad input: counted, not recorded as a rejected file.
    assert report.batch.vanished == 1 and report.batch.rejected == []
    assert stored_errors(config) == {}
    assert_good_intact(config, good)


def test_a_file_vanishing_between_listing_and_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = hostile_config(tmp_path)
    good = write_good(tmp_path / "articles")
    build(config)  # a known archive: the next build scans, then reads
    doomed = write(tmp_path / "articles" / "doomed.md", post("将要消失"))
    real_scan = feeds_scan.scan_changes

    def scan_then_delete(*args: Any, **kwargs: Any) -> Any:
        scanned = real_scan(*args, **kwargs)
        doomed.unlink()  # listed, then gone before it is read
        return scanned

    monkeypatch.setattr(feeds_pipeline, "scan_changes", scan_then_delete)
    with captured_logs() as records:
        report = build(config)
    assert report.batch.vanished == 1 and report.batch.rejected == []
    assert stored_errors(config) == {}
    logged = "\n".join(messages(records))
    assert "1 file(s) moved or deleted before they could be read" in logged
    assert str(doomed) not in logged  # one line per batch, not one per file
    assert_good_intact(config, good)
    monkeypatch.undo()
    report = build(config)  # nothing left to settle: the file is not there
    assert report.batch.vanished == 0 and report.batch.rejected == []
    assert_good_intact(config, good)
    write(doomed, post("将要消失"))  # back again: read as a new file
    report = build(config)
    assert report.batch.new == 1 and report.batch.vanished == 0


def test_a_known_file_vanishing_before_it_is_read_leaves_with_the_next_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edited file deleted before it is read keeps its item until the scan that sees it
    gone: the read failing is not the news, the deletion is."""
    config = hostile_config(tmp_path)
    good = write_good(tmp_path / "articles")
    doomed = write(tmp_path / "articles" / "doomed.md", post("将要消失"))
    build(config)
    write(doomed, post("将要消失", body="改过的正文，内容不同。"))
    os.utime(doomed, ns=(time.time_ns(), time.time_ns() + 10**9))
    real_scan = feeds_scan.scan_changes

    def scan_then_delete(*args: Any, **kwargs: Any) -> Any:
        scanned = real_scan(*args, **kwargs)
        doomed.unlink()
        return scanned

    monkeypatch.setattr(feeds_pipeline, "scan_changes", scan_then_delete)
    report = build(config)
    assert report.batch.vanished == 1 and report.batch.removed == 0
    assert stored_errors(config) == {}
    monkeypatch.undo()
    report = build(config)
    assert report.batch.removed == 1 and report.batch.vanished == 0
    assert_good_intact(config, good)


def test_a_fifo_or_folder_handed_over_as_a_file_is_refused_without_blocking(
    tmp_path: Path,
) -> None:
    """What the watcher hands over may have become a FIFO or a folder since it was seen: the
    read must not block (a FIFO without a writer blocks ``open`` forever) and must say why.
    Running as root, this is also how an unreadable file is simulated (see the next test)."""
    config = hostile_config(tmp_path)
    good = write_good(tmp_path / "articles")
    fifo = tmp_path / "articles" / "fifo.md"
    os.mkfifo(fifo)
    folder = tmp_path / "articles" / "folder.md"
    folder.mkdir()
    store = open_store(config.state)
    results: list[Any] = []
    try:
        pipeline = Pipeline(config, store, workers=1)
        worker = threading.Thread(
            target=lambda: results.append(pipeline.ingest([str(fifo), str(folder), *good])),
            daemon=True,
        )
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), "reading a FIFO blocked the batch"
        pipeline.render()
    finally:
        store.close()
    rejected = dict(results[0].rejected)
    assert rejected == {
        str(fifo): "not a regular file (a FIFO, socket or device)",
        str(folder): "is a directory",
    }
    assert_good_intact(config, good)


CAPSH = shutil.which("capsh")


def run_unprivileged(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``feeds …`` without the capabilities that let root ignore file permissions."""
    command = [sys.executable, "-m", "feeds", *args]
    if IS_ROOT:
        assert CAPSH is not None
        drop = "--drop=cap_dac_override,cap_dac_read_search"
        command = [CAPSH, drop, "--", "-c", 'exec "$0" "$@"', *command]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "feeds.toml"
    path.write_text(
        'articles = ["articles"]\noutput = "output"\nstate = "state/feeds.db"\n'
        'base_url = "https://feeds.example.org/"\n[feed]\nlimit = 1000\n'
        '[[topics]]\nname = "北交所"\nslug = "beijiaosuo"\nkeywords = ["北交所"]\n',
        "utf-8",
    )
    return path


@pytest.mark.skipif(
    IS_ROOT and CAPSH is None,
    reason="running as root without capsh: chmod 000 cannot block root (the FIFO test above "
    "covers what can be simulated)",
)
def test_unreadable_file_and_folder(tmp_path: Path) -> None:
    if IS_ROOT:
        print("running as root: the build runs under capsh without CAP_DAC_OVERRIDE")
    config = hostile_config(tmp_path)
    settings = ["--config", str(config_file(tmp_path))]
    articles = tmp_path / "articles"
    good = write_good(articles)
    locked = write(articles / "locked.md", post("锁住的文章"))
    sealed = articles / "sealed"
    kept = write(sealed / "kept.md", post("锁住目录里的文章"))
    assert run_unprivileged(["build", *settings], tmp_path).returncode == 0
    assert stored(config)[str(kept)] == "锁住目录里的文章"
    os.chmod(locked, 0)
    os.chmod(sealed, 0)
    try:
        os.utime(locked)  # changed: it must be read again
        result = run_unprivileged(["build", *settings], tmp_path)
        assert result.returncode == 0, result.stderr
        reason = "cannot read: Permission denied"
        assert f"rejected: {locked}: {reason}" in result.stderr
        assert f"cannot list {sealed}: Permission denied; its known files are kept" in (
            result.stderr
        )
        assert stored_errors(config) == {str(locked): reason}
        items = stored(config)
        assert items[str(locked)] == "锁住的文章"  # a good file that turned bad keeps its item
        assert items[str(kept)] == "锁住目录里的文章"  # an unlistable folder is not "deleted"
        assert_good_intact(config, good)
    finally:
        os.chmod(locked, 0o644)
        os.chmod(sealed, 0o755)
    # chmod leaves the mtime alone, so the recorded stat still matches: a file that could not
    # be read is tried again at every full scan anyway
    again = run_unprivileged(["build", *settings], tmp_path)
    assert again.returncode == 0, again.stderr
    assert stored_errors(config) == {}
    assert "items new 0, updated 0" in again.stderr + again.stdout


def test_a_missing_article_root_unpublishes_nothing(tmp_path: Path) -> None:
    config = hostile_config(tmp_path)
    good = write_good(tmp_path / "articles")
    build(config)
    shutil.move(tmp_path / "articles", tmp_path / "elsewhere")  # an unmounted share
    with captured_logs() as records:
        report = build(config)
    assert report.batch.removed == 0
    assert any("does not exist" in line for line in messages(records))
    shutil.move(tmp_path / "elsewhere", tmp_path / "articles")
    assert_good_intact(config, good)


# --- output that cannot be written --------------------------------------------------------------


def test_output_folder_that_is_a_file(tmp_path: Path) -> None:
    config = hostile_config(tmp_path)
    good = write_good(tmp_path / "articles")
    config.output.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write to"):
        build(config)
    assert set(stored(config).values()) >= set(good.values())  # the ingest was kept
    config.output.unlink()
    report = build(config)  # nothing new to read: the feeds were left dirty, now written
    assert report.batch.new == 0
    assert_good_intact(config, good)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str, *options: str) -> Iterator[Path]:
    """A small tmpfs at ``folder`` (root only); skips with the reason when mounting fails."""
    folder.mkdir(parents=True, exist_ok=True)
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder: Path, *options: str) -> None:
    subprocess.run(["mount", "-o", ",".join(["remount", *options]), str(folder)], check=True)


def test_read_only_output_folder(tmp_path: Path) -> None:
    config = hostile_config(tmp_path)
    good = write_good(tmp_path / "articles")
    with tmpfs(config.output, "4m"):
        build(config)
        before = {p: p.read_bytes() for p in config.output.rglob("*") if p.is_file()}
        write(tmp_path / "articles" / "new.md", post("只读之后的新文章"))
        remount(config.output, "ro")
        with pytest.raises(OutputError, match="Read-only file system"):
            build(config)
        assert {p: p.read_bytes() for p in config.output.rglob("*") if p.is_file()} == before
        remount(config.output, "rw")
        build(config)
        assert "只读之后的新文章" in feed_titles(config, "all.rss")
        assert_good_intact(config, good)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte."""
    filler = folder / "filler.bin"
    with open(filler, "wb") as handle:
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0")
                handle.flush()
        with contextlib.suppress(OSError):
            handle.close()
    return filler


def test_full_disk_under_the_output_folder(tmp_path: Path) -> None:
    config = hostile_config(tmp_path)
    good = write_good(tmp_path / "articles")
    with tmpfs(config.output, "512k"):
        build(config)
        before = {p: p.read_bytes() for p in config.output.rglob("*") if p.is_file()}
        for n in range(10):
            write(tmp_path / "articles" / f"more{n}.md", post(f"磁盘满时的新文章{n}"))
        filler = fill(config.output)
        with pytest.raises(OutputError, match="No space left on device"):
            build(config)
        after = {p: p.read_bytes() for p in config.output.rglob("*") if p.is_file()}
        after.pop(filler)
        assert after == {p: data for p, data in before.items() if p != filler}  # untouched
        assert_every_feed_parses(config.output)  # and no temporary file left behind
        filler.unlink()  # space freed
        report = build(config)
        assert report.batch.new == 0  # stored the first time; only the writing was retried
        titles = feed_titles(config, "all.rss")
        assert all(f"磁盘满时的新文章{n}" in titles for n in range(10))
        assert_good_intact(config, good)


def test_a_batch_too_big_for_the_free_space_is_published_one_file_at_a_time(
    tmp_path: Path,
) -> None:
    """Two 300 KB feeds rewritten on a 1 MB disk: both new files beside the old ones need
    1.2 MB, one at a time 0.9 MB. The batch must not keep failing for want of room it does
    not need."""
    output = tmp_path / "out"
    with tmpfs(output, "1m"):
        names = ("all.rss", "topics/x.rss")
        publish_many(output, [(name, b"a" * 300_000) for name in names])
        fresh = [(name, bytes([65 + n]) * 300_000) for n, name in enumerate(names, start=1)]
        assert publish_many(output, fresh) == list(names)
        assert {name: (output / name).read_bytes() for name in names} == dict(fresh)
        assert sorted(p.name for p in output.rglob("*.tmp")) == []  # no staged file left


def test_full_disk_under_the_state_database(tmp_path: Path) -> None:
    config = hostile_config(tmp_path)
    good = write_good(tmp_path / "articles")
    with tmpfs(config.state.parent, "1m"):
        build(config)
        for n in range(40):
            body = "".join(f"<p>{sentence(200)}</p>" for _ in range(5))
            write(tmp_path / "articles" / f"more{n}.md", post(f"数据库满时的文章{n}", body=body))
        filler = fill(config.state.parent)
        with pytest.raises(StoreError, match="full"):
            build(config)
        assert_every_feed_parses(config.output)
        filler.unlink()
        store = open_store(config.state)
        try:
            assert store.integrity_check() == "ok"
        finally:
            store.close()
        build(config)
        titles = feed_titles(config, "all.rss")
        assert all(f"数据库满时的文章{n}" in titles for n in range(40))
        assert_good_intact(config, good)


def test_a_missing_article_root_during_a_config_change_unpublishes_nothing(
    tmp_path: Path,
) -> None:
    config = hostile_config(tmp_path)
    good = write_good(tmp_path / "articles")
    build(config)
    changed = hostile_config(tmp_path, feed={"limit": 1000, "summary_chars": 120})
    shutil.move(tmp_path / "articles", tmp_path / "elsewhere")  # the share is unmounted
    assert build(changed).batch.removed == 0
    shutil.move(tmp_path / "elsewhere", tmp_path / "articles")
    assert_good_intact(changed, good)
