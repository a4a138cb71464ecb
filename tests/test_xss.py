"""An XSS corpus through a full build: nothing executable reaches a feed, the index or an alert.

Every payload goes into a title, a summary (front-matter description), an HTML body, a
Markdown body, a source name, categories and tags, and links and images in the front matter.
Then every feed file is read with feedparser (its own sanitizer switched off: we check ours)
and every entry's text and HTML is parsed as HTML with lxml — titles too, since many readers
render an RSS title as HTML. The index page is parsed the same way, and every alert in the
outbox is formatted for every webhook format.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import feedparser
import pytest
import yaml
from lxml import etree
from lxml import html as lxml_html

from feeds.alert_messages import format_message
from feeds.alert_payload import alert_from_payload
from feeds.alerts import AlertPlanner
from feeds.config import Config
from feeds.pipeline import Pipeline
from feeds.render import _STYLE
from feeds.store import open_store
from tests.conftest import TOPICS, config_at, write

PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<img src=x onerror=alert(1)//",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href=" &#14;javascript:alert(1)">x</a>',
    '<a href="java\tscript:alert(1)">x</a>',
    '<a href="javascript&#58;alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<img srcset="javascript:alert(1) 1x" src="https://img.example.org/a.png">',
    '<img src="javascript:alert(1)">',
    "<svg onload=alert(1)><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<div style="width: expression(alert(1))">x</div>',
    '<style>body{background:url("javascript:alert(1)")}</style>',
    '<link rel=stylesheet href="javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    '<form action="javascript:alert(1)"><button formaction="javascript:alert(1)">x</button></form>',
    "<input onfocus=alert(1) autofocus>",
    "<details open ontoggle=alert(1)>",
    "<body onload=alert(1)>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<<script>alert(1);//<</script>",
    '<img """><script>alert(1)</script>">',
    '<a href="https://ok.example/" onclick="alert(1)">ok</a>',
    '<a href="https://ok.example/"onmouseover=alert(1)>ok</a>',
    "<img src=`x` onerror=alert(1)>",
    '<p title="</p><script>alert(1)</script>">x</p>',
    "<!--<script>alert(1)</script>-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<template><script>alert(1)</script></template>",
    "<textarea><script>alert(1)</script></textarea>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;img src=x onerror=alert(1)&#62;",
    "&amp;lt;script&amp;gt;alert(1)",
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "![x](javascript:alert(1))",
    "<javascript:alert(1)>",
    "[x](data:text/html,<script>alert(1)</script>)",
    "<video><source onerror=alert(1)></video>",
    "<audio src=x onerror=alert(1)>",
    "<isindex action=javascript:alert(1) type=image>",
    "<marquee onstart=alert(1)>x</marquee>",
    "<x onclick=alert(1)>x</x>",
    '<a href="https://ok.example/" style="position:fixed;top:0;left:0;width:100%">x</a>',
]
LINKS = [
    "javascript:alert(1)",
    " JAVASCRIPT:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    'https://ok.example/"><script>alert(1)</script>',
    "https://ok.example/a|<javascript:alert(1)|click>",
    "https://ok.example/a b)](javascript:alert(1))",
    "//ok.example/protocol-relative",
]
FORMATS = ("json", "wecom", "dingtalk", "feishu", "slack")
ZONE = ZoneInfo("Asia/Shanghai")

# What must never be in a feed entry or a page: elements that run, load, submit or restyle.
FORBIDDEN = {
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math",
    "form", "input", "button", "textarea", "select", "style", "link", "meta", "base",
    "template", "noscript", "video", "audio", "source", "isindex", "marquee", "details",
}  # fmt: skip
URL_ATTRIBUTES = {
    "href", "src", "srcset", "action", "formaction", "data", "poster", "background",
    "cite", "longdesc", "usemap", "dynsrc", "lowsrc", "xlink:href", "ping", "manifest",
}  # fmt: skip
SAFE_SCHEMES = {"http", "https", "mailto"}
TAG_OPENER = re.compile(r"<[A-Za-z/!?]")


RNG = random.Random(58)
HANZI = [chr(c) for c in range(0x4E00, 0x9FA5)]


def sentence(n: int) -> str:
    """Text of its own for every post, so that no two are taken for near-duplicates."""
    words = "".join(RNG.choice(HANZI) for _ in range(60))
    return f"北交所今日公告第{n}项安排：{words}。"


def config_for(tmp_path: Path) -> Config:
    return config_at(
        tmp_path,
        feed={"limit": 1000},
        alert_on_backfill=True,
        webhooks=[
            {"name": "desk", "url": "https://hooks.example.invalid/x", "keywords": ["北交所"]}
        ],
    )


