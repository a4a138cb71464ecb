"""parse: bytes -> RawArticle, and every way a file can be unusable."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.errors import ArticleError
from feeds.parse import _FlatSafeLoader, parse_file, timestamp_or_text
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


def test_tab_indented_front_matter_is_read_as_hexo_reads_it(tmp_path: Path) -> None:
    # YAML forbids tabs for indentation; Hexo turns each leading tab into two spaces first
    front = "title: 制表符缩进\ncategories:\n\t- 金融\n\t- 证券时报网\ntags:\n\t\t- 快讯\n"
    text = f"\n---\n{front}---\n<p>正文</p>"
    raw = parse_file(write(tmp_path / "a.md", text), LIMIT)
    assert raw.meta["categories"] == ["金融", "证券时报网"]
    assert raw.meta["tags"] == ["快讯"]


@pytest.mark.parametrize("value", ["2024-02-30", "2024-13-01 10:00:00", "0000-00-00 00:00:00"])
def test_impossible_yaml_timestamp_is_kept_as_text(tmp_path: Path, value: str) -> None:
    # YAML reads these as timestamps and fails to build them: the article is not refused for
    # its date (dates.py finds no date in the text; the file name's date is used instead)
    text = f'---\ntitle: "日期写错的文章"\ndate: {value}\n---\n\n正文。\n'
    raw = parse_file(write(tmp_path / "2024-03-05-a.md", text), LIMIT)
    assert raw.meta["date"] == value
    assert raw.meta["title"] == "日期写错的文章"


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


# --- the flat front-matter loader ---------------------------------------------------------------


class _GeneralLoader(yaml.CSafeLoader):
    """libyaml's safe loader with the one constructor feeds changes (impossible timestamps)."""


_GeneralLoader.add_constructor("tag:yaml.org,2002:timestamp", timestamp_or_text)


def load_outcome(text: str, loader: type[yaml.CSafeLoader]) -> str:
    """The value's repr (NaN equals NaN there), or the error's type and message."""
    try:
        return repr(yaml.load(text, Loader=loader))
    except Exception as exc:  # the same error, with the same message, is what counts
        return f"{type(exc).__name__}: {exc}"


YAML_CHARS = "ab1:-[]{},!&*|>'\" \t#%?@`0.5e+-_TtrueNnoYyes~x2021-08T"
YAML_VALUES = [
    "2021-12-08", "2021-12-08 10:48:44 +08:00", "2021-13-45", "1_000", "0x1F", "0o17",
    ".inf", ".NaN", "-.NaN", "~", "null", "Yes", "off", "!!timestamp 'x'", "!!int x",
    "!!binary aGk=", "!!str 12", "!!seq x", "[1, [2]]", "{a: 1}", "[a, !!int b]", "<<: {a: 1}",
    "= x", "|\n  block", ">-\n  folded", "'quoted: yes'", "\"esc\\u4e2d\"", "[2021-12-08, x, 3.5]",
]  # fmt: skip
yaml_line_value = st.one_of(
    st.text(st.sampled_from(YAML_CHARS), max_size=25), st.sampled_from(YAML_VALUES)
)
yaml_key = st.one_of(
    st.sampled_from(["title", "date", "tags", "1", "true", "null", "<<", "=", "? k", "[a]", "a b"]),
    st.text(st.sampled_from("abc: -"), min_size=1, max_size=4),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(yaml_key, yaml_line_value), max_size=6))
def test_flat_loader_loads_what_the_c_safe_loader_loads(pairs: list[tuple[str, str]]) -> None:
    text = "\n".join(f"{key}: {value}" for key, value in pairs) + "\n"
    assert load_outcome(text, _FlatSafeLoader) == load_outcome(text, _GeneralLoader)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.one_of(st.text(max_size=6), st.integers()),
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10), st.dates()),
            lambda inner: st.lists(inner, max_size=3),
            max_leaves=6,
        ),
        max_size=5,
    ),
    st.booleans(),
)
def test_flat_loader_loads_dumped_documents(data: dict[object, object], flow: bool) -> None:
    text = yaml.safe_dump(data, allow_unicode=True, default_flow_style=flow)
    assert load_outcome(text, _FlatSafeLoader) == load_outcome(text, _GeneralLoader)


def test_flat_loader_fills_lists_after_scalars_like_the_general_way() -> None:
    text = "a: [!!int x]\nb: !!int y\na: 1\n"  # two errors; the scalar's is raised first
    assert load_outcome(text, _FlatSafeLoader) == load_outcome(text, _GeneralLoader)
    assert "y" in str(load_outcome(text, _FlatSafeLoader))
