"""Article body -> sanitized HTML, plain text and lead image.

``clean_body`` parses once (BeautifulSoup on lxml) and walks the tree twice:
A (document order) drops comments, dangerous and rule-selected elements and unusable images,
makes URLs absolute and marks wrappers and dead links for unwrapping;
B (reverse document order, so inner blocks come before the blocks holding them) drops
boilerplate, empty and navigation blocks and finds the original-article link and source line.
The nh3 sanitizer runs last; the plain text and lead image are read from its output, so
whatever they show is what readers get.
"""

from __future__ import annotations

import html as htmllib
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import unquote, urljoin

import cmarkgfm
import nh3
import soupsieve
from bs4 import BeautifulSoup
from bs4.element import NavigableString, PageElement, PreformattedString, Tag
from cmarkgfm.cmark import Options

from feeds.config import CleanupRules
from feeds.model import CleanBody
from feeds.text import xml_safe

log = logging.getLogger(__name__)

EMPTY = CleanBody(html="", text="", first_image=None, original_link=None, source_line=None)

# --- the sanitizer's contract --------------------------------------------------------------

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "a", "img", "strong", "b", "em", "i", "u", "blockquote", "ul", "ol", "li",
        "h1", "h2", "h3", "h4", "h5", "h6",
        "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td", "colgroup", "col",
        "pre", "code", "figure", "figcaption", "span", "div", "hr", "sub", "sup",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": frozenset({"href", "title"}),
    "img": frozenset({"src", "alt", "title", "width", "height"}),
}
ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
_IMAGE_EXTRAS = tuple(sorted(ALLOWED_ATTRIBUTES["img"] - {"src"}))
# Removed together with everything inside them, by pass A and again by the sanitizer.
DROPPED_WITH_CONTENT = frozenset(
    {
        "script", "style", "iframe", "object", "embed", "applet", "form", "svg", "math",
        "noscript", "template", "textarea", "select", "button", "frame", "frameset",
        "title", "head", "meta", "link", "base",
    }
)  # fmt: skip

_SANITIZER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags=set(DROPPED_WITH_CONTENT),
    attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
    url_schemes=set(ALLOWED_SCHEMES),
    url_relative="deny",  # every URL is absolute by then; anything else is dropped
    link_rel="noopener noreferrer",
    strip_comments=True,
)

# --- tree vocabulary -----------------------------------------------------------------------

BLOCK_TAGS = frozenset(
    {
        "p", "div", "center", "li", "ul", "ol", "dl", "dt", "dd",
        "h1", "h2", "h3", "h4", "h5", "h6",
        "section", "article", "header", "footer", "aside", "main", "nav", "address",
        "blockquote", "figure", "figcaption", "pre",
        "table", "caption", "thead", "tbody", "tfoot", "tr", "td", "th",
    }
)  # fmt: skip
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_PARAGRAPH = frozenset({"p"})
_TABLE_STRUCTURE = frozenset({"thead", "tbody", "tfoot", "tr", "td", "th"})  # kept when empty
# The sanitizer removes tags it does not allow but keeps their content, so renaming an
# element to this tag unwraps it for free (no tree surgery).
_UNWRAP = "font"
_WRAPPERS = frozenset({"span", "font"})
# Void elements libxml2 does not know: it nests everything after them inside them, so they
# are unwrapped (their "children" kept) rather than removed with their content.
_MISNESTED_VOIDS = frozenset({"embed", "source", "track", "wbr", "keygen", "command"})
_NAV_SEPARATORS = " \t\n\r\xa0\u3000|｜/·-"
_NAV_TEXT_MAX = 20
_NO_RULES = CleanupRules()
MAX_DEPTH = 100  # elements nested deeper are reduced to their text (no article needs this)
_CLOSING_LINES = 3  # how many final text blocks may hold the "（文章来源：X）" line

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*>", re.IGNORECASE)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*):")
_URL_NOISE = re.compile(r"[\x00-\x20\x7f]")  # browsers ignore these inside a scheme
_WHITESPACE = re.compile(r"\s+")
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")  # zero-width, not whitespace
_SOURCE_LINE = re.compile(
    r"^[（(]?\s*(?:文章|新闻|稿件|消息)?来源\s*[：:]\s*(?P<name>[^（）()\s][^（）()]{0,40}?)\s*[）)]?$"
)

