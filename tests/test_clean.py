"""feeds.clean: boilerplate out, real sentences kept, nothing unsafe left, never an exception.

The fixtures imitate the structure of the outlets' pages (Sina QR/app blocks, Eastmoney quote
widgets, finews Markdown footers, 格隆汇 empty paragraphs) with sentences of our own.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.clean import (
    MAX_DEPTH,
    _compile_patterns,
    clean_body,
    html_to_text,
    looks_like_html,
    markdown_to_html,
    story_lead,
    summarize,
    without_template_tags,
)
from feeds.config import DATA_DIR, CleanupRules
from feeds.model import CleanBody

SEEDS = Path(__file__).resolve().parent.parent.parent / "shared" / "seeds"
BUILTIN = CleanupRules(**tomllib.loads((DATA_DIR / "outlets.toml").read_text("utf-8"))["cleanup"])
NO_RULES = CleanupRules()
SINA_QR = "https://n.sinaimg.cn/finance/cece9e13/20200514/343233024.png"

SINA_LIKE = f"""<div>
<p>　　本报讯，某市统计局今天发布数据，前三季度全市工业增加值同比增长百分之六。</p>
<p>　　分析人士认为，制造业投资回暖是主要原因，<span id="stock_sh600000"><a
 href="https://finance.example.com/realstock/company/sh600000/nc.shtml" class="keyword"
 target="_blank" data-sudaclick="content_marketkeywords_p">示例银行</a></span><span
 id="quote_sh600000"></span>等企业的表现尤其突出。</p>
<!--article_adlist[<p cms-style="font-M"><font>举报/反馈</font></p>]article_adlist-->
<!-- news_keyword_pub,stock,sh600000 -->
<!-- 文末二维码 start -->
            <style>
            .appendQr_wrap&#123;border:1px solid #E6E6E6;padding:8px;&#125;
            .appendQr_normal&#123;float:left;&#125;
            </style>
            <div class="clearfix appendQr_wrap">
                <div class="appendQr_normal"><img src="{SINA_QR}"></div>
                <div class="appendQr_normal_txt">海量资讯、精准解读，尽在新浪财经APP</div>
            </div>
<!-- 编辑姓名及工作代码 -->
<p class="article-editor">责任编辑：王小明 </p>
</div>
"""

EASTMONEY_LIKE = """> 摘要：某新能源公司公告称，拟投资十亿元建设储能基地。

<p style="display:none;height:1px;overflow:hidden;"><br /></p><!-- EM_StockImg_Start -->\
<p style="text-align:center;"><a href="http://quote.example.com/unify/r/0.000001" \
class="EmImageRemark" target="_blank"><img \
src="https://webquoteklinepic.eastmoney.com/GetPic.aspx?nid=0.000001&imageType=k" \
width="578" height="276" /></a></p><!-- EM_StockImg_End --><p>该公司晚间公告，拟在华东地区\
投资建设<span id="bk_90.BK0001"><a href="http://quote.example.com/unify/r/90.BK0001" \
class="keytip" data-code="90,BK0001">储能</a></span><span id="bkquote_90.BK0001"></span>\
项目，预计两年内投产。</p><center><img src="https://img.example.com/download/chart_w800.jpg" \
alt="Image" width="552" style="border:#d1d1d1 1px solid;" /></center>\
<p class="em_media">（文章来源：某某<span id="bk_1"><a href="http://quote.example.com/r/1" \
class="keytip">证券</a></span><span id="bkquote_1"></span>报）</p>

<http://finance.eastmoney.com/news/1354,202201010000000001.html>

[返回东财滚动新闻](../emnews/)
[返回首页](../)"""

FINEWS_PLAIN = """数据显示，截至收盘，示例指数上涨百分之一，成交额较上日有所放大。

<>