def hostile_posts(articles: Path) -> None:
    for n, payload in enumerate(PAYLOADS):
        meta = {
            "title": f"北交所{n}号 {payload}",
            "description": f"摘要{n} {payload}",
            "author": f"来源{n}{payload}",
            "categories": [f"分类{payload}", "金融"],
            "tags": [payload],
            "link": LINKS[n % len(LINKS)],
            "image": LINKS[(n + 1) % len(LINKS)],
        }
        head = yaml.safe_dump(meta, allow_unicode=True)
        html_body = f"<p>{sentence(n)}</p><div>{payload}</div><p>{payload} 尾段{n}。</p>"
        write(articles / f"html{n}.html", f"---\n{head}---\n{html_body}\n")
        md_meta = {**meta, "title": f"北交所M{n}号 {payload}", "author": "证券时报网"}
        md_body = f"{sentence(n + 1000)}\n\n{payload}\n\n- 列表 {payload}\n\n> 引用 {payload}\n"
        md_head = yaml.safe_dump(md_meta, allow_unicode=True)
        write(articles / f"md{n}.md", f"---\n{md_head}---\n\n{md_body}")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Config:
    tmp_path = tmp_path_factory.mktemp("xss")
    config = config_for(tmp_path)
    hostile_posts(tmp_path / "articles")
    store = open_store(config.state)
    try:
        report = Pipeline(config, store, workers=1, on_event=AlertPlanner(config)).sync()
    finally:
        store.close()
    assert report.batch.rejected == []
    assert report.batch.new == 2 * len(PAYLOADS)  # every hostile post is an item
    return config


# --- checks -------------------------------------------------------------------------------------


def scheme_ok(url: str) -> bool:
    cleaned = re.sub(r"[\x00-\x20\x7f]", "", url)  # browsers ignore these inside a scheme
    if cleaned.startswith("//"):
        return True
    return urlsplit(cleaned).scheme.lower() in SAFE_SCHEMES


def urls_of(name: str, value: str) -> list[str]:
    if name == "srcset":
        return [part.strip().split(" ")[0] for part in value.split(",") if part.strip()]
    return [value]


def assert_inert_element(element: Any, where: str) -> None:
    tag = element.tag if isinstance(element.tag, str) else ""
    assert tag.lower() not in FORBIDDEN, (where, tag, etree.tostring(element)[:200])
    for name, value in element.attrib.items():
        lowered = name.lower()
        assert not lowered.startswith("on"), (where, name, value)
        assert lowered != "style", (where, name, value)
        assert lowered != "srcdoc", (where, name, value)
        if lowered in URL_ATTRIBUTES or lowered.endswith(":href"):
            for url in urls_of(lowered, value):
                assert scheme_ok(url), (where, name, value)


def assert_inert_html(fragment: str, where: str) -> None:
    """Parse as browsers would (an HTML fragment) and check every element and attribute."""
    if not fragment.strip():
        return
    root = lxml_html.fragment_fromstring(fragment, create_parent="div")
    for element in root.iter():
        assert_inert_element(element, where)


def assert_plain(text: str, where: str) -> None:
    """A plain-text field: nothing a reader rendering it as HTML could take for a tag."""
    assert not TAG_OPENER.search(text), (where, text)
    assert_inert_html(text, where)


def feed_files(config: Config) -> list[Path]:
    return sorted(p for p in config.output.rglob("*") if p.suffix in (".rss", ".atom"))


def entries(path: Path) -> Iterator[Any]:
    parsed = feedparser.parse(path.read_bytes(), sanitize_html=False)
    assert parsed.bozo == 0, (path, parsed.get("bozo_exception"))
    yield from parsed.entries


# --- feeds --------------------------------------------------------------------------------------


def test_every_feed_entry_is_inert(built: Config) -> None:
    files = feed_files(built)
    assert len(files) >= 2 * (1 + len(TOPICS) + 2)
    seen = 0
    for path in files:
        for entry in entries(path):
            where = f"{path.name}: {entry.get('id')}"
            seen += 1
            assert_plain(entry.title, where)
            for detail in (entry.get("summary_detail"), *entry.get("content", [])):
                if detail is None:
                    continue
                if "html" in detail.type:
                    assert_inert_html(detail.value, where)
                else:
                    assert_plain(detail.value, where)
            for tag in entry.get("tags", []):
                assert_plain(tag.term, where)
            assert_plain(entry.get("author", ""), where)
            for link in entry.get("links", []):
                assert scheme_ok(link.href), (where, link.href)
            for thumbnail in entry.get("media_thumbnail", []):
                assert scheme_ok(thumbnail["url"]), (where, thumbnail)
    assert seen >= 2 * 2 * len(PAYLOADS)  # all.rss and all.atom at least