# Selectors simple enough to test without soupsieve (the common case, and a hot loop).
_SIMPLE_TAG = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*")
_SIMPLE_CLASS = re.compile(r"\.(-?[_a-zA-Z][_a-zA-Z0-9-]*)")
_SIMPLE_ID = re.compile(r"#(-?[_a-zA-Z][_a-zA-Z0-9-]*)")
_SIMPLE_CONTAINS = re.compile(r"\[\s*([a-zA-Z][a-zA-Z0-9-]*)\s*\*=\s*(['\"])([^'\"\\]+)\2\s*\]")
# Attributes whose values CSS compares case-sensitively in HTML; others go to soupsieve.
_CASE_SENSITIVE_ATTRS = frozenset({"style", "class", "id", "href", "src", "title", "alt"})

# --- markdown / html detection --------------------------------------------------------------

# Raw HTML is kept: the sanitizer deals with it later.
_MARKDOWN_OPTIONS = Options.CMARK_OPT_UNSAFE
_HTML_START = re.compile(
    r"\s*(?:<!--|<!doctype\b|<(?:html|head|body|p|div|center|table|ul|ol|li|dl|h[1-6]|section"
    r"|article|header|footer|aside|main|nav|blockquote|pre|figure|hr|style|script|iframe"
    r"|form)(?=[\s/>]))",
    re.IGNORECASE,
)
# A line that is an autolink (or the empty "<>"), or starts with a Markdown link: the body
# mixes Markdown into its HTML, and only a Markdown renderer gets both right.
_MARKDOWN_LINE = re.compile(r"^(?:<(?:https?://[^>\s]*)?>\s*$|\[[^\]\n]+\]\([^)\n]*\))", re.M)

# --- reading the sanitizer's output ---------------------------------------------------------

_LINE_BREAKING_TAG = re.compile(
    r"<(?:br|hr|/?(?:p|div|li|ul|ol|h[1-6]|blockquote|pre|figure|figcaption|table|caption"
    r"|thead|tbody|tfoot|tr))>"
)
_CELL_TAG = re.compile(r"</?t[dh]>")
_ANY_TAG = re.compile(r'<[^>"]*(?:"[^"]*"[^>"]*)*>')  # nh3 always double-quotes attributes
_IMG_SRC = re.compile(r'<img\b(?:[^>"]|"[^"]*")*?\ssrc="([^"]*)"')
_BLANK_RUN = re.compile(r"\s*\n\s*")
_BLANK = r"\s|&nbsp;|</?(?:b|i|u|em|strong|span|sub|sup|code)>"  # blanks and inline tags
_CELLS = r"</?(?:caption|colgroup|col|thead|tbody|tfoot|tr|td|th)>"
_EMPTY_BLOCK = re.compile(  # nothing visible inside
    rf"<(p|div|li|ul|ol|h[1-6]|blockquote|figure|figcaption|pre|center)>(?:{_BLANK})*</\1>"
    rf"|<table>(?:{_BLANK}|{_CELLS})*</table>"
)
# An inline element with nothing in it (the sanitizer's parser splits <p><b><div>… so).
_EMPTY_INLINE = re.compile(r"<(b|i|u|em|strong|span|sub|sup|code)></\1>")
# Blank text opening a block (the sanitizer re-parse can leave some where pass B trimmed none).
_BLOCK_OPENING_BLANK = re.compile(
    r"(<(?:p|div|li|h[1-6]|blockquote|figcaption|caption|td|th)>)(?:\s|&nbsp;)+"
)

_SENTENCE_END = re.compile(r"(?:[。！？!?；;…]+|\.(?=\s))[”’」』）)\"']*")
_SOFT_BREAK = re.compile(r"[\s，、,：:]")


@dataclass(frozen=True, slots=True)
class _Selectors:
    """``rules.remove_selectors``, split into set lookups and a soupsieve rest."""

    names: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    contains: tuple[tuple[str, str], ...] = ()  # [attr*='value']
    other: soupsieve.SoupSieve | None = None

    def match(self, tag: Tag) -> bool:
        if tag.name in self.names:
            return True
        attrs = tag.attrs
        if attrs:
            if self.classes and not self.classes.isdisjoint(_attr_words(attrs.get("class"))):
                return True
            if self.ids and _attr_text(attrs.get("id")) in self.ids:
                return True
            for name, needle in self.contains:
                if needle in _attr_text(attrs.get(name)):
                    return True
        return self.other is not None and self.other.match(tag)


