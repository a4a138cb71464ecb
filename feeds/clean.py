"""Article body -> sanitized HTML, plain text and lead image.

``clean_body`` parses once (lxml) and walks the element tree twice:
A (document order) drops comments, dangerous and rule-selected elements and unusable images,
makes URLs absolute and marks wrappers and dead links for unwrapping;
B (reverse document order, so inner blocks come before the blocks holding them) drops
boilerplate, empty and navigation blocks and finds the original-article link and source line.
The nh3 sanitizer runs last; the plain text and lead image are read from its output, so
whatever they show is what readers get.

The passes work on lxml's own tree: with BeautifulSoup's Python objects built on top of it,
``clean_body`` took ≈ 2.8 times as long (1.6 instead of 0.6 ms CPU for a generated article).
The tree is written out for the sanitizer as BeautifulSoup wrote it (sorted attributes, blank
text shrunk, ``<br/>``), so the sanitizer's input, and output, stayed the same.
"""

from __future__ import annotations

import ctypes
import html as htmllib
import logging
import operator
import re
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol
from urllib.parse import unquote, urljoin

import nh3
from cmarkgfm import _cmark  # the cffi module cmarkgfm.markdown_to_html wraps
from cmarkgfm.cmark import Options
from cssselect import HTMLTranslator, SelectorError
from cssselect.xpath import ExpressionError, XPathExpr
from lxml import etree

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
        "pre", "code", "figure", "figcaption", "span", "div", "hr", "sub", "sup", "del", "s",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": frozenset({"href", "title"}),
    # referrerpolicy: image hosts that refuse other sites' Referer (Sina's) still show in web
    # readers when the page asks for none, as the scraper wrote it (RSSHub does the same).
    "img": frozenset({"src", "alt", "title", "width", "height", "referrerpolicy"}),
}
REFERRER_POLICIES = frozenset(
    {
        "no-referrer", "no-referrer-when-downgrade", "origin", "origin-when-cross-origin",
        "same-origin", "strict-origin", "strict-origin-when-cross-origin", "unsafe-url",
    }
)  # fmt: skip
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
_LISTS = frozenset({"ul", "ol"})
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
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")  # zero-width, not whitespace
_QR_ALT = re.compile(r"二维码|扫码|扫一扫|qr\s*code", re.IGNORECASE)
_PIXEL_SIZES = frozenset({"0", "1", "0px", "1px"})
_SOURCE_LINE = re.compile(
    r"^[（(]?\s*(?:文章|新闻|稿件|消息)?来源\s*[：:]\s*(?P<name>[^（）()\s][^（）()]{0,40}?)\s*[）)]?$"
)

# Selectors simple enough to test in Python (the common case, and a hot loop); the rest become
# one XPath expression.
_SIMPLE_TAG = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*")
_SIMPLE_CLASS = re.compile(r"\.(-?[_a-zA-Z][_a-zA-Z0-9-]*)")
_SIMPLE_ID = re.compile(r"#(-?[_a-zA-Z][_a-zA-Z0-9-]*)")
_SIMPLE_CONTAINS = re.compile(r"\[\s*([a-zA-Z][a-zA-Z0-9-]*)\s*\*=\s*(['\"])([^'\"\\]+)\2\s*\]")
# Attributes whose values CSS compares case-sensitively in HTML; others go to cssselect.
_CASE_SENSITIVE_ATTRS = frozenset({"style", "class", "id", "href", "src", "title", "alt"})


class _MatchTranslator(HTMLTranslator):
    """CSS as a test of the context element itself: combinators look back (at ancestors,
    preceding siblings) where cssselect's own look forward from the first compound, so that
    ``self::`` + the expression is true exactly for the elements the selector selects."""

    def xpath_descendant_combinator(self, left: XPathExpr, right: XPathExpr) -> XPathExpr:
        return _looking_back(right, "ancestor::", left)

    def xpath_child_combinator(self, left: XPathExpr, right: XPathExpr) -> XPathExpr:
        return _looking_back(right, "parent::", left)

    def xpath_direct_adjacent_combinator(self, left: XPathExpr, right: XPathExpr) -> XPathExpr:
        return _looking_back(right, "preceding-sibling::*[1]/self::", left)

    def xpath_indirect_adjacent_combinator(self, left: XPathExpr, right: XPathExpr) -> XPathExpr:
        return _looking_back(right, "preceding-sibling::", left)


def _looking_back(subject: XPathExpr, axis: str, other: XPathExpr) -> XPathExpr:
    if subject.path or other.path:  # only the forward combinators replaced here make paths
        raise ExpressionError("selector not supported")
    result: XPathExpr = subject.add_condition(f"{axis}{other}")
    return result


_CSS = _MatchTranslator()

# --- the tree as the sanitizer is given it --------------------------------------------------
# The passes were written on BeautifulSoup, which wrote the tree out with these habits; keeping
# them keeps the sanitizer's input, and so every output, as it was.