[返回东财滚动新闻](//finews.example.com/emnews/)｜[返回首页](//finews.example.com/)"""

GELONGHUI_LIKE = """<div>
<p></p><p><img src="https://img.example.com/cover.jpg" style="margin-top: 0px;"
 referrerpolicy="no-referrer"></p><p><span>第一段：市场情绪在午后明显回暖。</span></p>
<p></p><p></p><p></p><p></p><p></p>
<h3 style="text-align: center;"><span><strong><font color="#3daad6"><br></font></strong></span></h3>
<h3 style="text-align: center;"><span><strong><font color="#3daad6">01</font></strong></span></h3>
<div><strong style="font-style: inherit;"><font color="#3daad6"><br></font></strong></div>
<p style="text-align: center;"><strong></strong></p><p></p><p><br></p><p>&nbsp;</p>
<p><span>第二段：成交量温和放大，资金流入明显。</span></p>
</div>"""

DATA_IMAGE_AND_MAIL = """<div>
<p>　　作者：李四（lisi@example.com）</p>
<p><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" cms-width="440"></p>
<p><a href="mailto:lisi@example.com">给作者写信</a></p>
</div>"""


def cleaned(body: str, rules: CleanupRules = BUILTIN, **kwargs: str) -> CleanBody:
    html = body if looks_like_html(body) else markdown_to_html(body)
    return clean_body(html, rules, **kwargs)


# --- the outlets' boilerplate --------------------------------------------------------------


def test_sina_boilerplate_goes_and_sentences_stay() -> None:
    body = cleaned(SINA_LIKE)
    for gone in ("海量资讯", "责任编辑", "appendQr", "举报", "<style", "<!--", "&#123;", "{"):
        assert gone not in body.html
    assert "quote_sh600000" not in body.html and "<span" not in body.html
    assert body.text.splitlines() == [
        "本报讯，某市统计局今天发布数据，前三季度全市工业增加值同比增长百分之六。",
        "分析人士认为，制造业投资回暖是主要原因，示例银行等企业的表现尤其突出。",
    ]
    assert body.first_image is None  # the QR code is in ignore_images
    assert '<a href="https://finance.example.com/realstock/company/sh600000/nc.shtml"' in (
        body.html
    )


def test_eastmoney_widgets_footer_and_original_link() -> None:
    body = cleaned(EASTMONEY_LIKE)
    for gone in ("display", "EmImageRemark", "webquoteklinepic", "返回", "<span", "&lt;http"):
        assert gone not in body.html
    assert body.original_link == "http://finance.eastmoney.com/news/1354,202201010000000001.html"
    assert "1354,2022" not in body.html
    assert body.first_image == "https://img.example.com/download/chart_w800.jpg"
    assert body.source_line == "某某证券报"
    assert body.text.splitlines() == [
        "摘要：某新能源公司公告称，拟投资十亿元建设储能基地。",
        "该公司晚间公告，拟在华东地区投资建设储能项目，预计两年内投产。",
        "（文章来源：某某证券报）",
    ]


def test_finews_empty_autolink_and_protocol_relative_footer() -> None:
    body = cleaned(FINEWS_PLAIN)
    assert body.text == "数据显示，截至收盘，示例指数上涨百分之一，成交额较上日有所放大。"
    assert "&lt;&gt;" not in body.html and "返回" not in body.html
    assert body.original_link is None


def test_gelonghui_empty_paragraph_runs_disappear() -> None:
    body = cleaned(GELONGHUI_LIKE)
    for empty in ("<p></p>", "<p><br></p>", "<h3></h3>", "<strong></strong>", "<div></div>"):
        assert empty not in body.html
    assert body.html.count("<p>") == 3  # cover picture, two paragraphs
    assert body.text.splitlines() == [
        "第一段：市场情绪在午后明显回暖。",
        "01",
        "第二段：成交量温和放大，资金流入明显。",
    ]
    assert body.first_image == "https://img.example.com/cover.jpg"


def test_data_image_dropped_mail_kept() -> None:
    body = cleaned(DATA_IMAGE_AND_MAIL)
    assert "data:" not in body.html and "<img" not in body.html
    assert "作者：李四（lisi@example.com）" in body.text
    assert '<a href="mailto:lisi@example.com" rel="noopener noreferrer">给作者写信</a>' in body.html
    assert body.first_image is None


def test_an_image_asking_for_no_referrer_keeps_asking() -> None:
    body = cleaned(
        '<p>图一<img src="https://n.img.example.cn/a.jpg" referrerpolicy="no-referrer"></p>'
        '<p>图二<img src="https://n.img.example.cn/b.jpg" referrerpolicy="javascript:x()"></p>'
    )
    assert '<img referrerpolicy="no-referrer" src="https://n.img.example.cn/a.jpg">' in body.html
    assert '<img src="https://n.img.example.cn/b.jpg">' in body.html  # not a policy: dropped


# --- hostile markup ------------------------------------------------------------------------

KEPT = "安全的正文句子。"
XSS = [
    ("script", f"<p>{KEPT}</p><script>alert('x')</script>", ["<script", "alert"]),
    ("script-in-paragraph", f"<p>{KEPT}<script>document.cookie</script></p>", ["cookie"]),
    ("img-onerror", f"<p>{KEPT}<img src=x onerror=alert(1)></p>", ["onerror", "<img", "alert"]),
    (
        "absolute-img-onerror",
        f'<p>{KEPT}<img src="https://img.example.com/a.jpg" onerror="alert(1)"></p>',
        ["onerror", "alert"],
    ),
    ("javascript-href", f'<p><a href="javascript:alert(1)">{KEPT}</a></p>', ["javascript", "href"]),
    ("mixed-case-href", f'<p><a href="jAvAsCrIpT:alert(1)">{KEPT}</a></p>', ["avascript", "href"]),
    ("tab-in-scheme", f'<p><a href="java\tscript:alert(1)">{KEPT}</a></p>', ["script", "href"]),
    ("entity-in-scheme", f'<p><a href="java&#115;cript:alert(1)">{KEPT}</a></p>', ["script:"]),
    ("vbscript-href", f'<p><a href="vbscript:msgbox(1)">{KEPT}</a></p>', ["vbscript", "href"]),
    ("data-href", f'<p><a href="data:text/html,<b>x</b>">{KEPT}</a></p>', ["data:", "href"]),
    ("svg-onload", f"<svg onload=alert(1)><circle r=1 /></svg><p>{KEPT}</p>", ["svg", "onload"]),
    ("iframe", f'<iframe src="https://evil.example/"></iframe><p>{KEPT}</p>', ["iframe", "evil"]),
    ("object", f'<object data="movie.swf"></object><p>{KEPT}</p>', ["object", "swf"]),
    ("embed", f'<embed src="movie.swf"><p>{KEPT}</p>', ["embed", "swf"]),
    (
        "form",
        f'<form action="https://evil.example/"><input name="q"><button>提交</button></form>'
        f"<p>{KEPT}</p>",
        ["form", "input", "evil", "提交"],
    ),
    (
        "math",
        f'<math><mtext><a xlink:href="javascript:alert(1)">点</a></mtext></math><p>{KEPT}</p>',
        ["math", "javascript", "点"],
    ),
    (
        "event-style-class-id",
        f'<p onclick="alert(1)" style="color:red" class="c" id="i">{KEPT}</p>',
        ["onclick", "style", "class", "id="],
    ),
    ("style-tag", f"<style>p{{background:url(javascript:x)}}</style><p>{KEPT}</p>", ["style"]),
    ("meta-refresh", f'<meta http-equiv="refresh" content="0;url=x"><p>{KEPT}</p>', ["meta"]),
    ("base-href", f'<base href="https://evil.example/"><p>{KEPT}</p>', ["base", "evil"]),
    (
        "noscript",
        f'<noscript><img src="https://t.example/p.gif"></noscript><p>{KEPT}</p>',
        ["t.ex"],
    ),
    ("unclosed", f"<p>{KEPT}<b>加粗<i>斜体", ["<script"]),
    ("broken-nesting", f"<<script>alert(1)//<</script><p>{KEPT}</p>", ["<script", "alert"]),
    ("comment-trick", f"<!--><script>alert(1)</script>--><p>{KEPT}</p>", ["<script", "alert"]),
    ("escaped-text-stays-text", f"<p>{KEPT}&lt;script&gt;</p>", ["<script"]),
    ("quoted-gt-in-attribute", f'<p title="a>b" onmouseover="x">{KEPT}</p>', ["onmouseover"]),
]


@pytest.mark.parametrize(("markup", "forbidden"), [c[1:] for c in XSS], ids=[c[0] for c in XSS])
def test_nothing_unsafe_survives(markup: str, forbidden: list[str]) -> None:
    body = clean_body(markup, BUILTIN)
    assert KEPT in body.text
    lowered = body.html.lower()
    for fragment in forbidden:
        assert fragment.lower() not in lowered


def test_escaped_markup_is_shown_not_run() -> None:
    body = clean_body("<p>教程：&lt;script&gt;alert(1)&lt;/script&gt; 不会执行</p>", NO_RULES)
    assert "&lt;script&gt;" in body.html
    assert body.text == "教程：<script>alert(1)</script> 不会执行"


def test_sanitizer_allows_only_listed_attributes() -> None:
    body = clean_body(
        '<p><img src="https://img.example.com/a.jpg" alt="图" width="10" height="20" '
        'title="t" loading="lazy" data-x="1"><a href="https://a.example/" title="链" '
        'target="_blank" rel="opener">链接</a></p>',
        NO_RULES,
    )
    assert body.html == (
        '<p><img alt="图" height="20" src="https://img.example.com/a.jpg" title="t" width="10">'
        '<a href="https://a.example/" title="链" rel="noopener noreferrer">链接</a></p>'
    )


# --- rules ---------------------------------------------------------------------------------


def test_only_the_smallest_matching_block_goes() -> None:
    rules = CleanupRules(remove_text=("海量资讯",))
    body = clean_body(
        "<div><p>正文第一句。</p><div><p>海量资讯，请下载客户端</p></div><p>正文第二句。</p></div>",
        rules,
    )
    assert body.text.splitlines() == ["正文第一句。", "正文第二句。"]
    assert body.html == "<div><p>正文第一句。</p><p>正文第二句。</p></div>"


def test_a_lone_container_is_judged_as_a_block() -> None:
    rules = CleanupRules(remove_text=("^免责声明",))
    assert clean_body("<div>免责声明：仅供参考</div>", rules).html == ""
    assert clean_body("<div>正文不受影响</div>", rules).text == "正文不受影响"


@pytest.mark.parametrize(
    ("selectors", "markup", "expected"),
    [
        (("style",), "<style>x</style><p>正文</p>", "正文"),
        ((".ad",), '<p class="ad big">广告</p><p>正文</p>', "正文"),
        (("#tail",), '<p id="tail">尾巴</p><p>正文</p>', "正文"),
        (("[style*='display:none']",), '<p style="x;display:none">隐</p><p>正文</p>', "正文"),
        (("div.box > p",), '<div class="box"><p>框</p></div><p>正文</p>', "正文"),
        (("p:nth-of-type(2)",), "<p>正文</p><p>第二段</p>", "正文"),
        (("[data-role=ad]",), '<p data-role="ad">广告</p><p>正文</p>', "正文"),
        (("p[", ".ad"), '<p class="ad">广告</p><p>正文</p>', "正文"),  # invalid CSS skipped
    ],
    ids=["tag", "class", "id", "attr-contains", "child", "pseudo", "attr-equals", "invalid"],
)
def test_remove_selectors(selectors: tuple[str, ...], markup: str, expected: str) -> None:
    body = clean_body(markup, CleanupRules(remove_selectors=selectors))
    assert body.text == expected


def test_rule_sets_are_independent() -> None:
    strict = CleanupRules(remove_text=("^正文",))
    assert clean_body("<p>正文</p><p>其余</p>", strict).text == "其余"
    assert clean_body("<p>正文</p><p>其余</p>", NO_RULES).text == "正文\n其余"


# --- links, sources, images ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "base_url", "expected_html"),
    [
        (
            '<p><a href="//cdn.example.com/x">协议相对</a></p>',
            None,
            '<p><a href="https://cdn.example.com/x" rel="noopener noreferrer">协议相对</a></p>',
        ),
        (
            '<p><a href="http://old.example.com/x">明文链接</a></p>',
            None,
            '<p><a href="http://old.example.com/x" rel="noopener noreferrer">明文链接</a></p>',
        ),
        ('<p>看<a href="/page/2.html">下一页</a>吧</p>', None, "<p>看下一页吧</p>"),
        (
            '<p>看<a href="/page/2.html">下一页</a>吧</p>',
            "https://news.example.com/a/1.html",
            '<p>看<a href="https://news.example.com/page/2.html" rel="noopener noreferrer">'
            "下一页</a>吧</p>",
        ),
        ('<p>正文<img src="pics/1.jpg"></p>', None, "<p>正文</p>"),
        (
            '<p>正文<img src="pics/1.jpg"></p>',
            "https://news.example.com/a/1.html",
            '<p>正文<img src="https://news.example.com/a/pics/1.jpg"></p>',
        ),
        ('<p><a name="top">锚点</a></p>', None, "<p>锚点</p>"),
        (
            '<p><img src="data:image/gif;base64,AA" data-src="//img.example.com/lazy.jpg"></p>',
            None,
            '<p><img src="https://img.example.com/lazy.jpg"></p>',
        ),
    ],
    ids=[
        "protocol-relative",
        "http-kept",
        "relative-link-unwrapped",
        "relative-link-resolved",
        "relative-image-dropped",
        "relative-image-resolved",
        "anchor-without-href",
        "lazy-image",
    ],
)
def test_urls(markup: str, base_url: str | None, expected_html: str) -> None:
    kwargs = {"base_url": base_url} if base_url else {}
    assert clean_body(markup, NO_RULES, **kwargs).html == expected_html


