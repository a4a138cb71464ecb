"""One story, one item: near-duplicates across outlets, hard negatives, stable ids."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feeds.cli import main
from feeds.config import Config
from feeds.dedupe import Identity, canonical_text, canonical_title
from feeds.errors import IdentityGuardError
from feeds.neardup import Shingles, similarity
from feeds.neardup import shingles as shingles_of
from feeds.pipeline import Pipeline
from feeds.store import open_store
from tests.conftest import build, feed_entries, hexo_post, jekyll_post, write

WIRE = [
    "据中国物流与采购联合会数据显示，1—10月全国社会物流总额为261.8万亿元，同比增长10.5%。",
    "其中工业品物流总额同比增长9.6%，进口物流总额同比增长1.9%，物流需求保持恢复态势。",
    "单位与居民物品物流总额同比增长10.3%，增速继续保持较快水平，消费物流需求稳步释放。",
]


def stcn(
    paragraphs: list[str], title: str = "1-10月全国社会物流总额261.8万亿元 同比增长10.5%"
) -> str:
    body = ["证券时报e公司讯，" + paragraphs[0], *paragraphs[1:]]
    return hexo_post(title, body, date="Sat, 27 Nov 2021 11:23:00 GMT")


def kr36(
    paragraphs: list[str], title: str = "1-10月全国社会物流总额261.8万亿元，同比增长10.5%"
) -> str:
    body = [*paragraphs[:-1], paragraphs[-1] + "（央视新闻）", "记者将持续关注后续数据发布。"]
    return hexo_post(title, body, outlet="36kr", date="Sat, 27 Nov 2021 06:09:13 GMT")


def market_report(amount: int, day: int) -> str:
    half = amount // 2
    text = [
        f"数据显示，截至午间收盘，北向资金今日净流入超{amount}亿元，其中沪股通净流入{half}亿元。",
        f"深股通净流入{amount - half}亿元，贵州茅台、宁德时代等个股获得资金重点加仓。",
    ]
    return jekyll_post(f"北向资金净流入超{amount}亿", text, date=f"2021-12-0{day} 11:30:00 +0800")


def shingles(title: str, text: str) -> Shingles:
    return shingles_of(Identity("", None, canonical_title(title), canonical_text(text)))


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config()


def item_rows(config: Config) -> list[object]:
    store = open_store(config.state)
    try:
        return list(store.iter_items())
    finally:
        store.close()


# --- the pure measure -------------------------------------------------------------------------


def test_similarity_tolerates_datelines_attribution_and_extra_paragraphs() -> None:
    a = shingles("物流总额增长", "证券时报e公司讯，" + "\n".join(WIRE))
    b = shingles("物流总额增长", "\n".join(WIRE) + "（央视新闻）\n记者将持续关注后续数据发布。")
    assert similarity(a, b) >= 0.9


def test_same_template_different_numbers_is_not_similar() -> None:
    a = shingles(
        "北向资金净流入超40亿",
        "北向资金今日净流入超40亿元，沪股通净流入20亿元。深股通净流入20亿元。",
    )
    b = shingles(
        "北向资金净流入超50亿",
        "北向资金今日净流入超50亿元，沪股通净流入25亿元。深股通净流入25亿元。",
    )
    assert similarity(a, b) == 0.0


def test_different_headline_quoting_a_story_is_not_similar() -> None:
    quoted = "\n".join(WIRE)
    roundup = shingles(
        "今日财经要闻汇总", quoted + "\n此外，多家上市公司发布三季报，业绩整体向好。"
    )
    story = shingles("物流总额同比增长", quoted)
    assert similarity(story, roundup) == 0.0  # titles disagree and the texts are not identical


def test_short_texts_never_match() -> None:
    assert similarity(shingles("快讯", "涨了"), shingles("快讯", "涨了")) == 0.0


# --- through the pipeline ---------------------------------------------------------------------


def test_wire_story_from_two_outlets_is_one_item(config: Config, articles: Path) -> None:
    write(articles / "stcn.md", stcn(WIRE))
    write(articles / "36kr.md", kr36(WIRE))
    report = build(config)
    assert report.batch.new == 1 and report.batch.merged == 1
    (item,) = item_rows(config)
    assert sorted(Path(p).name for p in item.paths) == ["36kr.md", "stcn.md"]  # type: ignore[attr-defined]
    assert len(feed_entries(config, "all.atom")) == 1
    # each outlet's feed lists the story under that outlet
    assert len(feed_entries(config, "sources/36kr.atom")) == 1
    assert len(feed_entries(config, "sources/zhengquanshibaowang.atom")) == 1
    # the earliest publication wins: 36kr's 06:09 UTC, not stcn's 11:23 Beijing (03:23 UTC)
    assert feed_entries(config, "all.atom")[0].published.startswith("2021-11-27T03:23:00")


def test_daily_reports_from_one_template_stay_apart(config: Config, articles: Path) -> None:
    write(articles / "2021-12-07-1.md", market_report(40, 7))
    write(articles / "2021-12-08-2.md", market_report(50, 8))
    write(articles / "2021-12-09-3.md", market_report(80, 9))
    assert build(config).batch.new == 3


def test_same_text_outside_the_window_stays_apart(config: Config, articles: Path) -> None:
    write(
        articles / "a.md", hexo_post("物流总额增长", WIRE, date="Mon, 01 Nov 2021 08:00:00 +0800")
    )
    write(articles / "b.md", hexo_post("物流总额增长快讯", [*WIRE, "补充一句。"],
                                       date="Mon, 08 Nov 2021 08:00:00 +0800"))  # fmt: skip
    assert build(config).batch.new == 2


def test_near_merge_can_be_switched_off(make_config: Callable[..., Config], articles: Path) -> None:
    write(articles / "stcn.md", stcn(WIRE))
    write(articles / "36kr.md", kr36(WIRE))
    assert build(make_config(dedupe={"near": False})).batch.new == 2


def test_an_edited_file_is_compared_by_its_new_text(config: Config, articles: Path) -> None:
    """The service's ingestor lives for months: what it remembers of a file must follow edits."""
    store = open_store(config.state)
    try:
        pipeline = Pipeline(config, store, workers=1)
        first = write(articles / "stcn.md", stcn(WIRE))
        assert pipeline.ingest([str(first)]).new == 1
        # Same template, other numbers: compared with the first file (its text is now known to
        # the ingestor) but not merged.
        other = [p.replace("10.", "12.").replace("9.6", "8.1").replace("1.9", "2.7") for p in WIRE]
        renumbered = write(articles / "other.md", kr36(other, title="物流数据发布"))
        assert pipeline.ingest([str(renumbered)]).new == 1
        # The first file becomes another story; its old anchors still point at its item.
        lunch = ["沪指午间收涨0.5%，两市半日成交额超5000亿元，半导体与券商板块领涨。"] * 3
        write(first, hexo_post("午间收评", lunch, date="Sat, 27 Nov 2021 11:23:00 GMT"))
        assert pipeline.ingest([str(first)]).updated == 1
        # A copy of the first file's old text is not that item any more.
        copy = write(articles / "36kr.md", kr36(WIRE))
        report = pipeline.ingest([str(copy)])
        assert (report.new, report.merged) == (1, 0)
    finally:
        store.close()