@dataclass(frozen=True, slots=True)
class _Rules:
    selectors: _Selectors
    patterns: tuple[re.Pattern[str], ...]
    ignore_images: tuple[str, ...]


@dataclass(slots=True)
class _Tree:
    """What pass A learns for pass B."""

    blocks: list[Tag] = field(default_factory=list)  # in document order
    # Keyed by id(); the values keep the elements alive so that no id is reused meanwhile.
    relative_links: dict[int, tuple[Tag, str]] = field(default_factory=dict)  # and the href
    with_images: dict[int, Tag] = field(default_factory=dict)  # elements holding a kept <img>


@dataclass(slots=True)
class _Findings:
    original_link: str | None = None
    source_line: str | None = None


# --- public API ----------------------------------------------------------------------------


def looks_like_html(body: str) -> bool:
    """True for a body that is HTML: it opens with a block tag and has no Markdown lines."""
    return bool(_HTML_START.match(body)) and not _MARKDOWN_LINE.search(body)


def markdown_to_html(text: str) -> str:
    """CommonMark rendering (cmark, in C: linear time even on pathological input, ~15× faster
    than a pure-Python parser); raw HTML is kept (the sanitizer deals with it later)."""
    rendered: str = cmarkgfm.markdown_to_html(xml_safe(text), options=_MARKDOWN_OPTIONS)
    return rendered


def html_to_text(html: str) -> str:
    """Plain text of any HTML: one line per block, whitespace collapsed, nothing unsafe.

    Goes through ``clean_body`` (without outlet rules) so absurd nesting is flattened before
    the sanitizer, whose cost grows with the square of the depth."""
    return clean_body(html, _NO_RULES).text