def test_raw_feed_xml_carries_no_unsafe_url_or_markup_in_text_fields(built: Config) -> None:
    """The raw XML, not feedparser's reading of it: every URL-bearing node and text field."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    for path in feed_files(built):
        root = etree.fromstring(path.read_bytes(), parser)
        for element in root.iter():
            local = etree.QName(element).localname if isinstance(element.tag, str) else ""
            for name in ("href", "url", "src"):
                value = element.get(name)
                if value is not None:
                    assert scheme_ok(value), (path.name, local, value)
            if local in ("link", "guid", "id") and element.text and element.text.strip():
                text = element.text.strip()
                assert scheme_ok(text) or text.startswith("urn:uuid:"), (path.name, text)
            if local in ("title", "category", "creator", "name") and element.text:
                assert not TAG_OPENER.search(element.text), (path.name, local, element.text)


def test_the_index_page_is_inert(built: Config) -> None:
    page = (built.output / "index.html").read_text("utf-8")
    document = lxml_html.document_fromstring(page)
    styles = document.findall(".//style")
    assert [s.text for s in styles] == [_STYLE]  # our own style sheet, nothing else
    for element in document.iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag == "style":
            continue
        if tag == "meta":
            assert set(element.attrib) <= {"charset", "name", "content"}
            assert element.get("name") in (None, "viewport")
            continue
        if tag == "link":
            assert element.get("rel") == "alternate" and scheme_ok(element.get("href", ""))
            continue
        assert_inert_element(element, "index.html")
    body_text = document.body.text_content()
    assert "来源0" in body_text  # the hostile source names are listed, as text
    assert not TAG_OPENER.search(body_text)


def test_the_opml_list_is_well_formed_with_safe_urls(built: Config) -> None:
    root = etree.fromstring((built.output / "feeds.opml").read_bytes())
    outlines = root.findall(".//outline[@xmlUrl]")
    assert len(outlines) >= 2 + 2 * len(PAYLOADS) // 2
    for outline in outlines:
        assert scheme_ok(outline.get("xmlUrl")) and scheme_ok(outline.get("htmlUrl"))
        assert not TAG_OPENER.search(outline.get("text", ""))


# --- alerts -------------------------------------------------------------------------------------


def alerts(config: Config) -> list[Any]:
    store = open_store(config.state)
    try:
        rows = store.list_alerts("all", 10_000)
    finally:
        store.close()
    return [alert_from_payload(row.event_id, row.payload) for row in rows]


def strings(value: Any) -> Iterator[tuple[str, str]]:
    """(key, string) of every string in a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                yield key, item
            else:
                yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


MARKDOWN_LINK = re.compile(r"\]\(([^)]*)\)")
SLACK_LINK = re.compile(r"<([^|>]*)(?:\|[^>]*)?>")


def check_json(message: dict[str, Any], where: str) -> None:
    for key, text in strings(message):
        if key in ("link", "image", "all", "source", "href") or text.startswith("http"):
            assert scheme_ok(text), (where, key, text)
            assert not re.search(r"[\s\"<>|]", text), (where, key, text)
        elif key not in ("type", "timestamp", "published", "updated"):
            assert_plain(text, f"{where}: {key}")


def check_markdown(text: str, where: str) -> None:
    for target in MARKDOWN_LINK.findall(text):
        assert scheme_ok(target) and " " not in target, (where, target)
    without_links = MARKDOWN_LINK.sub("]()", text)
    assert "<" not in without_links and ">" not in without_links.replace("\n> ", "\n"), (
        where,
        text,
    )


def check_slack(message: dict[str, Any], where: str) -> None:
    for key, text in strings(message):
        if key == "type":
            continue
        for target in SLACK_LINK.findall(text):
            assert scheme_ok(target), (where, target)
        assert not TAG_OPENER.search(SLACK_LINK.sub("", text)), (where, text)


def check_feishu(message: dict[str, Any], where: str) -> None:
    rows = message["content"]["post"]["zh_cn"]["content"]
    for row in rows:
        for node in row:
            assert node["tag"] in ("text", "a"), (where, node)
            if node["tag"] == "a":
                assert scheme_ok(node["href"]) and " " not in node["href"], (where, node)


def test_every_alert_in_every_format_is_inert(built: Config) -> None:
    queued = alerts(built)
    assert len(queued) == 2 * len(PAYLOADS)
    for alert in queued:
        for fmt in FORMATS:
            message = format_message(fmt, alert, ZONE)  # type: ignore[arg-type]
            where = f"{fmt}: {alert.item.title}"
            json.dumps(message, ensure_ascii=False)
            if fmt == "json":
                check_json(message, where)
            elif fmt in ("wecom", "dingtalk"):
                markdown = message["markdown"]
                for key in ("content", "text", "title"):
                    if key in markdown:
                        check_markdown(markdown[key], where)
            elif fmt == "slack":
                check_slack(message, where)
            else:
                check_feishu(message, where)