@pytest.mark.parametrize(
    ("markup", "source"),
    [
        ("<p>正文。</p><p>（文章来源：上海某报）</p>", "上海某报"),
        ("<p>正文。</p><p>(来源：某某网)</p>", "某某网"),
        ("<p>正文。</p><p>来源：健康某省</p>", "健康某省"),
        ("<p>正文。</p><p>来源：某报</p><p>封面图片来源：图库</p>", "某报"),
        ("<p>图片来源：官网</p><p>正文一。</p><p>正文二。</p><p>正文三。</p>", None),
        ("<p>正文，消息来源：知情人士。</p>", None),
    ],
    ids=["article-source", "ascii-parens", "bare", "before-credit", "caption-early", "inline"],
)
def test_source_line(markup: str, source: str | None) -> None:
    body = clean_body(markup, NO_RULES)
    assert body.source_line == source
    if source:
        assert source in body.text  # the line itself stays


def test_autolink_becomes_original_link_other_links_stay() -> None:
    url = "https://finance.example.com/news/1.html"
    body = clean_body(
        f'<p>正文。</p><p><a href="{url}">{url}</a></p>'
        f'<p><a href="{url}">原文</a></p><p><a href="{url}">{url}</a> 另有文字</p>'
        f'<p><span class="x"><a href="{url}">{url}</a></span></p>',
        NO_RULES,
    )
    assert body.original_link == url
    assert body.html.count(f'href="{url}"') == 2  # the link with its own text, and the inline one