def summarize(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``; cut at a sentence or word end, marked "…"."""
    flat = _join_lines(text)
    if len(flat) <= limit:
        return flat
    if limit <= 1:
        return "…" if limit == 1 else ""
    budget = limit - 1  # room for the ellipsis
    head = _cut_at_boundary(flat[:budget], minimum=budget // 2)
    return head.rstrip(" ，、,：:") + "…"


def clean_body(html: str, rules: CleanupRules, *, base_url: str | None = None) -> CleanBody:
    """Boilerplate-free, sanitized HTML with its text, lead image, original link, source line."""
    try:
        markup = _prepared(html)
        if not markup.strip():
            return EMPTY
        return _clean(markup, _compile_rules(rules), _usable_base(base_url))
    except Exception:  # a body must never stop a build
        log.warning("clean_body failed; body dropped", exc_info=True)
        return EMPTY


# --- the passes ----------------------------------------------------------------------------


def _prepared(html: str) -> str:
    """Markup lxml takes without complaint (and bs4 without warnings, which tests make errors)."""
    # U+FEFF: a parser eats it where it leads the markup and keeps it elsewhere (and as a
    # zero-width no-break space it is deprecated, invisible either way): always dropped.
    markup = _XML_DECLARATION.sub("", xml_safe(html).replace("\ufeff", ""), count=1)
    # bs4 warns that short markup without "<" or newline looks like a file name or URL.
    return markup if "<" in markup or "\n" in markup else markup + "\n"


def _clean(html: str, rules: _Rules, base_url: str | None) -> CleanBody:
    soup = BeautifulSoup(html, "lxml", multi_valued_attributes=None)  # plain string values
    root = soup.body
    if root is None:
        return EMPTY
    tree = _pass_drop(root, rules.selectors, base_url)
    findings = _pass_blocks(tree, rules.patterns)
    safe = _tidy(_SANITIZER.clean(root.decode_contents()))
    text = _sanitized_to_text(safe)
    if not text and "<img" not in safe:  # nothing visible (e.g. only U+FEFF): no body at all
        return EMPTY
    return CleanBody(
        html=safe,
        text=text,
        first_image=_first_image(safe, rules.ignore_images),
        original_link=findings.original_link,
        source_line=findings.source_line,
    )


def _pass_drop(root: Tag, selectors: _Selectors, base_url: str | None) -> _Tree:
    """Pass A, depth first without recursion; a removed element's subtree is never visited."""
    tree = _Tree()
    stack: list[tuple[PageElement, int]] = [(child, 1) for child in reversed(root.contents)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Tag):
            if depth > MAX_DEPTH:
                _flatten(node)
            elif _visit(node, selectors, base_url, tree, root):
                stack.extend((child, depth + 1) for child in reversed(node.contents))
        elif isinstance(node, PreformattedString):  # comments, doctype, CDATA, PIs
            node.extract()
    return tree


def _flatten(node: Tag) -> None:
    """Absurdly deep markup becomes its text: the sanitizer is quadratic in nesting depth."""
    node.replace_with(NavigableString(node.get_text()))


def _visit(node: Tag, selectors: _Selectors, base_url: str | None, tree: _Tree, root: Tag) -> bool:
    """Fix, mark or remove one element; True when its children are still to be visited."""
    name = node.name
    if name in _MISNESTED_VOIDS:
        _mark_unwrap(node)
    elif name in DROPPED_WITH_CONTENT or selectors.match(node):
        node.decompose()
        return False
    elif name == "img":
        _fix_image(node, base_url, tree, root)
        return False
    elif name == "a":
        _fix_link(node, base_url, tree)
    elif name in _WRAPPERS or _misnested(node, root):
        _mark_unwrap(node)
    elif name in BLOCK_TAGS:
        tree.blocks.append(node)
    return True


def _misnested(node: Tag, root: Tag) -> bool:
    """A paragraph inside a paragraph, a heading inside a heading: lxml nests them (through
    inline elements), the sanitizer's HTML5 parser splits them. Unwrapped, so both agree."""
    kinds = _HEADINGS if node.name in _HEADINGS else _PARAGRAPH if node.name == "p" else None
    if kinds is None:
        return False
    for parent in node.parents:
        if parent is root:
            return False
        if parent.name in kinds:
            return True
    return False


def _mark_unwrap(node: Tag) -> None:
    node.name = _UNWRAP
    node.attrs = {}


def _pass_blocks(tree: _Tree, patterns: tuple[re.Pattern[str], ...]) -> _Findings:
    """Pass B, innermost blocks first: only the smallest block holding boilerplate goes."""
    findings = _Findings()
    holds_blocks: set[int] = set()
    closing: list[str] = []
    for block in reversed(tree.blocks):
        if id(block) in holds_blocks:  # a container: judged by its children, never as a whole
            _mark_parent_block(block, holds_blocks)
            continue
        raw = block.get_text()
        text = _collapse(raw)
        if not text:
            if block.name in _TABLE_STRUCTURE or id(block) in tree.with_images:
                _mark_parent_block(block, holds_blocks)
            else:
                block.decompose()
            continue
        if _is_boilerplate(block, text, patterns, tree, findings):
            block.decompose()
            continue
        if raw[0].isspace():
            _trim_indentation(block)
        if len(closing) < _CLOSING_LINES:
            closing.append(text)
        _mark_parent_block(block, holds_blocks)
    findings.source_line = _source_line(closing)
    return findings


# --- block decisions -----------------------------------------------------------------------


def _is_boilerplate(
    block: Tag,
    text: str,
    patterns: tuple[re.Pattern[str], ...],
    tree: _Tree,
    findings: _Findings,
) -> bool:
    if text == "<>":  # what an empty Markdown autolink renders to
        return True
    for pattern in patterns:
        if pattern.search(text):
            return True
    if text.startswith(("http://", "https://")):
        link = _autolink(block, text)
        if link is not None:
            findings.original_link = link  # the last one wins: it closes the article
            return True
    return _is_relative_nav(block, tree.relative_links)


def _autolink(block: Tag, text: str) -> str | None:
    """The URL of a block that is nothing but one link showing its own address."""
    link = _sole_child_tag(block)
    while link is not None and link.name == _UNWRAP:  # <span><a …>…</a></span>
        link = _sole_child_tag(link)
    if link is None or link.name != "a":
        return None
    href = _attr_text(link.get("href"))
    if href != text and unquote(href) != unquote(text):
        return None
    return href


def _is_relative_nav(block: Tag, relative_links: dict[int, tuple[Tag, str]]) -> bool:
    """Site navigation: nothing but short links to relative addresses (``[返回首页](../)``).

    A lone relative link counts only when it points at a folder (``../``, ``../emnews/``):
    a lone link to a page may well be content.
    """
    hrefs: list[str] = []
    for child in block.children:
        if isinstance(child, Tag):
            if child.name == "br":
                continue
            link = relative_links.get(id(child))
            if link is None or len(child.get_text().strip()) > _NAV_TEXT_MAX:
                return False
            hrefs.append(link[1])
        elif isinstance(child, NavigableString) and child.strip(_NAV_SEPARATORS):
            return False
    return len(hrefs) > 1 or (len(hrefs) == 1 and hrefs[0].split("?")[0].endswith("/"))


def _sole_child_tag(block: Tag) -> Tag | None:
    found: Tag | None = None
    for child in block.children:
        if isinstance(child, Tag):
            if found is not None:
                return None
            found = child
        elif isinstance(child, NavigableString) and child.strip():
            return None
    return found


def _mark_parent_block(block: Tag, holds_blocks: set[int]) -> None:
    for parent in block.parents:
        if parent.name in BLOCK_TAGS:
            holds_blocks.add(id(parent))
            return


def _trim_indentation(block: Tag) -> None:
    """Drop the full-width spaces Chinese paragraphs are indented with (and blank text before
    them, which a removed comment may have split off)."""
    blank: list[NavigableString] = []
    for node in block.descendants:
        if not isinstance(node, NavigableString) or isinstance(node, PreformattedString):
            continue
        if not node.strip():
            blank.append(node)
            continue
        trimmed = node.lstrip()
        if trimmed != node:
            node.replace_with(NavigableString(trimmed))
        break
    for node in blank:
        node.extract()


def _source_line(closing: list[str]) -> str | None:
    for text in closing:
        match = _SOURCE_LINE.match(text)
        if match:
            return match["name"].strip()
    return None


# --- URLs ----------------------------------------------------------------------------------


def _usable_base(base_url: str | None) -> str | None:
    if not base_url:
        return None
    base = base_url.strip()
    if base.startswith("//"):
        base = "https:" + base
    return base if base.lower().startswith(("http://", "https://")) else None


def _is_relative(url: str) -> bool:
    url = url.strip()
    return bool(url) and not url.startswith("//") and not _SCHEME.match(_URL_NOISE.sub("", url))


def _absolute_url(url: str, base_url: str | None) -> str | None:
    """The absolute http(s)/mailto form of ``url``, or None when it has none."""
    url = url.strip()
    if not url:
        return None
    if url.startswith("//"):
        return "https:" + url
    scheme = _SCHEME.match(_URL_NOISE.sub("", url))
    if scheme is not None:
        return url if scheme.group(1).lower() in ALLOWED_SCHEMES else None
    if base_url is None:
        return None
    try:
        return urljoin(base_url, url)
    except ValueError:  # e.g. an invalid IPv6 host
        return None


def _fix_link(anchor: Tag, base_url: str | None, tree: _Tree) -> None:
    """Absolute href; a link without one is unwrapped (its text stays)."""
    original = _attr_text(anchor.get("href"))
    if _is_relative(original):
        tree.relative_links[id(anchor)] = (anchor, original.strip())
    href = _absolute_url(original, base_url)
    title = _attr_text(anchor.get("title"))
    if href is None:
        _mark_unwrap(anchor)
    else:
        anchor.attrs = {"href": href, "title": title} if title else {"href": href}


def _fix_image(img: Tag, base_url: str | None, tree: _Tree, root: Tag) -> None:
    """Absolute http(s) src, or no image at all (data: URIs, unresolvable paths)."""
    src = _attr_text(img.get("src"))
    if not src or src.startswith("data:"):  # lazy-loading pages keep the real one aside
        src = _attr_text(img.get("data-src")) or _attr_text(img.get("data-original")) or src
    url = _absolute_url(src, base_url)
    if url is None or not url.lower().startswith(("http://", "https://")):
        img.decompose()
        return
    kept = {name: _attr_text(img.get(name)) for name in _IMAGE_EXTRAS}
    img.attrs = {"src": url}
    for name, value in kept.items():
        if value:
            img[name] = value
    for parent in img.parents:
        if parent is root:
            break
        tree.with_images[id(parent)] = parent


def _attr_text(value: object) -> str:
    """An attribute value as one string (bs4 gives lists for class and a few others)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return ""


def _attr_words(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value]
    return value.split() if isinstance(value, str) else []


# --- output --------------------------------------------------------------------------------


def _tidy(html: str) -> str:
    html = html.strip()
    # The sanitizer re-parses the markup: a block that pass B kept as the container of another
    # block it may not hold (<p><a><p>…) splits into empty halves. Pass B's rule (no text, no
    # image: gone) applies to them too, so cleaning stays idempotent.
    while _EMPTY_BLOCK.search(html) or _EMPTY_INLINE.search(html):
        html = _EMPTY_BLOCK.sub("", _EMPTY_INLINE.sub("", html)).strip()
    if "<pre" in html:
        return html
    return _BLANK_RUN.sub("\n", _BLOCK_OPENING_BLANK.sub(r"\1", html))


def _sanitized_to_text(html: str) -> str:
    """Plain text of nh3 output (well-formed, so a few regexes read it exactly)."""
    text = _LINE_BREAKING_TAG.sub("\n", _WHITESPACE.sub(" ", html))  # source newlines: spaces
    text = _ANY_TAG.sub("", _CELL_TAG.sub(" ", text))
    lines = (_collapse(line) for line in htmllib.unescape(text).split("\n"))
    return "\n".join(line for line in lines if line)


def _first_image(html: str, ignore: tuple[str, ...]) -> str | None:
    for match in _IMG_SRC.finditer(html):
        src = htmllib.unescape(match.group(1))
        if src.lower().startswith(("http://", "https://")) and not any(s in src for s in ignore):
            return src
    return None


def _collapse(text: str) -> str:
    if _INVISIBLE.search(text):
        text = _INVISIBLE.sub("", text)
    return " ".join(text.split())


_CLOSES_SENTENCE = frozenset("。！？；…」』”’）)】.!?;")


def _join_lines(text: str) -> str:
    """One line of text; lines that do not end a sentence (captions, headings) keep a space."""
    joined = ""
    for line in text.split("\n"):
        line = _collapse(line)
        if not line:
            continue
        if joined and joined[-1] not in _CLOSES_SENTENCE:
            joined += " "
        joined += line
    return joined


def _cut_at_boundary(head: str, *, minimum: int) -> str:
    """``head`` up to its last sentence end, else its last soft break, else as is."""
    ends = [match.end() for match in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= minimum:
        return head[: ends[-1]]
    breaks = [match.start() for match in _SOFT_BREAK.finditer(head)]
    if breaks and breaks[-1] >= minimum:
        return head[: breaks[-1]]
    return head


# --- rules ---------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _compile_rules(rules: CleanupRules) -> _Rules:
    return _Rules(
        selectors=_compile_selectors(rules.remove_selectors),
        patterns=tuple(re.compile(pattern) for pattern in dict.fromkeys(rules.remove_text)),
        ignore_images=rules.ignore_images,
    )


def _compile_selectors(selectors: tuple[str, ...]) -> _Selectors:
    """Set lookups for simple selectors, one soupsieve list for the rest (invalid ones skipped)."""
    names: set[str] = set()
    classes: set[str] = set()
    ids: set[str] = set()
    contains: list[tuple[str, str]] = []
    other: list[str] = []
    for selector in dict.fromkeys(s.strip() for s in selectors if s.strip()):
        if _SIMPLE_TAG.fullmatch(selector):
            names.add(selector.lower())
        elif match := _SIMPLE_CLASS.fullmatch(selector):
            classes.add(match.group(1))
        elif match := _SIMPLE_ID.fullmatch(selector):
            ids.add(match.group(1))
        elif (match := _SIMPLE_CONTAINS.fullmatch(selector)) and (
            match.group(1).lower() in _CASE_SENSITIVE_ATTRS
        ):
            contains.append((match.group(1).lower(), match.group(3)))
        elif _valid_css(selector):
            other.append(selector)
    return _Selectors(
        names=frozenset(names),
        classes=frozenset(classes),
        ids=frozenset(ids),
        contains=tuple(contains),
        other=soupsieve.compile(", ".join(other)) if other else None,
    )


def _valid_css(selector: str) -> bool:
    try:
        soupsieve.compile(selector)
    except (soupsieve.SelectorSyntaxError, ValueError, TypeError):
        log.warning("cleanup selector ignored, not valid CSS: %r", selector)
        return False
    return True
