"""normalize, end to end: what a feed reader shows of an article (title, date, summary), read
back from the written feeds with feedparser."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feeds.config import Config, load_config
from tests.conftest import OTHER, STORY, build, feed_entries, hexo_post, jekyll_post, write


def entry_by_title(config: Config, title: str) -> dict[str, Any]:
    entries = {entry.title: entry for entry in feed_entries(config, "all.atom")}
    assert title in entries, sorted(entries)
    return dict(entries[title])


def content(entry: dict[str, Any]) -> str:
    return str(entry["content"][0]["value"])


def published(entry: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(entry["published"])).astimezone(UTC)


def test_an_impossible_date_falls_back_to_the_file_name(
    make_config: Callable[..., Config], articles: Path
) -> None:
    front = '---\nlayout: post\ntitle: "日期写错的文章"\ndate: 2024-02-30 10:00:00\n---\n\n'
    text = front + STORY[0] + "\n"
    write(articles / "_posts" / "2024-03-05-wrong-date.md", text)
    config = make_config()
    report = build(config)
    assert report.batch.rejected == []
    entry = entry_by_title(config, "日期写错的文章")
    assert published(entry) == datetime(2024, 3, 4, 16, tzinfo=UTC)  # 2024-03-05 in Beijing


def test_the_summary_starts_with_the_story_not_its_dateline_or_byline(
    make_config: Callable[..., Config], articles: Path
) -> None:
    write(
        articles / "wire.md", hexo_post("北证50盘中创新高", ["证券时报网讯，" + STORY[0], STORY[1]])
    )
    write(
        articles / "byline.md",
        hexo_post("逆回购操作平稳", ["作者：某某", OTHER[0], OTHER[1]], outlet="新浪财经"),
    )
    config = make_config()
    build(config)
    wire = entry_by_title(config, "北证50盘中创新高")
    assert str(wire["summary"]).startswith(STORY[0][:20])
    assert "证券时报网讯，" + STORY[0] in content(wire)  # the content keeps it
    byline = entry_by_title(config, "逆回购操作平稳")
    assert str(byline["summary"]).startswith(OTHER[0][:20])


TITLES = [
    ("北证50盘中创新高_新浪财经_新浪网", "北证50盘中创新高"),
    ("北证50盘中创新高 - 东方财富网", "北证50盘中创新高"),
    ("北证50盘中创新高|财联社", "北证50盘中创新高"),
    ("北证50盘中创新高 — 本站快报", "北证50盘中创新高"),  # a suffix of the user's config
    ("开展全国家电_以旧换新_活动", "开展全国家电_以旧换新_活动"),  # Hexo's "_" for quotes
    ("1-7月港口吞吐量超20亿吨", "1-7月港口吞吐量超20亿吨"),
    ("1049元_斤！荔枝什么来头", "1049元_斤！荔枝什么来头"),
    ("新浪财经", "新浪财经"),  # nothing else: kept
]


def test_site_names_are_cut_from_the_end_of_titles(tmp_path: Path, articles: Path) -> None:
    for number, (title, _) in enumerate(TITLES):
        text = jekyll_post(title, [f"第{number}篇。" + STORY[number % 2]], link=None)
        write(articles / "_posts" / f"2024-05-14-{number}.md", text)
    settings = f"""
        articles = ["{articles}"]
        output = "{tmp_path / "output"}"
        state = "{tmp_path / "feeds.db"}"
        [dedupe]
        near = false
        [cleanup]
        title_suffixes = ["本站快报"]  # appended to the built-in ones
    """
    config = load_config(write(tmp_path / "feeds.toml", textwrap.dedent(settings)), environ={})
    build(config)
    titles = sorted(entry.title for entry in feed_entries(config, "all.atom"))
    assert titles == sorted(expected for _, expected in TITLES)


def markdown_post(front: str, body: str) -> str:
    return f"---\nlayout: post\n{front}date: 2024-05-14 10:41:02 +0800\n---\n\n{body}\n"


def test_an_opening_heading_that_repeats_the_title_is_shown_once(
    make_config: Callable[..., Config], articles: Path
) -> None:
    posts = articles / "_posts"
    write(
        posts / "2024-05-14-a.md",
        markdown_post('title: "北证50创新高"\n', f"# 北证50创新高\n\n{STORY[0]}"),
    )
    write(
        posts / "2024-05-14-b.md",
        markdown_post("", f"# 逆回购操作平稳\n\n{OTHER[0]}\n\n{OTHER[1]}"),
    )
    write(
        posts / "2024-05-14-c.md", markdown_post('title: "另一标题"\n', f"## 小标题\n\n{STORY[1]}")
    )
    config = make_config()
    build(config)
    repeated = entry_by_title(config, "北证50创新高")
    assert "<h1>" not in content(repeated)
    assert str(repeated["summary"]) == STORY[0]
    from_heading = entry_by_title(config, "逆回购操作平稳")
    assert str(from_heading["summary"]).startswith(OTHER[0])
    assert "<h1>" not in content(from_heading)
    other = entry_by_title(config, "另一标题")  # a heading that is not the title stays
    assert "<h2>小标题</h2>" in content(other)


def test_a_title_in_front_matter_or_as_the_opening_heading_is_the_same_story(
    make_config: Callable[..., Config], articles: Path
) -> None:
    posts = articles / "_posts"
    write(posts / "2024-05-14-a.md", markdown_post('title: "北证50创新高"\n', "\n\n".join(STORY)))
    write(posts / "2024-05-14-b.md", markdown_post("", "# 北证50创新高\n\n" + "\n\n".join(STORY)))
    config = make_config(dedupe={"near": False})
    build(config)
    assert [entry.title for entry in feed_entries(config, "all.atom")] == ["北证50创新高"]


def test_entities_in_titles_are_decoded_even_when_escaped_twice(
    make_config: Callable[..., Config], articles: Path
) -> None:
    posts = articles / "_posts"
    once = 'title: "AT&amp;T与&#x4E2D;国 &lt;A股&gt;"\n'
    twice = 'title: "宝洁&amp;amp;联合利华 &amp;quot;双雄&amp;quot;"\n'
    write(posts / "2024-05-14-a.md", markdown_post(once, STORY[0]))
    write(posts / "2024-05-14-b.md", markdown_post(twice, OTHER[0]))
    config = make_config()
    build(config)
    titles = sorted(entry.title for entry in feed_entries(config, "all.atom"))
    assert titles == ["AT&T与中国 ＜A股>", '宝洁&联合利华 "双雄"']


def test_markup_in_titles_goes_and_angle_brackets_in_text_stay(
    make_config: Callable[..., Config], articles: Path
) -> None:
    posts = articles / "_posts"
    titles = {
        "a": "北交所 <关注> 新规",  # angle brackets used as quotes
        "b": "PE<10 与 a<b 的股票",  # comparisons
        "c": '<b>粗</b>体 <font color="red">重磅</font><br/>',  # real markup
        "d": "<!-- 抓取注释 -->评论 <A股>",
    }
    for name, title in titles.items():
        body = STORY[0] if name in "ac" else OTHER[0]
        write(posts / f"2024-05-14-{name}.md", markdown_post(f"title: '{title}'\n", body + name))
    config = make_config()
    build(config)
    assert sorted(entry.title for entry in feed_entries(config, "all.atom")) == sorted(
        ["北交所 <关注> 新规", "PE<10 与 a＜b 的股票", "粗体 重磅", "评论 ＜A股>"]
    )


def test_template_tags_of_a_markdown_post_are_not_in_its_feed_entry(
    make_config: Callable[..., Config], articles: Path
) -> None:
    body = f"{STORY[0]}\n\n{{% asset_img chart.png 走势图 %}}\n\n{{: .notice}}\n{STORY[1]}"
    write(articles / "_posts" / "2024-05-14-a.md", markdown_post('title: "北证50创新高"\n', body))
    config = make_config()
    build(config)
    entry = entry_by_title(config, "北证50创新高")
    assert "{" not in content(entry) and "{" not in str(entry["summary"])
    assert STORY[1] in content(entry)


def test_a_title_yaml_reads_as_a_date_is_still_the_title(
    make_config: Callable[..., Config], articles: Path
) -> None:
    write(articles / "_posts" / "2024-05-14-a.md", markdown_post("title: 2024-05-14\n", STORY[0]))
    config = make_config()
    build(config)
    assert [entry.title for entry in feed_entries(config, "all.atom")] == ["2024-05-14"]


def test_a_weibo_tag_repeating_the_title_does_not_open_the_summary(
    make_config: Callable[..., Config], articles: Path
) -> None:
    write(articles / "a.md", hexo_post("北证50盘中创新高", ["【#北证50盘中创新高#】" + STORY[0]]))
    write(
        articles / "b.md",
        hexo_post("逆回购操作平稳", ["【央行动态】" + OTHER[0]], outlet="新浪财经"),
    )
    config = make_config()
    build(config)
    assert str(entry_by_title(config, "北证50盘中创新高")["summary"]) == STORY[0]
    kept = str(entry_by_title(config, "逆回购操作平稳")["summary"])  # a label, not the title
    assert kept.startswith("【央行动态】")


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_plain_text_fields_carry_no_bidirectional_controls(
    make_config: Callable[..., Config], articles: Path
) -> None:
    """An override in a title turns the rest of a reader's line around (a "Trojan Source"
    spoof of the outlet, the date or the next headline); embeddings and isolates likewise."""
    front = (
        '---\ntitle: "北交所\u202e公告\u2067翻转"\nauthor: "来源\u202d名称"\n'
        'categories: ["分类\u202b一", "\u2066分类二"]\ndescription: "摘要\u202e倒写"\n---\n\n'
    )
    write(articles / "bidi.md", front + STORY[0] + "\n")
    write(articles / "untitled.md", "---\ndate: 2024-05-14\n---\n\n\u202e" + OTHER[0] + "\n")
    config = make_config()
    assert build(config).batch.rejected == []
    entry = entry_by_title(config, "北交所公告翻转")
    assert entry["author"] == "来源名称" and entry["summary"] == "摘要倒写"
    assert [tag["term"] for tag in entry["tags"]] == ["分类一", "分类二"]
    assert entry_by_title(config, OTHER[0])["title"] == OTHER[0]  # a title from the body
    for path in config.output.rglob("*"):
        if path.suffix in (".rss", ".atom"):  # the content (HTML) is what the article wrote
            for item in feed_entries(config, str(path.relative_to(config.output))):
                tags = [tag["term"] for tag in item.get("tags", [])]
                plain = [item["title"], item["summary"], item.get("author", ""), *tags]
                assert not any(char in "".join(plain) for char in BIDI), (path, plain)
        elif path.is_file():  # the index and the OPML list
            assert not any(char in path.read_text("utf-8") for char in BIDI), path