def test_relative_navigation_goes_content_link_stays() -> None:
    nav = markdown_to_html("正文。\n\n[返回滚动新闻](../roll/)\n[返回首页](../)\n")
    assert clean_body(nav, NO_RULES).text == "正文。"
    lone_page = '<p>正文。</p><p><a href="report.html">完整报告</a></p>'
    body = clean_body(lone_page, NO_RULES, base_url="https://news.example.com/a/")
    assert "完整报告" in body.text and 'href="https://news.example.com/a/report.html"' in body.html


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        (
            '<p><img src="https://picsum.photos/400/300"><img src="https://a.example/1.jpg"></p>',
            "https://a.example/1.jpg",
        ),
        ('<p><img src="http://a.example/1.jpg"></p>', "http://a.example/1.jpg"),
        (f'<p><img src="{SINA_QR}"></p>', None),
        ('<p><img src="https://webquoteklinepic.eastmoney.com/GetPic.aspx?a=1&amp;b=2"></p>', None),
        (
            '<p><img src="https://a.example/x.jpg?w=1&amp;h=2"></p>',
            "https://a.example/x.jpg?w=1&h=2",
        ),
        ('<p><img src="https://a.example/wx_qrcode.png"></p>', None),
        ('<p><img alt="扫码下载APP" src="https://a.example/1.png"></p>', None),
        ('<p><img height="1" src="https://t.example/p.gif" width="1"></p>', None),
        ('<p><img alt="走势图" src="https://a.example/1.png" width="1"></p>', "https://a.example/1.png"),
    ],
    ids=[
        "placeholder-skipped", "http-ok", "qr-code", "quote-chart", "entities-decoded",
        "qr-code-by-file-name", "qr-code-by-alt", "tracking-pixel", "one-pixel-wide-only",
    ],
)  # fmt: skip
def test_first_image(markup: str, expected: str | None) -> None:
    assert clean_body(markup, BUILTIN).first_image == expected