_ASCII_BLANKS = " \n\t\f\r"
_BLANKS_KEPT_IN = frozenset({"pre", "textarea"})  # elsewhere blank text is one "\n" or " "
_SELF_CLOSING = frozenset(
    {
        "area", "base", "br", "col", "embed", "hr", "img", "input", "keygen", "link", "menuitem",
        "meta", "param", "source", "track", "wbr",
        "basefont", "bgsound", "command", "frame", "image", "isindex", "nextid", "spacer",
    }
)  # fmt: skip
# The text inside these is no part of the text of an element around them (ruby annotations;
# the others never outlive pass A).
_TEXT_APART = frozenset({"rt", "rp", "script", "style", "template"})
# Markup that may reach libxml2's depth limit (see _parsed_body).
_CUT_SHORT_DEPTH = 250
_MAYBE_CUT_SHORT = etree.XPath("boolean(/" + "/".join(["*"] * _CUT_SHORT_DEPTH) + ")")
# Every element but a few the parser implies (html, body, p) opens with a "<": markup with
# fewer cannot be that deep, and the XPath test (≈ 10 µs, most of it setting up) is skipped.
_TAG_OPENERS_FOR_DEPTH = _CUT_SHORT_DEPTH - 10

# --- markdown / html detection --------------------------------------------------------------

# Raw HTML is kept: the sanitizer deals with it later.
_MARKDOWN_OPTIONS = Options.CMARK_OPT_UNSAFE
_LIBC = ctypes.CDLL(None)  # the process's C library
_LIBC.free.argtypes = [ctypes.c_void_p]
_LIBC.free.restype = None
# cmark_node_free is exported by cmarkgfm's library but not declared in its cffi module.
_CMARK_SO = ctypes.CDLL(_cmark.__file__)
_CMARK_SO.cmark_node_free.argtypes = [ctypes.c_void_p]
_CMARK_SO.cmark_node_free.restype = None
_GFM_EXTENSIONS = (b"table", b"strikethrough")  # not autolink: a bare URL stays text
# A header row makes each following line a row of as many cells ("x" -> 30 bytes of markup):
# rendered markup that much larger than its text is rendered without the extensions, so a
# hostile file costs clean_body no more than before them (real tables grow about 2x).
_GFM_GROWTH_MAX = 6
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
_BLANK = r"\s|&nbsp;|</?(?:b|i|u|em|strong|span|sub|sup|code)>"  # blanks and inline tags
_CELLS = r"</?(?:caption|colgroup|col|thead|tbody|tfoot|tr|td|th)>"
_EMPTY_BLOCK = re.compile(  # nothing visible inside
    rf"<(p|div|li|ul|ol|h[1-6]|blockquote|figure|figcaption|pre|center)>(?:{_BLANK})*</\1>"
    rf"|<table>(?:{_BLANK}|{_CELLS})*</table>"
)
# An inline element with nothing in it (the sanitizer's parser splits <p><b><div>… so).
_EMPTY_INLINE = re.compile(r"<(b|i|u|em|strong|span|sub|sup|code)></\1>")
_FIRST_GROUP = operator.itemgetter(1)
# Blank text opening a block (the sanitizer re-parse can leave some where pass B trimmed none).
_BLOCK_OPENING_BLANK = re.compile(
    r"(<(?:p|div|li|h[1-6]|blockquote|figcaption|caption|td|th)>)(?:\s|&nbsp;)+"
)

_SENTENCE_END = re.compile(r"(?:[。！？!?；;…]+|\.(?=\s))[”’」』）)\"']*")
_SOFT_BREAK = re.compile(r"[\s，、,：:]")


class _Node(Protocol):
    """The part of an lxml element used here (lxml ships no type hints)."""

    tag: object  # the name; for a comment or processing instruction, a factory function
    text: str | None  # before the first child
    tail: str | None  # after the element, up to its next sibling
    attrib: MutableMapping[str, str]

    def get(self, key: str) -> str | None: ...
    def getparent(self) -> _Node | None: ...
    def getprevious(self) -> _Node | None: ...
    def getnext(self) -> _Node | None: ...
    def iterancestors(self) -> Iterator[_Node]: ...
    def iter(self, tag: str) -> Iterator[_Node]: ...
    def remove(self, child: _Node) -> None: ...
    def __iter__(self) -> Iterator[_Node]: ...
    def __reversed__(self) -> Iterator[_Node]: ...
    def __len__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class _Selectors:
    """``rules.remove_selectors``, split into set lookups and one XPath test for the rest."""

    names: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    contains: tuple[tuple[str, str], ...] = ()  # [attr*='value']
    other: etree.XPath | None = None  # true for a matching element

    def match(self, node: _Node, name: str) -> bool:
        if name in self.names:
            return True
        if not node.attrib:  # most elements: no class, id or other attribute to look at
            return self.other is not None and bool(self.other(node))
        if self.classes and not self.classes.isdisjoint(_attr(node, "class").split()):
            return True
        if self.ids and node.get("id") in self.ids:
            return True
        for name, needle in self.contains:
            if needle in _attr(node, name):
                return True
        return self.other is not None and bool(self.other(node))


@dataclass(frozen=True, slots=True)
class _Patterns:
    """``rules.remove_text``: is any of them found in a text? One regex search per text does
    what a search per pattern did: patterns anchored with ``^`` are joined into one alternation
    tried at the start only (joined with the others, the engine would try them at every
    position), the others into another; a pattern that cannot be joined (a backreference: its
    group number would change) is searched alone."""

    at_start: re.Pattern[str] | None = None
    anywhere: re.Pattern[str] | None = None
    alone: tuple[re.Pattern[str], ...] = ()

    def found(self, text: str) -> bool:
        if self.at_start is not None and self.at_start.match(text):
            return True
        if self.anywhere is not None and self.anywhere.search(text):
            return True
        return any(pattern.search(text) for pattern in self.alone)


