"""Alerts, the pure part: matching, event ids, payloads, byte truncation and signatures.

Signatures are checked against values computed here from the documented algorithms (and the
Standard Webhooks specification's published test vector), never against ``feeds.signing``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.alert_messages import (
    DINGTALK_MARKDOWN_BYTES,
    FEISHU_BODY_BYTES,
    SLACK_TEXT_CHARS,
    WECOM_MARKDOWN_BYTES,
    format_digest,
    format_message,
)
from feeds.alert_payload import (
    Alert,
    MatchReason,
    alert_from_payload,
    alert_item,
    alert_payload,
    encode_body,
    feed_links,
    truncate_utf8,
)
from feeds.alerts import WebhookRule, event_id, snippet, update_version
from feeds.config import WebhookConfig, WebhookFormat
from feeds.model import Article, Site, TopicMatch
from feeds.signing import (
    dingtalk_sign,
    dingtalk_signed_url,
    feishu_sign,
    prepare_request,
    standard_webhook_signature,
)

ZONE = ZoneInfo("Asia/Shanghai")
SITE = Site("https://feeds.example.org/", "财经新闻", "test")
WHEN = datetime(2024, 5, 14, 2, 35, tzinfo=UTC)
ITEM_ID = "0123456789abcdef0123456789abcdef"
LONG_CHINESE = "北交所市场持续扩容，专精特新企业加速登陆资本市场，流动性改善值得关注。" * 800


def article(
    title: str = "北证50指数创年内新高",
    text: str = "北证50指数今日早盘震荡走高，北交所成交额明显放大。",
    summary: str | None = None,
    source: tuple[str, str] = ("zhengquanshibaowang", "证券时报网"),
    link: str | None = "https://www.stcn.com/article/detail/1.html",
) -> Article:
    return Article(
        path="/articles/a.md",
        title=title,
        title_derived=False,
        link=link,
        published=WHEN,
        date_origin="front-matter",
        updated=None,
        source_name=source[1],
        source_slug=source[0],
        categories=("金融",),
        language="zh-CN",
        content_html=f"<p>{text}</p>",
        text=text,
        summary=text[:200] if summary is None else summary,
        image=None,
    )


def rule(**fields: Any) -> WebhookRule:
    data: dict[str, Any] = {"name": "desk", "url": "https://example.invalid/hook"}
    data.update(fields)
    return WebhookRule(WebhookConfig.model_validate(data))


def make_alert(
    title: str = "北证50指数创年内新高", summary: str = "北交所成交额明显放大。", **kw: Any
) -> Alert:
    art = article(title=title, text=summary, summary=summary, **kw)
    topics = [TopicMatch("beijiaosuo", "keywords", "北交所", "summary")]
    item = alert_item(ITEM_ID, art, topics, topic_names={"beijiaosuo": "北交所"})
    return Alert(
        id=event_id(ITEM_ID, "desk", "item.new"),
        type="item.new",
        occurred=WHEN,
        item=item,
        match=MatchReason("keywords", "北交所", "summary", "北交所成交额明显放大。"),
        feeds=feed_links(SITE, art.source_slug, ["beijiaosuo"]),
    )


# --- matching ---------------------------------------------------------------------------------


def test_keyword_in_title_matches_with_reason_and_snippet() -> None:
    reason = rule(keywords=["北交所"]).match("item.new", article(title="北交所发布新规"), [])
    assert reason == MatchReason("keywords", "北交所", "title", "北交所发布新规")


def test_traditional_text_matches_simplified_keyword_and_snippet_keeps_original() -> None:
    text = "據悉，北京證券交易所今日發布公告，優化上市審核流程。"
    found = article(title="公告", text=text, summary="")
    reason = rule(keywords=["北京证券交易所"]).match("item.new", found, [])
    assert reason is not None and (reason.field, reason.word) == ("content", "北京证券交易所")
    assert "北京證券交易所" in reason.snippet


def test_traditional_keyword_fullwidth_and_case_fold_too() -> None:
    assert rule(keywords=["證券"]).match("item.new", article(title="证券时报"), []) is not None
    found = rule(keywords=["etf"]).match("item.new", article(title="科创ＥＴＦ规模创新高"), [])
    assert found is not None and found.snippet == "科创ＥＴＦ规模创新高"


def test_fields_sources_and_events_restrict_matches() -> None:
    in_body = article(title="市场综述", text="午后北交所个股走强。")
    assert rule(keywords=["北交所"], fields=["title"]).match("item.new", in_body, []) is None
    assert rule(keywords=["北交所"], fields=["content"]).match("item.new", in_body, [])
    only_cls = rule(keywords=["北交所"], sources=["cailianshe"])
    assert only_cls.match("item.new", in_body, []) is None
    assert only_cls.match("item.new", in_body, [], sources=["cailianshe"]) is not None  # merged
    assert rule(keywords=["北交所"]).match("item.updated", in_body, []) is None
    assert rule(keywords=["北交所"], events=["item.updated"]).match("item.updated", in_body, [])


def test_topic_slug_matches_through_the_items_topic_matches() -> None:
    matches = [TopicMatch("beijiaosuo", "keywords", "北证50", "title")]
    reason = rule(topics=["beijiaosuo"]).match("item.new", article(), matches)
    assert reason is not None
    assert (reason.rule, reason.word, reason.field) == ("topic:beijiaosuo", "北证50", "title")
    assert rule(topics=["xinsanban"]).match("item.new", article(), matches) is None


def test_no_match_without_the_word() -> None:
    assert rule(keywords=["新三板"]).match("item.new", article(), []) is None


def test_snippet_is_about_forty_chars_around_the_word() -> None:
    text = "甲" * 100 + "北交所" + "乙" * 100
    cut = snippet(text, "北交所")
    assert "北交所" in cut and cut.startswith("…") and cut.endswith("…")
    assert 40 <= len(cut) <= 42
    assert snippet("短文 北交所", "北交所") == "短文 北交所"


def test_snippet_survives_folding_that_changes_lengths() -> None:
    text = "㈱" * 30 + "北交所上市公司" + "㈱" * 30  # NFKC turns each ㈱ into three characters
    cut = snippet(text, "北交所")
    assert "北交所" in cut and len(cut) <= 42


# --- identity ---------------------------------------------------------------------------------


def test_event_ids_are_stable_and_distinct() -> None:
    first = event_id(ITEM_ID, "desk", "item.new")
    recipe = "\x1f".join(("alert", ITEM_ID, "desk", "item.new", ""))
    assert first == "evt_" + hashlib.sha256(recipe.encode()).hexdigest()[:32]
    assert first == "evt_2977d91776c358833f96a102da3e4db9"  # never change: ids are dedupe keys
    assert event_id(ITEM_ID, "desk", "item.new") == first
    assert event_id(ITEM_ID, "other", "item.new") != first
    assert event_id(ITEM_ID, "desk", "item.updated") != first


def test_each_real_update_has_its_own_event_id() -> None:
    v1 = update_version("f" * 32, WHEN)
    v2 = update_version("e" * 32, WHEN.replace(minute=40))
    ids = {event_id(ITEM_ID, "desk", "item.updated", v) for v in (v1, v2)}
    assert len(ids) == 2
    assert event_id(ITEM_ID, "desk", "item.updated", v1) in ids


# --- payloads ---------------------------------------------------------------------------------


def test_json_payload_follows_standard_webhooks_shape() -> None:
    alert = make_alert()
    payload = alert_payload(alert)
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["type"] == "item.new" and payload["timestamp"] == "2024-05-14T02:35:00Z"
    item = payload["data"]["item"]
    assert item["id"] == ITEM_ID and item["guid"] == "urn:uuid:01234567-89ab-cdef-0123-456789abcdef"
    assert item["source"] == {"name": "证券时报网", "slug": "zhengquanshibaowang"}
    assert item["topics"] == [{"slug": "beijiaosuo", "name": "北交所"}]
    assert set(item) >= {"title", "link", "published", "sources", "summary", "image"}
    match = {"rule": "keywords", "word": "北交所", "field": "summary"}
    assert payload["data"]["match"] == {**match, "snippet": "北交所成交额明显放大。"}
    assert payload["data"]["feeds"] == {
        "all": "https://feeds.example.org/all.rss",
        "source": "https://feeds.example.org/sources/zhengquanshibaowang.rss",
        "topics": {"beijiaosuo": "https://feeds.example.org/topics/beijiaosuo.rss"},
    }
    assert alert_from_payload(alert.id, json.dumps(payload)) == alert
    assert len(encode_body(payload)) < 20_000


def test_chat_formats_have_each_platforms_shape() -> None:
    alert = make_alert()
    wecom = format_message("wecom", alert, ZONE)
    assert wecom["msgtype"] == "markdown" and "北证50指数创年内新高" in wecom["markdown"]["content"]
    assert "2024-05-14 10:35" in wecom["markdown"]["content"]  # local (Beijing) time
    ding = format_message("dingtalk", alert, ZONE)
    assert ding["msgtype"] == "markdown" and set(ding["markdown"]) == {"title", "text"}
    assert ding["markdown"]["title"] == "【北交所】北证50指数创年内新高"
    feishu = format_message("feishu", alert, ZONE)
    post = feishu["content"]["post"]["zh_cn"]
    assert feishu["msg_type"] == "post" and post["title"] == "【北交所】北证50指数创年内新高"
    links = [el for row in post["content"] for el in row if el["tag"] == "a"]
    assert {link["href"] for link in links} == {
        "https://www.stcn.com/article/detail/1.html",
        "https://feeds.example.org/sources/zhengquanshibaowang.rss",
    }
    slack = format_message("slack", alert, ZONE)
    assert slack["blocks"][0]["type"] == "section" and "<https://www.stcn.com" in json.dumps(slack)


def test_markdown_specials_in_titles_cannot_break_links() -> None:
    message = format_message("wecom", make_alert(title="[广告]*北交所*"), ZONE)
    content = message["markdown"]["content"]
    assert "[广告]" not in content and "［广告］" in content


@pytest.mark.parametrize(
    ("fmt", "shown"),
    [
        ("wecom", lambda m: [m["markdown"]["content"]]),
        ("dingtalk", lambda m: [m["markdown"]["title"], m["markdown"]["text"]]),
        ("feishu", lambda m: [m["content"]["post"]["zh_cn"]["title"]]),
        ("slack", lambda m: [m["text"], m["blocks"][0]["text"]["text"]]),
    ],
)
def test_chat_messages_tell_an_update_from_a_new_story(fmt: WebhookFormat, shown: Any) -> None:
    new = make_alert()
    update = replace(new, type="item.updated")
    assert not any("更新" in text for text in shown(format_message(fmt, new, ZONE)))
    assert all("【北交所·更新】北证50" in t for t in shown(format_message(fmt, update, ZONE)))
    digest = format_digest(fmt, [new, update], ZONE, WHEN)
    assert json.dumps(digest, ensure_ascii=False).count("更新") == 1


@pytest.mark.parametrize("fmt", ["wecom", "dingtalk", "feishu", "slack"])
def test_the_matched_text_is_quoted_once(fmt: WebhookFormat) -> None:
    in_summary = make_alert(summary="北交所成交额明显放大。")  # the summary is shown anyway
    text = json.dumps(format_message(fmt, in_summary, ZONE), ensure_ascii=False)
    assert text.count("北交所成交额明显放大") == 1 and "命中「北交所」（摘要）" in text
    reason = MatchReason("keywords", "北交所", "content", "…正文里的北交所一句…")
    in_body = replace(in_summary, match=reason)  # the body is not shown: its snippet is
    text = json.dumps(format_message(fmt, in_body, ZONE), ensure_ascii=False)
    assert "命中「北交所」（正文）：…正文里的北交所一句…" in text


def test_slack_formatting_marks_in_article_text_stay_plain_text() -> None:
    alert = make_alert(title="*ST华夏_北交所`受理`", summary="*ST甲与*ST乙公告~撤回~ & <b>")
    section = format_message("slack", alert, ZONE)["blocks"][0]["text"]["text"]
    assert section.count("*") == 2 and section.startswith("*<") and ">*\n" in section
    assert not any(mark in section for mark in "_`~")
    assert (
        "＊ST华夏＿北交所｀受理｀" in section
        and "＊ST甲与＊ST乙公告～撤回～ &amp; &lt;b&gt;" in section
    )
    digest = format_digest("slack", [alert, alert], ZONE, WHEN)["blocks"][0]["text"]["text"]
    assert digest.count("*") == 2 and "＊ST华夏" in digest


@pytest.mark.parametrize(
    ("fmt", "measure", "limit"),
    [
        ("wecom", lambda m: len(m["markdown"]["content"].encode()), WECOM_MARKDOWN_BYTES),
        ("dingtalk", lambda m: len(m["markdown"]["text"].encode()), DINGTALK_MARKDOWN_BYTES),
        ("feishu", lambda m: len(encode_body(m)) + 128, FEISHU_BODY_BYTES),
        ("slack", lambda m: len(m["blocks"][0]["text"]["text"]), SLACK_TEXT_CHARS),
    ],
)
def test_long_chinese_text_is_cut_within_each_platforms_limit(
    fmt: str, measure: Any, limit: int
) -> None:
    alert = make_alert()  # alert_item caps summaries; a platform must cope with any length
    alert = replace(alert, item=replace(alert.item, summary=LONG_CHINESE))
    message = format_message(fmt, alert, ZONE)  # type: ignore[arg-type]
    assert limit * 0.8 < measure(message) <= limit  # cut near the limit, not far below it
    text = json.dumps(message, ensure_ascii=False)
    assert "北证50指数创年内新高" in text and "…" in text  # title kept, summary cut
    text.encode("utf-8")  # whole characters only: this would raise on a broken surrogate


@given(st.text(min_size=0, max_size=300), st.integers(min_value=0, max_value=400))
def test_truncate_utf8_never_exceeds_or_splits(text: str, limit: int) -> None:
    cut = truncate_utf8(text, limit)
    assert len(cut.encode("utf-8")) <= limit or cut == text == ""
    kept = cut.removesuffix("…") if cut != text else cut
    assert text.startswith(kept)


def test_digests_list_alerts_within_limits() -> None:
    alerts = [make_alert(title=f"第{i}条 " + "北交所新规解读" * 30) for i in range(100)]
    wecom = format_digest("wecom", alerts, ZONE, WHEN)["markdown"]["content"]
    assert len(wecom.encode()) <= WECOM_MARKDOWN_BYTES
    assert "100 条" in wecom and "另有" in wecom and "第0条" in wecom
    body = format_digest("json", alerts, ZONE, WHEN)
    assert body["type"] == "alert.digest" and body["data"]["count"] == 100
    assert [e["id"] for e in body["data"]["events"]] == [a.id for a in alerts]
    feishu = format_digest("feishu", alerts, ZONE, WHEN)
    assert len(encode_body(feishu)) + 128 <= FEISHU_BODY_BYTES


# --- signatures -------------------------------------------------------------------------------


def test_standard_webhooks_published_test_vector() -> None:
    signature = standard_webhook_signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_standard_webhooks_plain_secret_is_used_as_utf8() -> None:
    digest = hmac.new("密钥".encode(), b"evt_1.100.{}", hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    assert standard_webhook_signature("密钥", "evt_1", 100, b"{}") == expected


def test_dingtalk_sign_follows_the_documented_algorithm() -> None:
    secret, stamp = "SEC0123456789abcdef", 1715653000123
    digest = hmac.new(secret.encode(), f"{stamp}\n{secret}".encode(), hashlib.sha256).digest()
    assert dingtalk_sign(secret, stamp) == base64.b64encode(digest).decode()
    robot = "https://oapi.dingtalk.com/robot/send?access_token=abc"
    url = dingtalk_signed_url(robot, secret, stamp)
    query = urlsplit(url).query
    assert f"sign={quote_plus(base64.b64encode(digest).decode())}" in query  # URL-encoded
    assert parse_qs(query) == {
        "access_token": ["abc"],
        "timestamp": [str(stamp)],
        "sign": [base64.b64encode(digest).decode()],
    }


def test_feishu_sign_keys_hmac_with_timestamp_and_secret_over_empty_message() -> None:
    secret, stamp = "fs-secret", 1599360473
    digest = hmac.new(f"{stamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
    assert feishu_sign(secret, stamp) == base64.b64encode(digest).decode()


def test_prepare_request_puts_signatures_where_each_platform_expects_them() -> None:
    now = datetime(2024, 5, 14, 2, 35, 7, 250_000, tzinfo=UTC)
    message = {"msg_type": "text", "content": {"text": "北交所"}}
    feishu = prepare_request("feishu", "https://f.invalid/hook/x", "s", "evt_1", message, now)
    body = json.loads(feishu.body)
    assert body["timestamp"] == str(int(now.timestamp())) and body["sign"] == feishu_sign(
        "s", int(now.timestamp())
    )
    ding = prepare_request("dingtalk", "https://d.invalid/send?access_token=t", "s", "e", {}, now)
    assert parse_qs(urlsplit(ding.url).query)["timestamp"] == [str(int(now.timestamp() * 1000))]
    generic = prepare_request("json", "https://j.invalid/", "whsec_AAAA", "evt_1", {"a": 1}, now)
    assert generic.headers["webhook-id"] == "evt_1"
    assert generic.headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert generic.headers["webhook-signature"] == standard_webhook_signature(
        "whsec_AAAA", "evt_1", int(now.timestamp()), generic.body
    )
    unsigned = prepare_request("json", "https://j.invalid/", None, "evt_1", {"a": 1}, now)
    assert "webhook-signature" not in unsigned.headers
    assert "北交所" in feishu.body.decode("utf-8")  # UTF-8 JSON, not \\u escapes


def test_excluded_keywords_mute_a_webhook_whatever_matched() -> None:
    muted = rule(keywords=["北交所"], topics=["beijiaosuo"], exclude=["广告"])
    plain = article(title="北交所发布新规", text="北交所今日发布新规。")
    assert muted.match("item.new", plain, []) is not None
    advert = article(title="北交所开户优惠", text="廣告：北交所开户，佣金低至万一。")  # traditional
    topic = [TopicMatch("beijiaosuo", "keywords", "北交所", "title")]
    assert muted.match("item.new", advert, topic) is None  # neither the topic nor the keyword
    assert rule(keywords=["北交所"]).match("item.new", advert, []) is not None
    in_title_only = rule(keywords=["北交所"], exclude=["广告"], fields=["title"])
    assert in_title_only.match("item.new", advert, []) is not None  # 廣告 is in the content