def test_text_is_one_line_per_block_without_indentation() -> None:
    body = clean_body(
        "<div><h2>小标题</h2><p>　　第一段\n  跨行\t文字。</p><ul><li>甲</li><li>乙</li></ul>"
        "<p>句一<br>句二</p><table><tr><td>列一</td><td>列二</td></tr></table></div>",
        NO_RULES,
    )
    assert body.text.splitlines() == [
        "小标题",
        "第一段 跨行 文字。",
        "甲",
        "乙",
        "句一",
        "句二",
        "列一 列二",
    ]
    assert "<p>第一段" in body.html  # full-width indentation trimmed in the HTML too


# --- garbage in, something sane out --------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("", ""),
        ("   \n\t", ""),
        ("<!-- 只有注释 -->", ""),
        ("<style>p{}</style>", ""),
        ("<", "<"),
        ("https://example.com/a.html", "https://example.com/a.html"),
        ("readme.txt", "readme.txt"),
        ("<?xml version='1.0'?><p>正文</p>", "正文"),
        (
            "<!DOCTYPE html><html><head><title>题</title></head><body><p>正文</p></body></html>",
            "正文",
        ),
        ("<p>零\x00宽\ud800字\ufffe符</p>", "零宽字符"),
        ("<p>a\u200bb</p>", "ab"),
        ("<table><td>孤立单元格", "孤立单元格"),
        ("<frameset><frame src=x></frameset>", ""),
        ("<b>" * 5000 + "深", "深"),
        ("<div>" * (MAX_DEPTH + 50) + "<p>深处<script>x()</script></p>" + "</div>" * 10, "深处"),
    ],
    ids=[
        "empty",
        "blank",
        "comment-only",
        "style-only",
        "lone-lt",
        "url-like",
        "file-name-like",
        "xml-declaration",
        "full-document",
        "control-chars",
        "zero-width",
        "stray-cell",
        "frameset",
        "deep-inline",
        "deeper-than-max-depth",
    ],
)
def test_odd_input_is_handled_without_the_safety_net(
    markup: str, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="feeds.clean"):
        body = clean_body(markup, BUILTIN)
    assert body.text == text
    assert "<script" not in body.html and "x()" not in body.html
    assert not caplog.records  # handled by the code, not by the catch-all


MARKUP_TOKENS = [*"<>/=\"' !-:&#;\n　文字", "script", "img", "src", "a", "href", "p", "div"]
MARKUP_TOKENS += ["onerror", "javascript:", "<!--", "-->", "style", "&#123;", "<>", "](../)"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(MARKUP_TOKENS), max_size=60).map("".join))
def test_random_markup_never_raises(markup: str) -> None:
    body = clean_body(markup, BUILTIN)
    assert isinstance(body, CleanBody)
    assert "<script" not in body.html.lower()
    assert html_to_text(body.html) == body.text


