"""Drafts: posts whose front matter says they are not published stay out of every feed
(Hexo and Hugo ``draft: true``, Jekyll and Hexo ``published: false``), as the static-site
generators these archives come from treat them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from feeds.config import Config
from tests.conftest import OTHER, STORY, build, feed_entries, hexo_post, jekyll_post, write


def feed_ids(config: Config, relpath: str) -> dict[str, str]:
    """title -> guid of a feed's entries."""
    return {entry.title: entry.id for entry in feed_entries(config, relpath)}


def every_feed(config: Config) -> list[str]:
    return [str(p.relative_to(config.output)) for p in config.output.rglob("*.atom")]


def with_flag(post: str, flag: str) -> str:
    """The post with ``flag`` added as the first front-matter line."""
    return post.replace("---\n", f"---\n{flag}\n", 1)


@pytest.mark.parametrize(
    ("dialect", "flag", "read_as"),
    [
        ("hexo", "draft: true", "draft: true"),
        ("hexo", "published: false", "published: false"),
        ("jekyll", "published: false", "published: false"),
        ("jekyll", "draft: yes", "draft: true"),  # YAML 1.1: yes is true
        ("jekyll", "published: 'no'", "published: no"),
    ],
)
def test_a_draft_is_in_no_feed(
    make_config: Callable[..., Config], articles: Path, dialect: str, flag: str, read_as: str
) -> None:
    config = make_config()
    make = hexo_post if dialect == "hexo" else jekyll_post
    write(articles / "draft.md", with_flag(make("北交所草稿", STORY), flag))
    write(articles / "live.md", hexo_post("央行逆回购", OTHER))
    report = build(config)
    assert report.batch.new == 1
    assert [path for path, _ in report.batch.rejected] == [str(articles / "draft.md")]
    reason = dict(report.batch.rejected)[str(articles / "draft.md")]
    assert reason == f"a draft ({read_as} in its front matter): not published"
    for feed in every_feed(config):
        assert "北交所草稿" not in feed_ids(config, feed), feed
    assert not (config.output / "topics" / "beijiaosuo.atom").exists() or not feed_ids(
        config, "topics/beijiaosuo.atom"
    )


def test_published_true_and_draft_false_are_published(
    make_config: Callable[..., Config], articles: Path
) -> None:
    config = make_config()
    write(articles / "a.md", with_flag(hexo_post("北交所一", STORY), "published: true"))
    write(articles / "b.md", with_flag(jekyll_post("央行二", OTHER), "draft: false"))
    report = build(config)
    assert report.batch.new == 2 and not report.batch.rejected


def test_unpublishing_removes_the_item_and_republishing_restores_its_id(
    make_config: Callable[..., Config], articles: Path
) -> None:
    config = make_config()
    post = write(articles / "a.md", hexo_post("北交所新规落地", STORY))
    write(articles / "b.md", hexo_post("央行逆回购", OTHER))
    build(config)
    guid = feed_ids(config, "all.atom")["北交所新规落地"]
    assert "北交所新规落地" in feed_ids(config, "topics/beijiaosuo.atom")

    write(post, with_flag(hexo_post("北交所新规落地", STORY), "draft: true"))
    report = build(config)
    assert report.batch.removed == 1
    for feed in every_feed(config):
        assert "北交所新规落地" not in feed_ids(config, feed), feed
    assert "央行逆回购" in feed_ids(config, "all.atom")

    write(post, hexo_post("北交所新规落地", STORY))
    back = build(config).batch
    assert feed_ids(config, "all.atom")["北交所新规落地"] == guid  # readers see no rerun
    assert (back.new, back.restored) == (0, 1)  # counted, as its removal was


def test_a_draft_copy_does_not_remove_the_published_story(
    make_config: Callable[..., Config], articles: Path
) -> None:
    """The same story twice, one file a draft: the story stays, from the published file."""
    config = make_config()
    write(articles / "a.md", hexo_post("北交所新规落地", STORY))
    build(config)
    write(articles / "b.md", with_flag(hexo_post("北交所新规落地", STORY), "draft: true"))
    build(config)
    assert "北交所新规落地" in feed_ids(config, "all.atom")


def test_a_draft_is_kept_out_even_with_keep_deleted(
    make_config: Callable[..., Config], articles: Path
) -> None:
    """keep_deleted keeps stories whose files a scraper cleaned up; a draft is withdrawn."""
    config = make_config(feed={"keep_deleted": True})
    post = write(articles / "a.md", hexo_post("北交所新规落地", STORY))
    build(config)
    write(post, with_flag(hexo_post("北交所新规落地", STORY), "published: false"))
    build(config)
    assert "北交所新规落地" not in feed_ids(config, "all.atom")


def test_a_draft_is_not_read_again_until_it_changes(
    make_config: Callable[..., Config], articles: Path
) -> None:
    config = make_config()
    write(articles / "a.md", with_flag(hexo_post("北交所草稿", STORY), "draft: true"))
    assert build(config).batch.rejected
    second = build(config)
    assert second.batch.rejected == [] and second.batch.unchanged == 1


def test_posts_in_a_drafts_folder_are_not_read(
    make_config: Callable[..., Config], articles: Path
) -> None:
    """Hexo (source/_drafts) and Jekyll (_drafts) keep unpublished posts in a folder."""
    config = make_config()
    write(articles / "source" / "_drafts" / "a.md", hexo_post("北交所草稿", STORY))
    write(articles / "_drafts" / "b.md", jekyll_post("北交所另一草稿", STORY))
    write(articles / "source" / "_posts" / "c.md", hexo_post("央行逆回购", OTHER))
    report = build(config)
    assert (report.batch.seen, report.batch.new, report.batch.rejected) == (1, 1, [])
    assert list(feed_ids(config, "all.atom")) == ["央行逆回购"]


def test_an_article_folder_may_itself_sit_below_a_drafts_folder(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    root = tmp_path / "_drafts" / "news"
    config = make_config(articles=[str(root)])
    write(root / "a.md", hexo_post("央行逆回购", OTHER))
    write(root / "_drafts" / "b.md", hexo_post("北交所草稿", STORY))
    assert build(config).batch.new == 1
    assert list(feed_ids(config, "all.atom")) == ["央行逆回购"]