@dataclass(frozen=True, slots=True)
class _Rules:
    selectors: _Selectors
    patterns: _Patterns
    ignore_images: tuple[str, ...]


@dataclass(slots=True)
class _Tree:
    """What pass A learns for pass B and the writer."""

    blocks: list[_Node] = field(default_factory=list)  # in document order
    relative_links: dict[_Node, str] = field(default_factory=dict)  # anchor -> its href
    with_images: set[_Node] = field(default_factory=set)  # elements holding a kept <img>
    renamed_voids: set[_Node] = field(default_factory=set)  # written "<font/>" when empty
    text_apart: bool = False  # an <rt> or <rp> is left: element text skips theirs
    # Every element removed from the document, held until the others are let go (``release``).
    dropped: list[_Node] = field(default_factory=list)

    def release(self) -> None:
        """Let go of the elements held here, those removed from the document last.

        lxml frees a removed subtree once no Python object refers into it, and checks that by
        walking the subtree from its top each time one such object goes; with nothing held at
        the top, letting go of N anchors inside one removed paragraph (a dict lets go in
        document order) walked it N times: 20,000 relative links took 4 s, a 4 MB file hours.
        While the top is held, each check stops there."""
        self.relative_links.clear()
        self.with_images.clear()
        self.renamed_voids.clear()
        self.blocks.clear()
        self.dropped.clear()


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
    than a pure-Python parser); raw HTML is kept (the sanitizer deals with it later). Tables
    and ``~~strikethrough~~`` as GitHub, Hexo and Jekyll render them (pipes and tildes shown
    as text otherwise): a text that may hold them goes through cmark-gfm's extensions."""
    encoded = xml_safe(text).encode("utf-8")
    if b"|" in encoded or (b"~" in encoded and b"~~" in encoded):  # one-byte tests: memchr
        rendered = _gfm_to_html(encoded)
        if len(rendered) <= _GFM_GROWTH_MAX * len(encoded):
            return rendered
    return _taken(_cmark.lib.cmark_markdown_to_html(encoded, len(encoded), _MARKDOWN_OPTIONS))


# Jekyll's Liquid and Hexo's Nunjucks tags in a Markdown post: the site generator runs them;
# a feed would show them as text. {% raw %}…{% endraw %} keeps its inside as written; a
# {% highlight x %} block is a code block; other tags ({% include %}, {% asset_img %}),
# {{ expressions }} and kramdown's {: .class} attribute lists are dropped.
_RAW_BLOCK = re.compile(r"\{%-?\s*raw\s*-?%\}(.*?)\{%-?\s*endraw\s*-?%\}", re.DOTALL)
_HIGHLIGHT = re.compile(r"^[ \t]*\{%-?\s*highlight\s+([\w+#.-]+)[^%]*-?%\}[ \t]*$", re.MULTILINE)
_END_HIGHLIGHT = re.compile(r"^[ \t]*\{%-?\s*endhighlight\s*-?%\}[ \t]*$", re.MULTILINE)
_TAG_LINE = re.compile(r"^[ \t]*(?:\{%.*?%\}|\{:[^}\n]*\})[ \t]*\n?", re.MULTILINE)
_TEMPLATE_INLINE = re.compile(r"\{%.*?%\}|\{\{.*?\}\}|\{:[^}\n]*\}")  # what _drop_inline_tags drops
_END_RAW = re.compile(r"\{%-?\s*endraw\s*-?%\}")
_TEMPLATE_OPENER = re.compile(r"\{[%{:]")
_TEMPLATE_CLOSER = {"%": "%}", "{": "}}", ":": "}"}


def without_template_tags(markdown: str) -> str:
    """A Markdown post without the template tags its site generator would have run."""
    if "{" not in markdown:  # one-character test: a two-character one scans 100x slower
        return markdown
    if "{%" not in markdown and "{{" not in markdown and "{:" not in markdown:
        return markdown
    parts = _raw_split(markdown)  # outside, raw inside, outside, …
    for index in range(0, len(parts), 2):
        text = _HIGHLIGHT.sub(r"```\1", parts[index])
        text = _END_HIGHLIGHT.sub("```", text)
        parts[index] = _drop_inline_tags(_TAG_LINE.sub("", text))
    return "".join(parts)


def _raw_split(markdown: str) -> list[str]:
    """``_RAW_BLOCK.split(markdown)``, searched only up to the last ``{% endraw %}``: past it,
    the lazy ``(.*?)`` would search the rest of the text from every ``{% raw %}`` in vain."""
    end = 0
    for end_raw in _END_RAW.finditer(markdown):
        end = end_raw.end()
    parts: list[str] = _RAW_BLOCK.split(markdown[:end]) if end else [""]
    parts[-1] += markdown[end:]
    return parts


def _drop_inline_tags(text: str) -> str:
    """``_TEMPLATE_INLINE.sub("", text)`` in linear time. The regex searches the rest of the
    line from every opener that is never closed (a line of 20,000 "{%" took 5 s, a 4 MB file
    hours); here a closer missing from a line is searched for once per kind of opener."""
    kept: list[str] = []
    done = 0  # text before this is in kept, or dropped
    unclosed_until = {"%": -1, "{": -1, ":": -1}  # a closer is missing up to this line end
    line_end = -1  # the end of the line being read
    position = 0
    while (opener := _TEMPLATE_OPENER.search(text, position)) is not None:
        start = opener.start()
        kind = text[start + 1]
        position = start + 1
        if start < unclosed_until[kind]:
            continue
        if start > line_end:
            line_end = text.find("\n", start)
            if line_end < 0:
                line_end = len(text)
        close = text.find(_TEMPLATE_CLOSER[kind], start + 2, line_end)
        if close < 0:
            unclosed_until[kind] = line_end
            continue
        kept.append(text[done:start])
        done = position = close + len(_TEMPLATE_CLOSER[kind])
    kept.append(text[done:])
    return "".join(kept)


