"""parse: bytes -> RawArticle, and every way a file can be unusable."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from feeds.errors import ArticleError
from feeds.parse import parse_file
from tests.conftest import write

LIMIT = 1_000_000
YAML_POST = '---\ntitle: "北交所新股今日上市"\ndate: 2024-05-14 10:00:00\n---\n\n正文第一段。\n'


def test_yaml_front_matter_and_markdown_body(tmp_path: Path) -> None:
    raw = parse_file(write(tmp_path / "a.md", YAML_POST), LIMIT)
    assert raw.meta["title"] == "北交所新股今日上市"
    assert raw.front_matter == "yaml"
    assert raw.body == "正文第一段。"
    assert raw.body_format == "markdown"
    assert raw.encoding == "utf-8"


def test_leading_blank_lines_crlf_and_bom(tmp_path: Path) -> None:
    text = "\n\n" + YAML_POST.replace("\n", "\r\n")
    raw = parse_file(write(tmp_path / "a.md", b"\xef\xbb\xbf" + text.encode()), LIMIT)
    assert raw.meta["title"] == "北交所新股今日上市"
    assert "\r" not in raw.body
    assert raw.encoding == "utf-8-sig"


def test_toml_front_matter(tmp_path: Path) -> None:
    text = '+++\ntitle = "TOML 标题"\ndate = 2024-05-10T15:00:00+08:00\n+++\n<p>正文</p>\n'
    raw = parse_file(write(tmp_path / "a.md", text), LIMIT)
    assert raw.front_matter == "toml"
    assert raw.meta["title"] == "TOML 标题"
    assert raw.meta["date"].utcoffset().total_seconds() == 8 * 3600
    assert raw.body_format == "html"


@pytest.mark.parametrize("encoding", ["gb18030", "gbk"])
def test_gbk_files_decode_without_mojibake(tmp_path: Path, encoding: str) -> None:
    data = YAML_POST.encode(encoding)
    raw = parse_file(write(tmp_path / "a.md", data), LIMIT)
    assert raw.meta["title"] == "北交所新股今日上市"
    assert raw.encoding == "gb18030"


def test_hexo_brace_entities_decoded(tmp_path: Path) -> None:
    text = "---\ntitle: x\n---\n<style>.a&#123;color:red&#125;</style><p>正文</p>"
    raw = parse_file(write(tmp_path / "a.md", text), LIMIT)
    assert ".a{color:red}" in raw.body


def test_html_suffix_is_html(tmp_path: Path) -> None:
    raw = parse_file(write(tmp_path / "a.html", "---\ntitle: x\n---\n纯文本"), LIMIT)
    assert raw.body_format == "html"


def test_no_front_matter_is_not_an_article(tmp_path: Path) -> None:
    # a README.md or notes file lying among the posts is reported, not published
    with pytest.raises(ArticleError, match="no front matter"):
        parse_file(write(tmp_path / "README.md", "# 说明\n\n只有正文，没有头信息。"), LIMIT)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"  \n\t\n", "empty file"),
        (b"\x00\x01\x02binary\x00", "binary file"),
        (b"---\ntitle: [unclosed\n---\nbody", "bad YAML front matter"),
        (b"---\n- a\n- b\n---\nbody", "front matter is a list"),
        (b"---\ntitle: x\nno end marker", "unterminated YAML"),
        (b"+++\ntitle = \n+++\nbody", "bad TOML front matter"),
        (b"title \xff\x30\x30 tail", "undecodable"),
    ],
    ids=[
        "empty",
        "whitespace",
        "binary",
        "bad-yaml",
        "yaml-list",
        "unterminated",
        "bad-toml",
        "undecodable",
    ],
)
def test_unusable_files_are_reported_with_a_reason(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = write(tmp_path / "bad.md", content)
    with pytest.raises(ArticleError) as caught:
        parse_file(path, LIMIT)
    assert caught.value.path == str(path)
    assert reason in caught.value.reason


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["---", 'a: &a ["x","x","x","x","x","x","x","x","x"]']
    for n in range(1, 12):
        lines.append(f"a{n}: &a{n} [" + ",".join([f"*a{n - 1}" if n > 1 else "*a"] * 9) + "]")
    lines += ["title: boom", "---", "body"]
    path = write(tmp_path / "bomb.md", "\n".join(lines))
    started = time.monotonic()
    with pytest.raises(ArticleError, match="aliases are not allowed"):
        parse_file(path, LIMIT)
    assert time.monotonic() - started < 2


def test_oversized_file_is_reported_not_loaded(tmp_path: Path) -> None:
    path = write(tmp_path / "huge.md", "---\ntitle: x\n---\n" + "字" * 5000)
    with pytest.raises(ArticleError, match="file too large"):
        parse_file(path, 1000)


def test_vanished_file(tmp_path: Path) -> None:
    with pytest.raises(ArticleError, match="vanished"):
        parse_file(tmp_path / "never-written.md", LIMIT)


@pytest.mark.parametrize("depth", [20_000, 1_000_000])
def test_deeply_nested_yaml_is_an_error_not_a_crash(tmp_path: Path, depth: int) -> None:
    # libyaml's C parser segfaults on this; the whole service would die with it.
    path = write(tmp_path / "deep.md", "---\ntitle: " + "[" * depth + "]" * depth + "\n---\nx")
    with pytest.raises(ArticleError, match="front matter"):
        parse_file(path, 4 * LIMIT)