# --- detection, markdown, text, summaries --------------------------------------------------


WEB_BOILERPLATE = [
    "分享到：微信 微博 QQ空间",
    "相关新闻：",
    "推荐阅读：某篇文章",
    "关注公众号“某某财经”，获取更多资讯",
    "更多精彩内容，请关注微信公众号",
    "微信扫一扫，关注我们",
    "下载某某财经APP，查看更多行情",
    "点击查看更多",
    "声明：本文仅代表作者观点，不构成投资建议。",
    "风险提示：市场有风险，投资需谨慎。",
    "返回搜狐，查看更多",
    "责编：某某",
    "校对：某某",
    "网友评论：很好",
    "举报",
    "【免责声明】本文仅代表作者本人观点，与本网无关。",
    "(责任编辑：某某)",
]
STORY_LINES = [  # the same words, in a story
    "3月5日，某公司发布年报，净利润同比增长20%。",
    "公司表示，编辑部门将继续优化内容生产，分享经济业务增长较快。",
    "相关新闻报道称，该公司下载量居行业前列。",
    "下载量超过1亿次的某APP，其运营方在微信公众号发布声明，称将依法维权，关注用户隐私。",
    "风险提示函显示，公司已于3月1日收到监管问询。",
]


def test_web_boilerplate_goes_and_the_story_stays() -> None:
    markup = "".join(f"<p>{line}</p>" for line in [*STORY_LINES, *WEB_BOILERPLATE])
    assert clean_body(markup, BUILTIN).text.split("\n") == STORY_LINES


def test_a_related_article_list_goes_with_its_heading() -> None:
    markup = (
        "<div><p>正文第一段，某公司发布年报。</p>"
        '<div><h3>相关阅读</h3><ul><li><a href="https://a.example/1">另一篇一</a></li>'
        '<li><a href="https://a.example/2">另一篇二</a></li></ul></div>'
        '<p>推荐阅读：</p><ol><li><span><a href="https://a.example/3">另一篇三</a></span></li></ol>'
        "<ul><li>公司要点一</li><li>公司要点二</li></ul>"
        '<p>附件：</p><ul><li><a href="https://a.example/4.pdf">公告全文</a></li></ul>'
        "<p>（来源：某某网）</p></div>"
    )
    body = clean_body(markup, BUILTIN)
    kept = ["正文第一段，某公司发布年报。", "公司要点一", "公司要点二", "附件：", "公告全文"]
    assert body.text.split("\n") == [*kept, "（来源：某某网）"]
    assert body.source_line == "某某网"


def test_qr_codes_and_tracking_pixels_leave_the_content() -> None:
    markup = (
        "<p>正文提到二维码支付，扫码比例上升。</p>"
        '<p><img alt="二维码" src="https://a.example/1.png"></p>'
        '<p><img height="1" src="https://t.example/p.gif" width="1"></p>'
        '<p><img alt="走势图" src="https://a.example/2.png"></p>'
        "<p>本文编辑：某某</p>"
    )
    body = clean_body(markup, BUILTIN)
    assert body.html == (
        "<p>正文提到二维码支付，扫码比例上升。</p>\n"
        '<p><img alt="走势图" src="https://a.example/2.png"></p>'
    ).replace("\n", "")


@pytest.mark.parametrize(
    ("body", "is_html"),
    [
        ("<div>   \n<p>正文</p>\n</div>", True),
        ("  <p>正文</p>", True),
        ("<P>大写标签</P>", True),
        ("<!-- 注释 --><p>正文</p>", True),
        ("<center><img src='x.jpg'></center>", True),
        ("正文第一段。\n\n正文第二段。", False),
        ("<http://finance.example.com/a.html>", False),
        ("> 摘要一句。\n\n<p>正文</p>", False),
        ("<p>正文</p>\n\n<http://finance.example.com/a.html>\n", False),
        ("<p>正文</p>\n\n[返回首页](../)", False),
        ("<p>正文</p>\n\n<>\n", False),
        ("<span>行内标签开头</span>", False),
        ("<editor@example.com>", False),
    ],
    ids=[
        "hexo-div",
        "leading-space",
        "upper-case",
        "comment",
        "center",
        "plain-text",
        "autolink",
        "digest-quote",
        "html-then-autolink",
        "html-then-md-link",
        "html-then-empty-autolink",
        "inline-start",
        "mail-autolink",
    ],
)
def test_looks_like_html(body: str, is_html: bool) -> None:
    assert looks_like_html(body) is is_html


def test_markdown_to_html_keeps_raw_html_and_renders_autolinks() -> None:
    html = markdown_to_html(
        '正文**加粗**。\n\n<p class="x">原样</p>\n\n<https://a.example/1>\n\n<>\n'
    )
    assert "<strong>加粗</strong>" in html
    assert '<p class="x">原样</p>' in html
    assert '<a href="https://a.example/1">https://a.example/1</a>' in html
    assert "<p>&lt;&gt;</p>" in html