def _gfm_to_html(encoded: bytes) -> str:
    lib = _cmark.lib
    lib.cmark_gfm_core_extensions_ensure_registered()
    parser = lib.cmark_parser_new(_MARKDOWN_OPTIONS)
    try:
        for name in _GFM_EXTENSIONS:
            lib.cmark_parser_attach_syntax_extension(parser, lib.cmark_find_syntax_extension(name))
        lib.cmark_parser_feed(parser, encoded, len(encoded))
        root = lib.cmark_parser_finish(parser)
        try:
            extensions = lib.cmark_parser_get_syntax_extensions(parser)
            return _taken(lib.cmark_render_html(root, _MARKDOWN_OPTIONS, extensions))
        finally:
            _CMARK_SO.cmark_node_free(_address(root))  # the parser leaves its tree to us
    finally:
        lib.cmark_parser_free(parser)


def _taken(raw: object) -> str:
    """The text of a C string cmark returns, which is then freed."""
    try:
        # cmark writes the entities &#xFFFE; and &#xFFFF; as the bytes FE and FF (utf8proc's
        # old encoder), which are no UTF-8: they are read as U+FFFD, whatever they were.
        rendered: str = _cmark.ffi.string(raw).decode("utf-8", "replace")
    finally:
        # cmarkgfm.markdown_to_html never frees cmark's result (≈ the size of the HTML per
        # call: hundreds of MB over an archive); cmark allocates it with the C library's malloc.
        _LIBC.free(_address(raw))
    return rendered


def _address(pointer: object) -> int:
    return int(_cmark.ffi.cast("uintptr_t", pointer))


def html_to_text(html: str) -> str:
    """Plain text of any HTML: one line per block, whitespace collapsed, nothing unsafe.

    Goes through ``clean_body`` (without outlet rules) so absurd nesting is flattened before
    the sanitizer, whose cost grows with the square of the depth."""
    return clean_body(html, _NO_RULES).text


# Where a story starts, for its summary: before it, a byline or picture-credit line ("作者：X",
# "尤霏霏制图"), and a wire dateline opening the first paragraph ("证券时报网讯，",
# "中证网讯（记者 X）", "财联社（上海，编辑 X）讯，", "新华社北京3月5日电", "记者X 东莞报道").
_CREDIT_LINE = re.compile(
    r"(?:(?:作者|撰文|文|记者|编辑|责编|来源|图|摄影|制图|图片来源|图源)\s*[：:｜|/]\s*\S.{0,30}"
    r"|[^。！？，,]{1,20}?(?:制图|供图|[\s/]摄影?))"
)
_NO_PARENS = r"[^\s，,。：:！？、“”\"（）()]"
_ASIDE = r"[（(][^（）()]{1,30}[）)]"
_DATELINE = re.compile(
    rf"(?:{_NO_PARENS}{{2,20}}?(?:{_ASIDE})?讯(?:{_ASIDE}[，,：:]?|[，,：:])"
    rf"|{_NO_PARENS}{{2,20}}?\d{{1,2}}月\d{{1,2}}日电(?:{_ASIDE})?[，,：:]?"
    rf"|[^\s，,。：:！？“”\"]{{0,20}}记者\s*{_NO_PARENS}{{1,10}}\s+{_NO_PARENS}{{1,10}}报道[，,：:]?)"
    r"\s*"
)
_CREDIT_LINES_MAX = 3


def story_lead(text: str) -> str:
    """``text`` from where the story starts: leading byline and picture-credit lines and the
    dateline opening the first paragraph dropped (a summary is the story's first sentences;
    the content keeps them). Lines are read in place: the text is copied once at most."""
    start = 0
    for _ in range(_CREDIT_LINES_MAX):
        end = text.find("\n", start)
        if end < 0 or not _CREDIT_LINE.fullmatch(text, start, end):
            break
        start = end + 1
    line_end = text.find("\n", start)
    if line_end < 0:
        line_end = len(text)
    dateline = _DATELINE.match(text, start, line_end)
    if dateline is not None and dateline.end() < line_end:
        start = dateline.end()
    return text[start:] if start else text


