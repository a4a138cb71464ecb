"""Front-matter dialects real Hexo and Jekyll archives hold, read as their generators read them:
each file parsed from disk, and the build's feeds read back with feedparser."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from feeds.config import Config
from feeds.errors import ArticleError
from feeds.parse import parse_file
from tests.conftest import OTHER, STORY, build, feed_entries, write

LIMIT = 1_000_000

# --- Hexo: front matter without its opening "---" -------------------------------------------

UNOPENED = (
    "title: 北证50盘中创新高\ndate: 2024-05-14 10:35:00\ncategories:\n- 金融\n"
    "---\n\n" + STORY[0] + "\n\n---\n\n" + STORY[1] + "\n"
)


def test_hexo_front_matter_without_its_opening_line_is_read(tmp_path: Path) -> None:
    raw = parse_file(write(tmp_path / "a.md", UNOPENED), LIMIT)
    assert raw.front_matter == "yaml"
    assert raw.meta["title"] == "北证50盘中创新高"
    assert raw.meta["categories"] == ["金融"]
    # only the first "---" line ends the front matter: a later rule stays in the body
    assert raw.body == STORY[0] + "\n\n---\n\n" + STORY[1]


@pytest.mark.parametrize(
    "text",
    [
        "# 北证50盘中创新高\n\n" + STORY[0] + "\n\n---\n\n" + STORY[1],  # a horizontal rule
        "北证50盘中创新高\n---\n\n" + STORY[0],  # a setext heading's underline
        "要点: 北证50盘中创新高\n---\n\n" + STORY[0],  # a mapping, but of no field we read
        "Title: 北证50盘中创新高\n---\n\n" + STORY[0],  # keys are case-sensitive, as in Hexo
        "今日要闻\ntitle: 北证50盘中创新高\n---\n\n" + STORY[0],  # prose before the "key:" line
    ],
    ids=["rule", "setext", "unknown-key", "capitalized", "prose-first"],
)
def test_a_body_holding_a_dash_line_is_not_front_matter(tmp_path: Path, text: str) -> None:
    with pytest.raises(ArticleError, match="no front matter"):
        parse_file(write(tmp_path / "notes.md", text), LIMIT)


def test_broken_yaml_before_the_first_dash_line_is_reported_with_its_line(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "a.md", "title: 北证50\ndate: [2024-05-14\n---\n\n" + STORY[0])
    with pytest.raises(ArticleError) as caught:
        parse_file(path, LIMIT)
    assert caught.value.path == str(path)
    assert caught.value.reason.startswith("bad YAML front matter: line 2:")


def test_a_post_without_its_opening_line_is_published(
    make_config: Callable[..., Config], articles: Path
) -> None:
    write(articles / "unopened.md", UNOPENED)
    write(articles / "notes.md", "# 笔记\n\n" + OTHER[0] + "\n\n---\n\n" + OTHER[1] + "\n")
    config = make_config()
    report = build(config)
    assert report.batch.rejected == [(str(articles / "notes.md"), report.batch.rejected[0][1])]
    assert "no front matter" in report.batch.rejected[0][1]
    (entry,) = feed_entries(config, "all.atom")
    assert entry.title == "北证50盘中创新高"
    assert entry.published.startswith("2024-05-14T02:35:00")  # 10:35 Beijing time


# --- Hexo: JSON front matter (";;;") ----------------------------------------------------------

JSON_MEMBERS = (
    '"title": "逆回购操作平稳",\n"date": "2024/5/14 09:20:00",\n"tags": ["央行", "流动性"]\n'
)


@pytest.mark.parametrize(
    "front",
    [
        f";;;\n{JSON_MEMBERS};;;\n",  # as Hexo writes it: the object's members, no braces
        f"{JSON_MEMBERS};;;\n",  # without the opening separator, which Hexo allows too
        f";;;\n{{\n{JSON_MEMBERS}}}\n;;;\n",  # a whole object, braces and all
    ],
    ids=["hexo", "unopened", "braces"],
)
def test_hexo_json_front_matter_is_read(tmp_path: Path, front: str) -> None:
    raw = parse_file(write(tmp_path / "a.md", front + "\n" + OTHER[0] + "\n"), LIMIT)
    assert raw.front_matter == "json"
    assert raw.meta == {
        "title": "逆回购操作平稳",
        "date": "2024/5/14 09:20:00",
        "tags": ["央行", "流动性"],
    }
    assert raw.body == OTHER[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            ';;;\n"title": "逆回购",\n"date": 2024-05-14\n;;;\n正文',
            "line 3: Expecting ',' delimiter",
        ),
        ('"title": "逆回购"\n"date": "2024-05-14"\n;;;\n正文', "line 2: Expecting ',' delimiter"),
        (';;;\n"title": "逆回购"\n正文', "unterminated JSON front matter"),
    ],
    ids=["bad-value", "missing-comma-unopened", "unterminated"],
)
def test_broken_json_front_matter_is_reported_with_its_line(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = write(tmp_path / "a.md", text)
    with pytest.raises(ArticleError) as caught:
        parse_file(path, LIMIT)
    assert caught.value.path == str(path)
    assert reason in caught.value.reason


def test_a_json_post_is_published_and_a_broken_one_stops_nothing(
    make_config: Callable[..., Config], articles: Path
) -> None:
    write(articles / "good.md", f";;;\n{JSON_MEMBERS};;;\n\n{OTHER[0]}\n\n{OTHER[1]}\n")
    write(articles / "bad.md", ';;;\n"title": "坏的",\n;;;\n\n' + STORY[0] + "\n")
    config = make_config()
    report = build(config)
    assert report.batch.rejected == [
        (
            str(articles / "bad.md"),
            "bad JSON front matter: line 3: Expecting property name enclosed in double quotes",
        )
    ]
    (entry,) = feed_entries(config, "all.atom")
    assert entry.title == "逆回购操作平稳"
    assert entry.published.startswith("2024-05-14T01:20:00")  # 09:20 Beijing time
    assert {tag.term for tag in entry.tags} == {"央行", "流动性"}