def test_markdown_tables_and_strikethrough_are_rendered() -> None:
    # Hexo (marked) and Jekyll (kramdown) render them; pipes shown as text hid the data
    markdown = (
        "两市融资余额如下：\n\n| 市场 | 余额（亿元） |\n| --- | ---: |\n| 沪市 | 8,123.45 |\n"
        "| 深市 | 7,654.32 |\n\n~~旧数据~~已更正，A|B 两类不变。\n"
    )
    body = clean_body(markdown_to_html(markdown), BUILTIN)
    assert "<table>" in body.html
    assert "<td>沪市</td>" in body.html
    assert "<td>8,123.45</td>" in body.html
    assert "<p><del>旧数据</del>已更正，A|B 两类不变。</p>" in body.html
    assert "|" not in body.text.replace("A|B", "")


def test_jekyll_and_hexo_template_tags_are_not_shown() -> None:
    markdown = (
        "第一段，介绍市场情况。\n\n{% asset_img chart.png 走势图 %}\n\n"
        "第二段，{{ site.title }}报道。\n\n{% raw %}模板写法：{{ price }}{% endraw %}\n\n"
        "{: .notice}\n第三段带属性。\n\n{% include ad.html %}\n\n"
        "{% highlight python %}\nprint(1)\n{% endhighlight %}\n\n收益率{5%}不变。\n"
    )
    body = clean_body(markdown_to_html(without_template_tags(markdown)), BUILTIN)
    assert body.text.split("\n") == [
        "第一段，介绍市场情况。",
        "第二段，报道。",
        "模板写法：{{ price }}",
        "第三段带属性。",
        "print(1)",
        "收益率{5%}不变。",
    ]
    assert "<pre><code" in body.html
    assert without_template_tags("没有模板标签的正文{x}。") == "没有模板标签的正文{x}。"


def test_a_hostile_table_costs_no_more_than_plain_markdown() -> None:
    # every line after a header row would become a row of cells (16x the bytes in markup)
    markdown = "| a | b |\n|---|---|\n" + "x\n" * 100_000
    html = markdown_to_html(markdown)
    assert "<table>" not in html
    assert len(html) < 6 * len(markdown)


def test_markdown_with_tables_frees_what_the_renderer_allocates() -> None:
    body = "| a | b |\n|---|---|\n" + "| 北交所 | ~~新规~~ |\n" * 400
    markdown_to_html(body)
    before = _resident_bytes()
    for _ in range(2000):  # ≈ 60 MB of HTML and as many parse trees in all
        markdown_to_html(body)
    assert _resident_bytes() - before < 16 * 1024 * 1024


def test_html_to_text() -> None:
    html = "<h1>标题</h1><p>第一段&amp;符号</p><script>x()</script><p>第二<br/>行</p>"
    assert html_to_text(html) == "标题\n第一段&符号\n第二\n行"
    assert html_to_text("<p>a\ud800b</p>") == "ab"


LONG = "第一句话说明背景。第二句话给出数据，增长百分之五。第三句话是结论！"
SUMMARIES = [
    ("short-kept", "一句话。", 10, "一句话。"),
    ("exact-length", LONG, len(LONG), LONG),
    ("sentence-boundary", LONG, 20, "第一句话说明背景。…"),
    ("later-sentence", LONG, 30, "第一句话说明背景。第二句话给出数据，增长百分之五。…"),
    ("clause-boundary", "甲乙丙丁戊己庚辛，壬癸子丑寅卯辰巳午未申酉", 15, "甲乙丙丁戊己庚辛…"),
    ("hard-cut", "甲" * 30, 10, "甲" * 9 + "…"),
    ("english-words", "The index rose sharply in early trading today", 20, "The index rose…"),
    ("lines-joined", "第一句。\n第二句！\nthird line", 100, "第一句。第二句！third line"),
    ("caption-kept-apart", "某某制图\n正文第一句。", 100, "某某制图 正文第一句。"),
    ("zero", LONG, 0, ""),
    ("one", LONG, 1, "…"),
]


@pytest.mark.parametrize(
    ("text", "limit", "expected"), [c[1:] for c in SUMMARIES], ids=[c[0] for c in SUMMARIES]
)
def test_summarize(text: str, limit: int, expected: str) -> None:
    summary = summarize(text, limit)
    assert summary == expected
    assert len(summary) <= max(limit, 0)