def summarize(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``; cut at a sentence or word end, marked "…"."""
    flat = _join_lines(text, enough=limit + 1)
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
    """Markup lxml takes without complaint: XML-legal characters, no XML declaration."""
    # U+FEFF: a parser eats it where it leads the markup and keeps it elsewhere (and as a
    # zero-width no-break space it is deprecated, invisible either way): always dropped.
    return _XML_DECLARATION.sub("", xml_safe(html).replace("\ufeff", ""), count=1)


def _clean(html: str, rules: _Rules, base_url: str | None) -> CleanBody:
    root = _parsed_body(html, deep=False)
    if root is None:
        return EMPTY
    tree = _pass_drop(root, rules.selectors, base_url)
    try:
        findings = _pass_blocks(tree, rules.patterns)
        safe = _tidy(_SANITIZER.clean(_inner_markup(root, tree)))
    finally:
        tree.release()
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


def _parsed_body(markup: str, *, deep: bool) -> _Node | None:
    """The <body>; None when the markup has none (only comments, a <head>, a frameset).

    libxml2 builds its own tree fastest, but stops reading (silently) at depth 256. Such a
    tree, or one nearly as deep, is built again from the parser's events (``deep``), which have
    no depth limit; so nothing after absurdly deep markup is lost (what lies deeper than pass A
    keeps elements is built as text: ``_ShallowBuilder``).
    """
    # One parser per call: a parser object is not to be shared between threads.
    parser = etree.HTMLParser(target=_ShallowBuilder()) if deep else etree.HTMLParser()
    parser.feed(markup)
    document = parser.close()
    if document is None:
        return None
    if not deep and markup.count("<") >= _TAG_OPENERS_FOR_DEPTH and _MAYBE_CUT_SHORT(document):
        return _parsed_body(markup, deep=True)
    body: _Node | None = next(document.iter("body"), None)
    return body


# Elements below html > body > MAX_DEPTH levels are text (pass A flattens them), so a deep
# re-parse builds none deeper than that.
_BUILT_DEPTH = MAX_DEPTH + 3


class _ShallowBuilder:
    """A parser target building the tree as ``etree.TreeBuilder`` does, but no element deeper
    than ``_BUILT_DEPTH``: what lies deeper is kept as text of the deepest one, without the
    text of <rt>-like elements (scripts, styles, ruby annotations) and comments, as pass A
    flattens such markup. lxml walks the ancestors of an element whenever Python lets go of
    one, so a tree of the parser's full depth (a 4 MB file of "<b>" is 1.3 million levels)
    cost the square of it to flatten: minutes."""

    def __init__(self) -> None:
        self._builder = etree.TreeBuilder()
        self._depth = 0  # elements built and open
        self._skipped: list[str] = []  # open elements not built
        self._apart = 0  # how many of them are <rt>-like

    def start(self, tag: str, attrib: dict[str, str], nsmap: object = None) -> None:
        if self._depth >= _BUILT_DEPTH:
            self._skipped.append(tag)
            self._apart += tag in _TEXT_APART
        else:
            self._depth += 1
            self._builder.start(tag, attrib)

    def end(self, tag: str) -> None:
        if self._skipped:
            self._apart -= self._skipped.pop() in _TEXT_APART
        else:
            self._depth -= 1
            self._builder.end(tag)

    def data(self, data: str) -> None:
        if not self._apart:
            self._builder.data(data)

    def comment(self, text: str) -> None:
        if not self._skipped:
            self._builder.comment(text)

    def pi(self, target: str, data: str | None = None) -> None:
        if not self._skipped:
            self._builder.pi(target, data)

    def close(self) -> _Node:
        root: _Node = self._builder.close()
        return root


def _pass_drop(root: _Node, selectors: _Selectors, base_url: str | None) -> _Tree:
    """Pass A, depth first without recursion; a removed element's subtree is never visited."""
    tree = _Tree()
    if root.text:
        root.text = _shrunk(root.text)
    # Each entry: the node, its depth, whether blank text keeps its spaces where it sits.
    stack: list[tuple[_Node, int, bool]] = [(child, 1, False) for child in reversed(root)]
    while stack:
        node, depth, keep_blanks = stack.pop()
        if not keep_blanks and (tail := node.tail) and not tail.strip(_ASCII_BLANKS):
            node.tail = _blank(tail)
        name = node.tag
        if not isinstance(name, str):  # comments, processing instructions
            _drop(node, tree)
        elif depth > MAX_DEPTH:
            _flatten(node, keep_blanks, tree)
        else:
            keep_blanks = keep_blanks or name in _BLANKS_KEPT_IN
            if not keep_blanks and (text := node.text) and not text.strip(_ASCII_BLANKS):
                node.text = _blank(text)
            if _visit(node, name, selectors, base_url, tree, root) and len(node):
                stack.extend((child, depth + 1, keep_blanks) for child in reversed(node))
    return tree


def _shrunk(text: str) -> str:
    """Blank text as one newline (when it holds one) or one space; other text as it is."""
    return text if text.strip(_ASCII_BLANKS) else _blank(text)


def _blank(text: str) -> str:
    return "\n" if "\n" in text else " "


def _drop(node: _Node, tree: _Tree, replacement: str = "") -> None:
    """Remove ``node`` with everything inside it; ``replacement`` and its tail take its place.
    The tree holds the removed element until it is released (``_Tree.release``)."""
    parent = node.getparent()
    if parent is None:
        return
    text = replacement + (node.tail or "")
    if text:
        previous = node.getprevious()
        if previous is None:
            parent.text = (parent.text or "") + text
        else:
            previous.tail = (previous.tail or "") + text
    parent.remove(node)  # takes its tail along
    tree.dropped.append(node)


def _flatten(node: _Node, keep_blanks: bool, tree: _Tree) -> None:
    """Absurdly deep markup becomes its text: the sanitizer is quadratic in nesting depth."""
    _drop(node, tree, _text_as_parsed(node, keep_blanks))


def _visit(
    node: _Node, name: str, selectors: _Selectors, base_url: str | None, tree: _Tree, root: _Node
) -> bool:
    """Fix, mark or remove one element; True when its children are still to be visited."""
    if name in _MISNESTED_VOIDS:
        _mark_unwrap(node)
        tree.renamed_voids.add(node)
    elif name in DROPPED_WITH_CONTENT or selectors.match(node, name):
        _drop(node, tree)
        return False
    elif name == "img":
        _fix_image(node, base_url, tree, root)
        return False
    elif name == "a":
        _fix_link(node, base_url, tree)
    elif name in _WRAPPERS or _misnested(node, name, root):
        _mark_unwrap(node)
    elif name in BLOCK_TAGS:
        tree.blocks.append(node)
    elif name in _TEXT_APART:
        tree.text_apart = True
    return True


def _misnested(node: _Node, name: str, root: _Node) -> bool:
    """A paragraph inside a paragraph, a heading inside a heading: lxml nests them (through
    inline elements), the sanitizer's HTML5 parser splits them. Unwrapped, so both agree."""
    kinds = _HEADINGS if name in _HEADINGS else _PARAGRAPH if name == "p" else None
    if kinds is None:
        return False
    for parent in node.iterancestors():
        if parent is root:
            return False
        if parent.tag in kinds:
            return True
    return False


def _mark_unwrap(node: _Node) -> None:
    node.tag = _UNWRAP
    node.attrib.clear()


def _pass_blocks(tree: _Tree, patterns: _Patterns) -> _Findings:
    """Pass B, innermost blocks first: only the smallest block holding boilerplate goes."""
    findings = _Findings()
    holds_blocks: set[_Node] = set()
    closing: list[tuple[_Node, str]] = []
    for block in reversed(tree.blocks):
        if block in holds_blocks:  # a container: judged by its children, never as a whole
            _mark_parent_block(block, holds_blocks)
            continue
        raw = _text(block, tree)
        text = _collapse(raw)
        if not text:
            if block.tag in _TABLE_STRUCTURE or block in tree.with_images:
                _mark_parent_block(block, holds_blocks)
            else:
                _drop(block, tree)
            continue
        if _is_boilerplate(block, text, patterns, tree, findings):
            _drop_link_list_after(block, closing, tree)
            _drop(block, tree)
            continue
        if raw[0].isspace():
            _trim_indentation(block)
        if len(closing) < _CLOSING_LINES:
            closing.append((block, text))
        _mark_parent_block(block, holds_blocks)
    findings.source_line = _source_line([text for _, text in closing])
    return findings


def _drop_link_list_after(block: _Node, closing: list[tuple[_Node, str]], tree: _Tree) -> None:
    """A list of nothing but links right after a boilerplate block ("相关阅读", "推荐阅读：")
    is the related-article list it introduces: it goes too (its items, already judged as
    blocks, leave the closing lines)."""
    following = block.getnext()
    if following is None or following.tag not in _LISTS or (block.tail and block.tail.strip()):
        return
    if not all(_is_link_item(item) for item in following):
        return
    closing[:] = [(node, text) for node, text in closing if following not in node.iterancestors()]
    _drop(following, tree)


def _is_link_item(item: _Node) -> bool:
    link = _sole_child(item) if item.tag == "li" else None
    while link is not None and link.tag == _UNWRAP:
        link = _sole_child(link)
    return link is not None and link.tag == "a"


# --- block decisions -----------------------------------------------------------------------


def _is_boilerplate(
    block: _Node,
    text: str,
    patterns: _Patterns,
    tree: _Tree,
    findings: _Findings,
) -> bool:
    if text == "<>":  # what an empty Markdown autolink renders to
        return True
    if patterns.found(text):
        return True
    if text.startswith(("http://", "https://")):
        link = _autolink(block, text)
        if link is not None:
            findings.original_link = link  # the last one wins: it closes the article
            return True
    return _is_relative_nav(block, tree)


def _autolink(block: _Node, text: str) -> str | None:
    """The URL of a block that is nothing but one link showing its own address."""
    link = _sole_child(block)
    while link is not None and link.tag == _UNWRAP:  # <span><a …>…</a></span>
        link = _sole_child(link)
    if link is None or link.tag != "a":
        return None
    href = _attr(link, "href")
    if href != text and unquote(href) != unquote(text):
        return None
    return href


def _is_relative_nav(block: _Node, tree: _Tree) -> bool:
    """Site navigation: nothing but short links to relative addresses (``[返回首页](../)``).

    A lone relative link counts only when it points at a folder (``../``, ``../emnews/``):
    a lone link to a page may well be content.
    """
    if not tree.relative_links or (block.text and block.text.strip(_NAV_SEPARATORS)):
        return False
    hrefs: list[str] = []
    for child in block:
        if child.tag != "br":
            href = tree.relative_links.get(child)
            if href is None or len(_text(child, tree).strip()) > _NAV_TEXT_MAX:
                return False
            hrefs.append(href)
        if child.tail and child.tail.strip(_NAV_SEPARATORS):
            return False
    return len(hrefs) > 1 or (len(hrefs) == 1 and hrefs[0].split("?")[0].endswith("/"))


def _sole_child(block: _Node) -> _Node | None:
    """The one element in ``block`` when nothing else but blank text is there."""
    if len(block) != 1 or (block.text and not block.text.isspace()):
        return None
    child = next(iter(block))
    return None if child.tail and not child.tail.isspace() else child


def _mark_parent_block(block: _Node, holds_blocks: set[_Node]) -> None:
    parent = block.getparent()
    while parent is not None:
        if parent.tag in BLOCK_TAGS:
            holds_blocks.add(parent)
            return
        parent = parent.getparent()


def _trim_indentation(block: _Node) -> None:
    """Drop the full-width spaces Chinese paragraphs are indented with (and blank text before
    them, which a removed comment may have split off)."""
    text = block.text
    if text and not text.isspace():  # the common case: <p>　　正文…
        block.text = text.lstrip()
        return
    for event, node in etree.iterwalk(block, events=("start", "end")):
        if event == "start":
            value = node.text
        elif node is block:
            return
        else:
            value = node.tail
        if not value:
            continue
        trimmed = value.lstrip()
        if event == "start":
            node.text = trimmed or None
        else:
            node.tail = trimmed or None
        if trimmed:
            return


def _source_line(closing: list[str]) -> str | None:
    for text in closing:
        match = _SOURCE_LINE.match(text)
        if match:
            return match["name"].strip()
    return None


# --- element text --------------------------------------------------------------------------


def _text(node: _Node, tree: _Tree) -> str:
    """The text inside ``node`` (not after it), as a reader sees it: no comments, no ruby."""
    if tree.text_apart:
        return _text_as_parsed(node, keep_blanks=True)
    return str(etree.tostring(node, method="text", encoding=str, with_tail=False))


def _text_as_parsed(node: _Node, keep_blanks: bool) -> str:
    """The text inside ``node`` without comments and the text of <rt>, <rp>, … (unless
    ``node`` is one); blank text shrunk outside <pre> (see ``_shrunk``) unless ``keep_blanks``.
    """
    apart = next(
        (n.tag for n in (node, *node.iterancestors()) if n.tag in _TEXT_APART),
        None,
    )
    parts: list[str] = []
    _collect_text(node, apart, node.tag if node.tag in _TEXT_APART else None, keep_blanks, parts)
    return "".join(parts)


def _collect_text(
    node: _Node, apart: object, wanted: object, keep_blanks: bool, parts: list[str]
) -> None:
    """``parts`` += the text in ``node`` of the ``wanted`` kind: the text whose innermost
    <rt>-like element around it (``apart`` for ``node``'s own) is that one, None for none.
    Without recursion: markup built from parser events can be thousands of levels deep."""
    # (innermost <rt>-like element, blanks kept) of the open elements
    open_elements: list[tuple[object, bool]] = []
    for event, element in etree.iterwalk(node, events=("start", "end", "comment", "pi")):
        if event == "start":
            name = element.tag
            if open_elements:
                apart, keep_blanks = open_elements[-1]
                apart = name if name in _TEXT_APART else apart
            keep_blanks = keep_blanks or name in _BLANKS_KEPT_IN
            open_elements.append((apart, keep_blanks))
            text = element.text
        else:
            if event == "end":
                open_elements.pop()
                if element is node:
                    break
            text = element.tail
            apart, keep_blanks = open_elements[-1]
        if text and apart == wanted:
            parts.append(text if keep_blanks else _shrunk(text))


# --- URLs ----------------------------------------------------------------------------------


def _usable_base(base_url: str | None) -> str | None:
    if not base_url:
        return None
    base = xml_safe(base_url).strip()  # lxml takes no attribute value with control characters
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


def _fix_link(anchor: _Node, base_url: str | None, tree: _Tree) -> None:
    """Absolute href; a link without one is unwrapped (its text stays)."""
    original = _attr(anchor, "href")
    if _is_relative(original):
        tree.relative_links[anchor] = original.strip()
    href = _absolute_url(original, base_url)
    title = _attr(anchor, "title")
    if href is None:
        _mark_unwrap(anchor)
        return
    anchor.attrib.clear()
    anchor.attrib["href"] = href
    if title:
        anchor.attrib["title"] = title


def _fix_image(img: _Node, base_url: str | None, tree: _Tree, root: _Node) -> None:
    """Absolute http(s) src, or no image at all (data: URIs, unresolvable paths)."""
    src = _attr(img, "src")
    if not src or src.startswith("data:"):  # lazy-loading pages keep the real one aside
        src = _attr(img, "data-src") or _attr(img, "data-original") or src
    url = _absolute_url(src, base_url)
    if url is None or not url.lower().startswith(("http://", "https://")) or _is_not_a_picture(img):
        _drop(img, tree)
        return
    kept = {name: _attr(img, name) for name in _IMAGE_EXTRAS}
    if kept["referrerpolicy"].strip().lower() not in REFERRER_POLICIES:
        kept["referrerpolicy"] = ""
    img.attrib.clear()
    img.attrib["src"] = url
    for name, value in kept.items():
        if value:
            img.attrib[name] = value
    for parent in img.iterancestors():
        if parent is root:
            break
        tree.with_images.add(parent)


def _is_not_a_picture(img: _Node) -> bool:
    """A QR code to scan ("扫码关注" boilerplate, by its alt text) or a tracking pixel."""
    alt = img.get("alt")
    if alt and _QR_ALT.search(alt):
        return True
    return (
        _attr(img, "width").strip() in _PIXEL_SIZES and _attr(img, "height").strip() in _PIXEL_SIZES
    )


def _attr(node: _Node, name: str) -> str:
    return node.get(name) or ""


# --- writing the tree for the sanitizer ----------------------------------------------------


def _inner_markup(root: _Node, tree: _Tree) -> str:
    """The markup inside ``root`` (recursion is bounded: pass A flattened deeper markup)."""
    parts: list[str] = [_escaped(root.text)] if root.text else []
    for child in root:
        _write(child, tree.renamed_voids, parts)
    return "".join(parts)


def _write(node: _Node, renamed_voids: set[_Node], parts: list[str]) -> None:
    name = node.tag
    tail = node.tail  # each read of .text or .tail decodes libxml2's UTF-8 again: read once
    if isinstance(name, str):  # pass A left no comment; one would be skipped
        parts.append("<" + name)
        attrib = node.attrib
        if attrib:
            for key, value in sorted(attrib.items()):
                parts.append(f" {key}={_quoted(value)}")
        text = node.text
        if not text and not len(node) and (name in _SELF_CLOSING or node in renamed_voids):
            parts.append("/>")
        else:
            parts.append(">")
            if text:
                parts.append(_escaped(text))
            for child in node:
                _write(child, renamed_voids, parts)
            parts.append(f"</{name}>")
    if tail:
        parts.append(_escaped(tail))


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _quoted(value: str) -> str:
    value = _escaped(value)
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace('"', "&quot;") + '"'


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
    # The group by itemgetter: CPython 3.11 expands an r"\1" template in Python for each match.
    return _one_newline_per_blank_run(_BLOCK_OPENING_BLANK.sub(_FIRST_GROUP, html))


def _one_newline_per_blank_run(html: str) -> str:
    r"""Each run of whitespace holding a newline becomes one newline: ``\s*\n\s*`` -> ``\n``
    without a regex trying every position of the text."""
    lines = html.split("\n")
    if len(lines) == 1:
        return html
    kept = [lines[0].rstrip()]
    kept.extend(stripped for line in lines[1:-1] if (stripped := line.strip()))
    kept.append(lines[-1].lstrip())
    return "\n".join(kept)


def _sanitized_to_text(html: str) -> str:
    """Plain text of nh3 output (well-formed, so a few regexes read it exactly)."""
    text = _LINE_BREAKING_TAG.sub("\n", " ".join(html.split()))  # source newlines: spaces
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
    # Zero-width characters are format characters (Cf), never printable: most texts are.
    if not text.isprintable() and _INVISIBLE.search(text):
        text = _INVISIBLE.sub("", text)
    return " ".join(text.split())


_CLOSES_SENTENCE = frozenset("。！？；…」』”’）)】.!?;")


def _join_lines(text: str, enough: int) -> str:
    """One line of text; lines that do not end a sentence (captions, headings) keep a space.
    Stops once ``enough`` characters are joined: joining more only appends."""
    joined = ""
    for line in text.split("\n"):
        line = _collapse(line)
        if not line:
            continue
        if joined and joined[-1] not in _CLOSES_SENTENCE:
            joined += " "
        joined += line
        if len(joined) >= enough:
            break
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
        patterns=_compile_patterns(tuple(dict.fromkeys(rules.remove_text))),
        ignore_images=rules.ignore_images,
    )