def test_id_survives_the_founding_file_leaving_the_group(config: Config, articles: Path) -> None:
    first = write(articles / "stcn.md", stcn(WIRE))
    write(articles / "36kr.md", kr36(WIRE))
    build(config)
    (before,) = item_rows(config)
    first.unlink()
    report = build(config)
    (after,) = item_rows(config)
    assert after.id == before.id  # type: ignore[attr-defined]
    assert report.batch.removed == 0
    assert [Path(p).name for p in after.paths] == ["36kr.md"]  # type: ignore[attr-defined]


def test_a_member_rewritten_as_another_story_leaves_it(config: Config, articles: Path) -> None:
    """The service saw the copy rewritten in place: a fresh build of the same folder has two
    stories, so the service must too (the wire story must not vanish behind the new one)."""
    write(articles / "stcn.md", stcn(WIRE), mtime=1_700_000_000)
    member = write(articles / "36kr.md", kr36(WIRE), mtime=1_700_000_000)
    build(config)
    (before,) = item_rows(config)
    lunch = ["沪指午间收涨0.5%，两市半日成交额超5000亿元，半导体与券商板块领涨。"] * 3
    write(member, hexo_post("午间收评", lunch, outlet="36kr", date="Mon, 29 Nov 2021 04:00:00 GMT"))
    report = build(config)
    assert (report.batch.new, report.batch.removed) == (1, 0)
    titles = {e.title: e for e in feed_entries(config, "all.atom")}
    assert sorted(titles) == ["1-10月全国社会物流总额261.8万亿元 同比增长10.5%", "午间收评"]
    ids = {row.title: row.id for row in item_rows(config)}  # type: ignore[attr-defined]
    assert ids[before.title] == before.id  # type: ignore[attr-defined]
    assert titles["午间收评"].published.startswith("2021-11-29T04:00:00")
    assert [e.title for e in feed_entries(config, "sources/36kr.atom")] == ["午间收评"]


