"""classify: outlet unification and Chinese-aware topic rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from feeds.classify import SourceResolver, TopicMatcher
from feeds.config import CleanupRules, SourceRule, TopicRule, load_config
from feeds.text import slugify
from tests.conftest import ROOT, hexo_post, write

CONFIG = load_config(None, environ={})
SOURCES = SourceResolver(CONFIG.sources, CONFIG.cleanup)


@pytest.mark.parametrize(
    ("spelling", "name", "slug"),
    [
        ("证券时报网", "证券时报网", "zhengquanshibaowang"),
        ("证券时报网新闻", "证券时报网", "zhengquanshibaowang"),  # Jekyll tag
        ("zhengquanshibaowang", "证券时报网", "zhengquanshibaowang"),  # Jekyll category
        ("上海证券报新闻", "上海证券报", "shanghaizhengquanbao"),
        ("21世纪经济报道新闻", "21世纪经济报道", "21shijijingjibaodao"),
        ("新浪财经", "新浪财经", "xinlangcaijing"),
        ("东财滚动新闻", "东方财富网", "dongfangcaifuwang"),
        ("第一财经", "第一财经", "diyicaijing"),  # not configured: pinyin of the name
        ("某某日报新闻", "某某日报", "moumouribao"),
    ],
)
def test_outlets_unify_across_dialects(spelling: str, name: str, slug: str) -> None:
    outlet = SOURCES.resolve(spelling)
    assert (outlet.name, outlet.slug) == (name, slug)


def test_an_unknown_outlet_reading_like_a_configured_one_gets_its_own_feed() -> None:
    known, homophone = SOURCES.resolve("中证网"), SOURCES.resolve("中正网")
    assert known.slug == "zhongzhengwang"
    assert homophone.name == "中正网"
    assert homophone.slug.startswith("zhongzhengwang-") and len(homophone.slug) == 21
    again = SourceResolver(CONFIG.sources, CONFIG.cleanup)  # another process, another day
    assert again.resolve("中正網").slug == homophone.slug  # and whatever the script
    assert SOURCES.resolve("中正网新闻").slug == homophone.slug


def test_gmt_correction_is_on_for_the_outlets_that_need_it() -> None:
    assert SOURCES.resolve("证券时报网").gmt_is_local
    assert SOURCES.resolve("中证网").gmt_is_local
    assert not SOURCES.resolve("新浪财经").gmt_is_local


def test_slug_override_and_per_outlet_cleanup_merge() -> None:
    rules = [
        SourceRule(name="示例财经", slug="shili", cleanup=CleanupRules(remove_selectors=(".ad",)))
    ]
    resolver = SourceResolver(rules, CleanupRules(remove_selectors=("style",)))
    outlet = resolver.resolve("示例财经")
    assert outlet.slug == "shili"
    assert outlet.cleanup.remove_selectors == ("style", ".ad")


def matcher(**rule: object) -> TopicMatcher:
    return TopicMatcher([TopicRule(name="北交所", **rule)])  # type: ignore[arg-type]


def match(
    m: TopicMatcher, title: str = "", summary: str = "", content: str = "", source: str = "x"
) -> list[tuple[str, str, str, str]]:
    found = m.match(title=title, summary=summary, content=content, source_slug=source)
    return [(t.topic, t.rule, t.word, t.field) for t in found]


def test_keyword_match_records_rule_word_and_field() -> None:
    m = matcher(keywords=["北交所", "北京证券交易所"])
    assert match(m, title="今日要闻", content="北京证券交易所发布新规") == [
        ("beijiaosuo", "keywords", "北京证券交易所", "content")
    ]


@pytest.mark.parametrize(
    "text",
    ["北京證券交易所發佈新規", "北京证券交易所", "ＢＳＥ北证50", "bse news"],
    ids=["traditional", "simplified", "fullwidth", "casefold"],
)
def test_matching_folds_script_width_and_case(text: str) -> None:
    m = matcher(keywords=["北京证券交易所", "北证50", "BSE"])
    assert match(m, content=text)


def test_all_exclude_fields_and_sources() -> None:
    m = matcher(keywords=["北交所"], all=["上市"], exclude=["传闻"])
    assert match(m, content="北交所新股上市")
    assert not match(m, content="北交所新股申购")  # "上市" required
    assert not match(m, content="北交所上市传闻")  # excluded word
    title_only = matcher(keywords=["北交所"], fields=["title"])
    assert not match(title_only, title="要闻", content="北交所")
    only_stcn = matcher(keywords=["北交所"], sources=["zhengquanshibaowang"])
    assert not match(only_stcn, content="北交所", source="xinlangcaijing")
    assert match(only_stcn, content="北交所", source="zhengquanshibaowang")


def test_regex_rule() -> None:
    m = matcher(regex=r"北证\d+")
    assert match(m, title="北证50指数走强") == [("beijiaosuo", "regex", "北证50", "title")]


def test_default_slug_is_pinyin_of_the_name() -> None:
    assert TopicMatcher([TopicRule(name="专精特新", keywords=("专精特新",))]).slugs == (
        "zhuanjingtexin",
    )


def test_known_outlets_and_shipped_topics_need_no_pinyin_tables(tmp_path: Path) -> None:
    """pypinyin's tables cost ~55 MB in every worker: built-in outlets and the shipped topics
    spell their slugs out, so a build of known outlets never loads them."""
    articles = tmp_path / "articles"
    write(articles / "a.md", hexo_post("北交所快讯", ["北交所今日发布新规，涉及专精特新企业。"]))
    script = (
        "import sys; from pathlib import Path; "
        "from feeds.config import load_config; from feeds.store import open_store; "
        "from feeds.pipeline import Pipeline; "
        f"c = load_config(Path('config/feeds.toml'), overrides={{'articles': ['{articles}'], "
        f"'output': '{tmp_path / 'out'}', 'state': '{tmp_path / 's.db'}'}}); "
        "r = Pipeline(c, open_store(c.state), workers=1).sync(); "
        "print(r.batch.new, 'pypinyin' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.split() == ["1", "False"]
    assert slugify("某某日报") == "moumouribao"  # an unknown outlet still gets one, on demand


@pytest.mark.parametrize(("outlet", "loaded"), [("证券时报网", False), ("某某日报", True)])
def test_a_warm_service_has_the_pinyin_tables_only_if_a_stored_outlet_needs_them(
    tmp_path: Path, outlet: str, loaded: bool
) -> None:
    """The next article of an unconfigured outlet must not pay ~0.25 s for loading the tables
    (the first update after a restart did); configured outlets alone never load them."""
    articles = tmp_path / "articles"
    write(articles / "a.md", hexo_post("北交所快讯", ["北交所今日发布新规。"], outlet=outlet))
    overrides = f"{{'articles': ['{articles}'], 'output': '{tmp_path / 'out'}', "
    overrides += f"'state': '{tmp_path / 's.db'}'}}"
    load = "from feeds.config import load_config; from feeds.store import open_store; "
    load += "from feeds.pipeline import Pipeline; from pathlib import Path; import sys; "
    load += f"c = load_config(Path('config/feeds.toml'), overrides={overrides}); "
    build = load + "Pipeline(c, open_store(c.state), workers=1).sync()"
    subprocess.run([sys.executable, "-c", build], check=True, cwd=ROOT)
    warm = load + "Pipeline(c, open_store(c.state), workers=1).warm(); "
    warm += "print('pypinyin' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", warm], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.split() == [str(loaded)]


def test_resolver_answers_are_remembered_within_a_bound() -> None:
    resolver = SourceResolver(CONFIG.sources, CONFIG.cleanup)
    names = ["证券时报", " 證券時報 ", "财联社新闻", "某某日报", "", "未知来源"]
    for name in names:
        assert resolver.resolve(name) == SOURCES.resolve(name)
        assert resolver.resolve(name) == SOURCES.resolve(name)  # remembered
        assert resolver.lookup(name) == SOURCES.lookup(name)
        assert resolver.lookup(name) == SOURCES.lookup(name)
    for number in range(5000):
        resolver.lookup(f"outlet{number}")
    assert resolver.lookup.cache_info().currsize <= 4096
