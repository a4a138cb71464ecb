"""Front-matter dialects real Hexo and Jekyll archives hold, read as their generators read them:
each file parsed from disk, and the build's feeds read back with feedparser."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from feeds.config import Config
from feeds.dedupe import FINGERPRINT_VERSION
from feeds.errors import ArticleError
from feeds.neardup import ANCHOR_VERSION
from feeds.normalize import NormalizeRules, normalize
from feeds.parse import parse_file
from feeds.pipeline import NORMALIZE_FIELDS, config_digest
from feeds.store import open_store
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


# --- author: a person is the entry's author, never an outlet -------------------------------


def hexo_front(author: str, title: str = "稿件", extra: str = "") -> str:
    return (
        f"---\ntitle: {title}\ncategories:\n - 金融\n - 证券时报网\n - 快讯\n"
        f"author: {author}\n{extra}date: Tue, 14 May 2024 10:35:00 GMT\n---\n\n"
    )


@pytest.mark.parametrize(
    ("author", "outlet", "people"),
    [
        ("记者 张三", "证券时报网", "张三"),
        ("本报记者：李四", "证券时报网", "李四"),
        ("记者王五", "证券时报网", "王五"),
        ("作者/赵六", "证券时报网", "赵六"),
        ("文/钱七", "证券时报网", "钱七"),
        ("新浪财经记者 孙八", "新浪财经", "孙八"),  # a configured outlet before the role word
        ("张三、李四", "证券时报网", "张三、李四"),
        ("张三 李四", "证券时报网", "张三 李四"),
        ("[张三, 李四]", "证券时报网", "张三、李四"),
        ("{name: 张三, link: 'https://example.org/zhang'}", "证券时报网", "张三"),
        # outlets stay outlets: the corpus's own spellings, and names that only look alike
        ("新浪财经", "新浪财经", ""),
        ("DT 财经", "DT 财经", ""),
        ("每经网", "每日经济新闻", ""),
        ("编辑部", "编辑部", ""),
        ("文汇报", "文汇报", ""),
        ("张三", "张三", ""),  # a bare name cannot be told from an outlet's: as before
    ],
)
def test_an_author_naming_people_is_no_outlet(
    make_config: Callable[..., Config], tmp_path: Path, author: str, outlet: str, people: str
) -> None:
    path = write(tmp_path / "a.md", hexo_front(author) + f"<p>{STORY[0]}</p>\n")
    article = normalize(parse_file(path, LIMIT), NormalizeRules.from_config(make_config()))
    assert (article.source_name, article.author) == (outlet, people)


def test_a_byline_without_another_outlet_signal_is_an_unknown_outlet(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    text = f"---\ntitle: 稿件\nauthor: 记者 张三\n---\n\n{STORY[0]}\n"
    article = normalize(
        parse_file(write(tmp_path / "a.md", text), LIMIT), NormalizeRules.from_config(make_config())
    )
    assert (article.source_name, article.author) == ("未知来源", "张三")


def test_reporters_share_their_outlet_feed_and_are_named_as_its_authors(
    make_config: Callable[..., Config], articles: Path
) -> None:
    write(articles / "a.md", hexo_front("记者 张三", "甲") + f"<p>{STORY[0]}</p><p>{STORY[1]}</p>")
    write(articles / "b.md", hexo_front("记者 李四", "乙") + f"<p>{OTHER[0]}</p><p>{OTHER[1]}</p>")
    sourced = hexo_front("王五", "丙", extra="source: 财联社\n")
    write(articles / "c.md", sourced + "<p>北交所今日新增两家上市公司，首日平均涨幅居前。</p>")
    write(
        articles / "d.md",
        hexo_front("证券时报网", "丁") + "<p>逆回购到期量较大，央行加量续作。</p>",
    )
    config = make_config()
    assert build(config).batch.rejected == []
    outlet_feeds = sorted(p.name for p in (config.output / "sources").glob("*.atom"))
    assert outlet_feeds == ["cailianshe.atom", "zhengquanshibaowang.atom"]  # no reporter feeds
    expected = {"甲": "张三", "乙": "李四", "丙": "王五", "丁": "证券时报网"}
    for feed in ("all.atom", "all.rss"):
        assert {e.title: e.author for e in feed_entries(config, feed)} == expected, feed
    outlet = feed_entries(config, "sources/zhengquanshibaowang.rss")
    assert sorted(e.title for e in outlet) == ["丁", "乙", "甲"]


# --- Jekyll: front matter closed by "..." ------------------------------------------------------


def test_jekyll_front_matter_closed_by_dots_is_read(tmp_path: Path) -> None:
    # Jekyll ends front matter at "---" or "..." (YAML's document end): before, the file was
    # "unterminated", or its front matter ran on to a rule in the body and broke
    front = '---\nlayout: post\ntitle: "点号结尾"\ndate: 2024-05-14 10:41:02 +0800\n...\n'
    text = f"{front}\n{OTHER[0]}\n"
    raw = parse_file(write(tmp_path / "dots.md", text), LIMIT)
    assert (raw.meta["title"], raw.body) == ("点号结尾", OTHER[0])
    with_rule = text + f"\n---\n\n{OTHER[1]}\n"
    raw = parse_file(write(tmp_path / "rule.md", with_rule), LIMIT)
    assert (raw.meta["title"], raw.body) == ("点号结尾", f"{OTHER[0]}\n\n---\n\n{OTHER[1]}")


# --- categories and tags as Hexo and Jekyll write them -----------------------------------------


def test_hexo_category_hierarchies_jekyll_category_and_chinese_commas_are_read(
    make_config: Callable[..., Config], articles: Path
) -> None:
    front = "---\ntitle: {title}\ndate: 2024-05-14 10:00:00\n{fields}---\n\n"
    posts = {
        # Hexo: a list of hierarchies; the first one is the 金融/<outlet>/<feed> path
        "层级": ("categories:\n - [金融, 格隆汇, 主题文章]\n - [专题, 北交所]\n", STORY),
        # Jekyll: one category in the singular, tags in a string with Chinese commas
        "单数": ("category: 市场观察\ntags: 新股，北交所、流动性\n", OTHER),
    }
    for title, (fields, paragraphs) in posts.items():
        text = front.format(title=title, fields=fields) + "\n\n".join(paragraphs) + "\n"
        write(articles / f"{title}.md", text)
    config = make_config()
    assert build(config).batch.rejected == []
    terms = {e.title: [t.term for t in e.tags] for e in feed_entries(config, "all.atom")}
    assert terms == {
        "层级": ["金融", "格隆汇", "主题文章", "专题", "北交所"],
        "单数": ["市场观察", "新股", "北交所", "流动性"],
    }
    (outlet,) = feed_entries(config, "sources/gelonghui.atom")
    assert outlet.title == "层级"


# --- a store built before these rules ----------------------------------------------------------


def test_a_store_built_before_these_rules_reads_its_files_again(
    make_config: Callable[..., Config], articles: Path
) -> None:
    write(articles / "a.md", hexo_front("证券时报网", "甲") + f"<p>{STORY[0]}</p>")
    config = make_config()
    build(config)
    # What the release before left behind: Hexo's unopened post rejected, and its digest
    unopened = write(articles / "unopened.md", UNOPENED)
    stat = unopened.stat()
    store = open_store(config.state)
    try:
        with store.transaction():
            store.record_error(
                str(unopened), "no front matter", stat.st_size, stat.st_mtime_ns, datetime.now(UTC)
            )
            before = f"/fp{FINGERPRINT_VERSION}/anchors{ANCHOR_VERSION}"  # its CODE_VERSIONS
            old_digest = config_digest(config, *NORMALIZE_FIELDS) + before
            store.set_meta("normalize_digest", old_digest)
    finally:
        store.close()
    report = build(config)
    assert report.batch.rejected == []
    assert sorted(e.title for e in feed_entries(config, "all.atom")) == ["北证50盘中创新高", "甲"]