def test_a_member_edit_moves_updated_but_keeps_the_guid(config: Config, articles: Path) -> None:
    write(articles / "stcn.md", stcn(WIRE), mtime=1_700_000_000)
    member = write(articles / "36kr.md", kr36(WIRE), mtime=1_700_000_000)
    build(config)
    (first,) = feed_entries(config, "all.atom")
    write(member, kr36([*WIRE[:2], WIRE[2] + "数据由联合会发布。"]), mtime=1_700_003_600)
    report = build(config)
    (second,) = feed_entries(config, "all.atom")
    assert report.batch.new == 0
    assert second.id == first.id
    assert second.updated_parsed > first.updated_parsed


def test_identity_guard_refuses_a_mass_reissue(
    make_config: Callable[..., Config], articles: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config()
    for n in range(30):
        write(
            articles / "old" / f"{n}.md",
            hexo_post(f"旧闻{n}", [f"第{n}条旧消息的正文内容，讲述第{n}件事情的来龙去脉。"]),
        )
    build(config)
    before = {p: p.read_bytes() for p in config.output.rglob("*.atom")}
    for n in range(30):  # every story vanishes and a different one appears at once
        (articles / "old" / f"{n}.md").unlink()
        write(
            articles / "new" / f"{n}.md",
            hexo_post(f"新闻{n}", [f"第{n}条新消息，另一件完全不同的事情，另有{n + 100}个细节。"]),
        )
    with pytest.raises(IdentityGuardError, match="refusing to re-issue ids"):
        build(config)
    assert len(item_rows(config)) == 30  # nothing changed
    assert {p: p.read_bytes() for p in config.output.rglob("*.atom")} == before
    args = ["--state", str(config.state), "--output", str(config.output)]
    args += ["--articles", str(articles)]
    assert main(["build", *args]) == 1
    assert "refusing to re-issue ids" in capsys.readouterr().err
    assert main(["build", "--allow-reissue", *args]) == 0
    assert {i.title for i in item_rows(config)} == {f"新闻{n}" for n in range(30)}  # type: ignore[attr-defined]


def test_duplicates_command_lists_groups_with_similarity(config: Config, articles: Path) -> None:
    write(articles / "stcn.md", stcn(WIRE))
    write(articles / "36kr.md", kr36(WIRE))
    build(config)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["duplicates", "--json", "--state", str(config.state)]) == 0
    (group,) = [json.loads(line) for line in out.getvalue().splitlines()]
    matches = sorted(f["match"] for f in group["files"])
    assert matches == ["exact", "near"]
    near = next(f for f in group["files"] if f["match"] == "near")
    assert 0.7 <= near["similarity"] <= 1.0


def test_anchor_lookup_skips_common_phrases_and_honours_the_window(tmp_path: Path) -> None:
    day = datetime(2021, 11, 27, tzinfo=UTC)
    store = open_store(tmp_path / "state.db")
    try:
        with store.transaction():
            for item_id, anchors, published in [
                ("a", (1, 2, 3), day),
                ("b", (1, 2), day),
                ("c", (1, 9), day),
                ("old", (3, 4), day - timedelta(days=30)),  # shares two, a month earlier
            ]:
                store.save_item(
                    item_id, rep_path=f"{item_id}.md", fingerprint=item_id, published=published,
                    updated=published, source_slug="s", title=item_id, link=None, first_seen=day,
                )  # fmt: skip
                store.add_anchors(item_id, anchors)

        def lookup(strong: tuple[int, ...], max_postings: int) -> list[str]:
            return store.items_by_anchors(
                (1, 2, 3, 4), strong, (day - timedelta(days=1), day + timedelta(days=1)),
                min_shared=2, max_postings=max_postings, limit=10,
            )  # fmt: skip

        # anchor 1 is held by three stories: over a cap of 2 it is a common phrase, skipped
        assert lookup((), max_postings=2) == ["a"]
        assert lookup((), max_postings=3) == ["a", "b"]  # most shared anchors first
        assert lookup((9,), max_postings=3) == ["a", "b", "c"]  # a strong anchor suffices
    finally:
        store.close()