LEADS = [
    (
        "outlet-dateline",
        "证券时报网讯，数据宝统计显示，两市成交放量。",
        "数据宝统计显示，两市成交放量。",
    ),
    ("dateline-reporter", "中证网讯（记者 王某）5月2日，国债期货收涨。", "5月2日，国债期货收涨。"),
    ("aside-before", "财联社（上海，编辑 某某）讯，美债收益率走低。", "美债收益率走低。"),
    ("date-and-aside", "财联社7月4日讯（编辑 某某）美国市场休市。", "美国市场休市。"),
    ("ai-flash", "每经AI快讯：北京时间10月5日，美股收跌。", "北京时间10月5日，美股收跌。"),
    ("wire-dian", "新华社北京3月5日电（记者 某某）会议召开。", "会议召开。"),
    ("reporter-line", "南方财经记者某某 东莞报道 5月24日，名单公布。", "5月24日，名单公布。"),
    ("byline-line", "作者：某某\n第一段正文。", "第一段正文。"),
    ("credit-line", "某某某制图\n第一段正文。", "第一段正文。"),
    ("photo-credit", "新华社记者 某某 摄\n来源：某某\n第一段正文。", "第一段正文。"),
    ("company-name-kept", "腾讯推出新品牌，覆盖海外市场。", "腾讯推出新品牌，覆盖海外市场。"),
    (
        "reporter-in-story-kept",
        "记者27日获悉，个体工商户超1亿户。",
        "记者27日获悉，个体工商户超1亿户。",
    ),
    ("shooting-kept", "他说要拍摄\n第一段正文。", "他说要拍摄\n第一段正文。"),
    ("dateline-alone-kept", "证券时报网讯，", "证券时报网讯，"),
    ("byline-alone-kept", "作者：某某", "作者：某某"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in LEADS], ids=[c[0] for c in LEADS])
def test_story_lead_drops_bylines_and_the_dateline(text: str, expected: str) -> None:
    assert story_lead(text) == expected


# --- the shared seeds ----------------------------------------------------------------------


def split_front_matter(text: str) -> str:
    """The body after a ``---`` front matter block (Hexo files start with a blank line)."""
    _, _, body = ("\n" + text.lstrip("\n")).split("\n---", 2)
    return body.strip("\n")


def seed_files() -> list[Path]:
    if not SEEDS.is_dir():
        pytest.skip(f"../shared/seeds not present: {SEEDS} is only beside the repo in CI/dev")
    files = sorted(SEEDS.glob("*.txt"))
    if not files:
        pytest.skip(f"../shared/seeds has no *.txt files: {SEEDS}")
    return files


@pytest.mark.shared
def test_seeds_clean_to_content_without_boilerplate() -> None:
    for path in seed_files():
        body = split_front_matter(path.read_text("utf-8"))
        html = body if looks_like_html(body) else markdown_to_html(body)
        result = clean_body(html, BUILTIN)
        for gone in ("海量资讯", "责任编辑", "返回首页", "appendQr", "<style", "<!--"):
            assert gone not in result.html, f"{path.name}: {gone!r} left"
        assert len(result.text) > 200, f"{path.name}: content lost"
        assert result.first_image is None or "343233024.png" not in result.first_image


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_markdown_rendering_frees_what_the_renderer_allocates() -> None:
    """cmark returns a buffer the caller must free; not freeing it leaked the size of the HTML
    on every call (a worker of a 100,000-article build grew by ~100 MB)."""
    body = "\n\n".join(
        f"第{i}段：北交所**新规**发布，详见[公告](https://example.com/{i})。" for i in range(400)
    )
    markdown_to_html(body)
    before = _resident_bytes()
    for _ in range(2000):  # ~60 MB of HTML in all
        markdown_to_html(body)
    assert _resident_bytes() - before < 16 * 1024 * 1024


# --- the boilerplate patterns searched as one --------------------------------------------------

TRICKY_PATTERNS = [
    *BUILTIN.remove_text,
    "^a|b",  # a top-level alternation: not anchored as a whole
    "^[|]x",
    "^[]|]",
    "^[^]|]y",
    r"^a\\|b",  # an escaped backslash, then a top-level "|"
    r"^\|z",
    "^(a|b)c",
    "^",
    "(a)\\1",  # a backreference: searched alone
    "^(?P<n>x)(?P=n)",
    "(?i)^abc",  # global flags: nothing can be joined with it
    "(?P<n>q)",
    "c$",
]
pattern_text = st.text(st.sampled_from("ab|cxyzqQ]^\\原标题：返回首页 \n"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TRICKY_PATTERNS), max_size=6, unique=True), pattern_text)
def test_joined_boilerplate_patterns_find_what_each_pattern_finds(
    patterns: list[str], text: str
) -> None:
    joined = _compile_patterns(tuple(patterns))
    assert joined.found(text) == any(re.search(pattern, text) for pattern in patterns)


def test_builtin_boilerplate_patterns_are_joined() -> None:
    joined = _compile_patterns(tuple(BUILTIN.remove_text))
    assert joined.at_start is not None and joined.anywhere is not None and not joined.alone