def _compile_patterns(patterns: tuple[str, ...]) -> _Patterns:
    for pattern in patterns:
        re.compile(pattern)  # an invalid one fails here, as it did when each was compiled alone
    alone = [p for p in patterns if _REFERS_TO_GROUP.search(p)]
    at_start = [p[1:] for p in patterns if p not in alone and _anchored_sequence(p)]
    anywhere = [p for p in patterns if p not in alone and not _anchored_sequence(p)]
    try:
        return _Patterns(_alternation(at_start), _alternation(anywhere), _compiled(alone))
    except re.error:  # e.g. one pattern's global flags, or two groups of the same name
        return _Patterns(alone=_compiled(patterns))


# A backreference (\1, (?P=name)) or a conditional group ((?(1)…)): group numbers matter.
_REFERS_TO_GROUP = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")


def _alternation(patterns: list[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


def _compiled(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


def _anchored_sequence(pattern: str) -> bool:
    """True when ``pattern`` is ``^`` followed by a sequence: no ``|`` outside its groups and
    character classes, so it matches only where ``re.match`` of the rest does."""
    if not pattern.startswith("^"):
        return False
    depth, index, end = 0, 1, len(pattern)
    while index < end:
        char = pattern[index]
        if char == "\\":
            index += 1  # the escaped character, whatever it is
        elif char == "[":
            index = _class_end(pattern, index)
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return False
        index += 1
    return True


def _class_end(pattern: str, start: int) -> int:
    """The index of the ``]`` closing the character class opened at ``start``."""
    index = start + 1
    if pattern.startswith("^", index):
        index += 1
    if pattern.startswith("]", index):  # a "]" first in a class is a literal
        index += 1
    while index < len(pattern) and pattern[index] != "]":
        index += 2 if pattern[index] == "\\" else 1
    return index


def _compile_selectors(selectors: tuple[str, ...]) -> _Selectors:
    """Set lookups for simple selectors, one XPath test for the rest (invalid ones skipped)."""
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
        elif _matcher(selector) is not None:
            other.append(selector)
        else:
            log.warning("cleanup selector ignored, not valid CSS: %r", selector)
    return _Selectors(
        names=frozenset(names),
        classes=frozenset(classes),
        ids=frozenset(ids),
        contains=tuple(contains),
        other=_matcher(", ".join(other)) if other else None,
    )


def _matcher(selector: str) -> etree.XPath | None:
    """An XPath test of an element against ``selector``; None for CSS cssselect cannot read."""
    try:
        return etree.XPath(_CSS.css_to_xpath(selector, prefix="self::"))
    except (SelectorError, etree.XPathError):
        return None
