"""File -> ``RawArticle``: read bytes, decode, split front matter. Nothing is interpreted here.

Front matter: YAML between ``---`` lines (leading blank lines allowed; Jekyll's ``...`` ends it
too) or TOML between ``+++`` lines, split with python-frontmatter's handlers, or Hexo's JSON
between ``;;;`` lines; or, as Hexo reads them, YAML (JSON) from the first line to the first
``---`` (``;;;``) line when it names a field normalization reads. YAML is loaded with the C safe
loader; a document that could contain aliases goes through a loader that refuses them, so an
alias bomb costs nothing. Every failure is an ``ArticleError`` with the path and one line of
reason.
"""

from __future__ import annotations

import codecs
import errno
import json
import os
import re
import tomllib
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import Any

import yaml
from frontmatter.default_handlers import BaseHandler, YAMLHandler

from feeds.clean import looks_like_html
from feeds.errors import ArticleError, Vanished
from feeds.model import BodyFormat, FrontMatterKind, RawArticle
from feeds.normalize import FRONT_MATTER_KEYS

HTML_SUFFIXES = (".html", ".htm")
_ALIAS_OR_ANCHOR = re.compile(r"(?:^|[\s\[{,:-])[&*][^\s,\]}]")
_HEXO_BRACES = (("&#123;", "{"), ("&#125;", "}"))
# libyaml recurses in C on flow collections: a deep "[[[[…" crashes the process. Front matter
# with more brackets than this goes through the pure-Python loader (RecursionError instead).
MAX_FAST_FLOW_BRACKETS = 200


_YAML = "tag:yaml.org,2002:"


def timestamp_or_text(loader: Any, node: yaml.ScalarNode) -> Any:
    """A YAML timestamp, or its text when it names no real moment (``2024-02-30``, a
    scraper's ``0000-00-00 00:00:00``): an unusable date is the date parser's to judge (the
    file name's date is used then), not a reason to refuse the whole article."""
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


class _NoAliasLoader(yaml.SafeLoader):
    """Pure-Python safe loader that refuses aliases (billion-laughs protection)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.YAMLError(f"YAML aliases are not allowed (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


_NoAliasLoader.add_constructor(_YAML + "timestamp", timestamp_or_text)
_FLAT_SCALARS = frozenset(
    _YAML + name for name in ("str", "int", "float", "bool", "null", "timestamp")
)


def _flat_scalar(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag in _FLAT_SCALARS


class _FlatSafeLoader(yaml.CSafeLoader):
    """libyaml's safe loader, constructing the usual front matter directly: a mapping of plain
    string keys to scalars and lists of scalars. SafeConstructor's general construction (state
    generators, recursion bookkeeping, a call per node through ``construct_object``) took longer
    than libyaml's parsing. Anything else is constructed the general way."""

    def construct_document(self, node: yaml.Node) -> Any:
        if not _flat_mapping(node):
            return super().construct_document(node)
        constructors = self.yaml_constructors
        data: dict[str, Any] = {}
        lists: list[tuple[list[Any], list[yaml.Node]]] = []
        for key, value in node.value:
            if isinstance(value, yaml.ScalarNode):
                data[key.value] = constructors[value.tag](self, value)
            else:
                items: list[Any] = []
                data[key.value] = items
                lists.append((items, value.value))
        # The general way fills lists after every scalar of the mapping (their construction is
        # deferred): the same order here, so the same error is raised first.
        for items, nodes in lists:
            items.extend(constructors[item.tag](self, item) for item in nodes)
        return data


_FlatSafeLoader.add_constructor(_YAML + "timestamp", timestamp_or_text)


def _flat_mapping(node: yaml.Node) -> bool:
    if not isinstance(node, yaml.MappingNode) or node.tag != _YAML + "map":
        return False
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag != _YAML + "str":
            return False  # merge keys ("<<"), "=" keys, non-string keys
        if isinstance(value, yaml.SequenceNode) and value.tag == _YAML + "seq":
            if not all(_flat_scalar(item) for item in value.value):
                return False
        elif not _flat_scalar(value):
            return False
    return True


# Hexo indents with tabs where YAML allows only spaces: it turns each leading tab into two
# spaces before loading (hexo-front-matter's escapeYAML), so its posts may hold them.
_LEADING_TABS = re.compile(r"\n\t+")


def _hexo_tabs(match: re.Match[str]) -> str:
    return "\n" + "  " * (len(match.group()) - 1)


# Jekyll ends front matter at a "---" or a "..." line (YAML's own document end marker).
_YAML_END = re.compile(r"^(?:-{3,}|\.{3})\s*$", re.MULTILINE)


class _SafeYAMLHandler(YAMLHandler):
    def split(self, text: str) -> tuple[str, str]:
        opening = self.FM_BOUNDARY.match(text)
        closing = _YAML_END.search(text, opening.end()) if opening is not None else None
        if opening is None or closing is None:
            raise ValueError("unterminated")
        return text[opening.end() : closing.start()], text[closing.end() :]

    def load(self, fm: str, **kwargs: object) -> Any:
        if "\n\t" in fm:
            fm = _LEADING_TABS.sub(_hexo_tabs, fm)
        risky = (
            _ALIAS_OR_ANCHOR.search(fm) or fm.count("[") + fm.count("{") > MAX_FAST_FLOW_BRACKETS
        )
        loader = _NoAliasLoader if risky else _FlatSafeLoader
        return yaml.load(fm, Loader=loader)


class _JsonHandler(BaseHandler):
    """Hexo's JSON front matter: the members of an object between ``;;;`` lines (Hexo adds the
    braces itself; an object written with its braces is read too)."""

    FM_BOUNDARY = re.compile(r"^;{3,}[ \t]*$", re.MULTILINE)
    START_DELIMITER = END_DELIMITER = ";;;"

    def load(self, fm: str, **kwargs: object) -> Any:
        return json.loads(fm if fm.lstrip().startswith("{") else "{" + fm + "}")


class _TomlHandler(BaseHandler):
    FM_BOUNDARY = re.compile(r"^\+{3,}\s*$", re.MULTILINE)
    START_DELIMITER = END_DELIMITER = "+++"

    def load(self, fm: str, **kwargs: object) -> Any:
        return tomllib.loads(fm)


_YAML_HANDLER = _SafeYAMLHandler()
_JSON_HANDLER = _JsonHandler()
_HANDLERS: tuple[tuple[FrontMatterKind, BaseHandler], ...] = (
    ("yaml", _YAML_HANDLER),
    ("toml", _TomlHandler()),
    ("json", _JSON_HANDLER),
)


def read_bytes(path: str, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """Read a whole file, refusing (not loading) anything larger than ``max_bytes``.

    Opened without blocking and checked to be a regular file before reading: a path that
    turned into a FIFO or a device since the scan must not hang the batch.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise ArticleError(path, "broken symbolic link (its target does not exist)") from exc
        raise Vanished(path, "file vanished before it could be read") from exc
    except OSError as exc:
        raise ArticleError(path, _cannot_read(exc)) from exc
    try:
        stat = os.fstat(fd)
        if S_ISDIR(stat.st_mode):
            raise ArticleError(path, "is a directory")
        if not S_ISREG(stat.st_mode):
            raise ArticleError(path, "not a regular file (a FIFO, socket or device)")
        if stat.st_size > max_bytes:
            raise ArticleError(path, f"file too large ({stat.st_size} bytes > {max_bytes})")
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ArticleError(path, _cannot_read(exc)) from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ArticleError(path, f"file too large (> {max_bytes} bytes)")
    return data, stat


_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts the same way
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode(data: bytes, path: str) -> tuple[str, str]:
    """Bytes -> (text, encoding).

    A BOM decides (UTF-8, UTF-16, UTF-32). Without one: UTF-16 when the NUL bytes sit on one
    side of the code units (ASCII front matter in UTF-16), else no NUL may appear (binary);
    then UTF-8 (a mostly-UTF-8 file with invalid bytes is refused, not read as mojibake),
    else GB18030 — or Big5 when GB18030 only manages by producing
    private-use characters (traditional-Chinese files) and Big5 reads it cleanly.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _strict(data, encoding, path), encoding  # these codecs drop the BOM
    if b"\x00" in data:
        utf16 = _utf16_without_bom(data)
        text = _strict(data, utf16, path) if utf16 is not None else "\x00"
        if "\x00" in text:
            raise ArticleError(path, "binary file (contains NUL bytes)")
        return text, str(utf16)
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc.start
    if _damaged_utf8(data):  # GB18030 would "succeed" with mojibake more often than not
        raise ArticleError(path, f"invalid UTF-8 at byte {utf8_error} (the rest is UTF-8)")
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise ArticleError(
            path,
            f"undecodable text (not UTF-8: invalid at byte {utf8_error}; "
            f"not GB18030: invalid at byte {exc.start})",
        ) from exc
    if _PRIVATE_USE.search(text):
        try:
            big5 = data.decode("big5hkscs")
        except UnicodeDecodeError:
            return text, "gb18030"
        if not _PRIVATE_USE.search(big5):
            return big5, "big5hkscs"
    return text, "gb18030"


_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")


def _damaged_utf8(data: bytes) -> bool:
    """UTF-8 text with a few invalid bytes: as UTF-8, GBK or Big5 text is nearly all invalid."""
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    good = sum(1 for char in text if char > "\x7f") - bad
    return good >= 2 and good >= 4 * bad


def _utf16_without_bom(data: bytes) -> str | None:
    """``utf-16-le``/``utf-16-be`` when the NUL bytes sit (nearly) all on one side of the code
    units: the high bytes of ASCII. A few on the other side are CJK such as U+4E00 "一";
    binary data has them on both sides."""
    if len(data) % 2:
        return None
    odd, even = data[1::2].count(0), data[0::2].count(0)
    if odd > 8 * even:
        return "utf-16-le"
    if even > 8 * odd:
        return "utf-16-be"
    return None


def _strict(data: bytes, encoding: str, path: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ArticleError(path, f"invalid {encoding} at byte {exc.start}") from exc


def split_front_matter(text: str, path: str) -> tuple[dict[str, Any], str, FrontMatterKind]:
    """Text -> (front matter mapping, body, kind). No front matter -> ({}, text, "none")."""
    stripped = text.lstrip("\r\n\t \ufeff")
    for kind, handler in _HANDLERS:
        if not handler.detect(stripped):
            continue
        try:
            raw_meta, body = handler.split(stripped)
        except ValueError:
            raise ArticleError(path, f"unterminated {kind.upper()} front matter") from None
        return _load_meta(handler, kind, raw_meta, path), body, kind
    unprefixed = _unprefixed_front_matter(stripped, path)
    if unprefixed is not None:
        return unprefixed
    return {}, text, "none"


# Hexo (hexo-front-matter) also reads a post whose front matter starts on the first line and
# ends at the first "---" (YAML) or ";;;" (JSON) line. Such a "---" line is just as often a
# Markdown rule or a setext heading's underline, so what precedes it counts only when it opens
# like a mapping and names a field feeds reads.
_CLOSING_LINE = re.compile(r"^(?:-{3,}|;{3,})[ \t]*$", re.MULTILINE)
_KEYS = "|".join(map(re.escape, sorted(FRONT_MATTER_KEYS)))
# YAML: comment lines, then a "key:" line (prose does not open like that); JSON: "{" or "key":
_OPENINGS: dict[FrontMatterKind, re.Pattern[str]] = {
    "yaml": re.compile(r"(?:[ \t]*(?:#.*)?\n)*[^\s#:][^\n:]*:(?:[ \t]|$)", re.MULTILINE),
    "json": re.compile(r'\s*(?:\{|"[^"\n]*"\s*:)'),
}
_KNOWN_KEYS: dict[FrontMatterKind, re.Pattern[str]] = {
    "yaml": re.compile(rf"^(?:{_KEYS})[ \t]*:(?:[ \t]|$)", re.MULTILINE),
    "json": re.compile(rf'"(?:{_KEYS})"\s*:'),
}


def _unprefixed_front_matter(
    text: str, path: str
) -> tuple[dict[str, Any], str, FrontMatterKind] | None:
    closing = _CLOSING_LINE.search(text)
    if closing is None:
        return None
    kind: FrontMatterKind = "json" if closing.group().startswith(";") else "yaml"
    head = text[: closing.start()]
    if not (_OPENINGS[kind].match(head) and _KNOWN_KEYS[kind].search(head)):
        return None  # a body with a horizontal rule, not a post without its opening "---"
    handler = _JSON_HANDLER if kind == "json" else _YAML_HANDLER
    meta = _load_meta(handler, kind, head, path)
    if not FRONT_MATTER_KEYS.intersection(meta):
        return None
    return meta, text[closing.end() :], kind


def _load_meta(handler: BaseHandler, kind: str, raw: str, path: str) -> dict[str, Any]:
    try:
        meta = handler.load(raw)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ArticleError(path, f"bad {kind.upper()} front matter: {_describe(exc)}") from exc
    except Exception as exc:  # the loaders' own bugs, e.g. "!!timestamp 'x'" -> AttributeError
        raise ArticleError(path, f"bad {kind.upper()} front matter: {type(exc).__name__}") from exc
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ArticleError(path, f"front matter is a {type(meta).__name__}, not a mapping")
    return {str(key): value for key, value in meta.items()}


def _describe(exc: Exception) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        # The split front matter starts with the newline that ends the opening "---" line,
        # so its line N is the file's line N + 1. Prefer where the broken construct began.
        mark = exc.context_mark or exc.problem_mark
        what = f"{exc.context}: {exc.problem}" if exc.context else exc.problem
        return f"line {mark.line + 1}: {what}"
    if isinstance(exc, json.JSONDecodeError):  # lineno counts from 1, from the file's first line
        return f"line {exc.lineno}: {exc.msg}"
    return " ".join(str(exc).split())[:300]


def body_format(path: str, body: str) -> BodyFormat:
    if path.lower().endswith(HTML_SUFFIXES):
        return "html"
    return "html" if looks_like_html(body) else "markdown"


def _cannot_read(exc: OSError) -> str:
    return f"cannot read: {exc.strerror or exc}"


# Rejections that go away without the file's stamp changing, so the scan retries them: a chmod
# (EACCES, EPERM), or the process or system out of file descriptors or memory for a moment.
RETRIED_REASONS = frozenset(
    _cannot_read(OSError(code, os.strerror(code)))
    for code in (errno.EACCES, errno.EPERM, errno.EMFILE, errno.ENFILE, errno.ENOMEM)
)


NO_FRONT_MATTER = "no front matter (not an article: posts start with ---, +++ or ;;;)"


def parse_text(text: str, path: str, *, encoding: str, mtime_ns: int, size: int) -> RawArticle:
    if "\r" in text:  # each test is one scan; each replace is another, and a copy
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "&#12" in text:
        for escaped, plain in _HEXO_BRACES:
            text = text.replace(escaped, plain)
    meta, body, kind = split_front_matter(text, path)
    if kind == "none":
        raise ArticleError(path, NO_FRONT_MATTER)
    body = body.strip("\n")
    return RawArticle(
        path=path,
        meta=meta,
        body=body,
        body_format=body_format(path, body),
        front_matter=kind,
        encoding=encoding,
        mtime_ns=mtime_ns,
        size=size,
    )


def parse_file(path: str | Path, max_bytes: int) -> RawArticle:
    """Read and split one article file. Raises ``ArticleError`` for anything unusable."""
    path = str(path)
    data, stat = read_bytes(path, max_bytes)
    if not data.strip():
        raise ArticleError(path, "empty file")
    text, encoding = decode(data, path)
    return parse_text(text, path, encoding=encoding, mtime_ns=stat.st_mtime_ns, size=stat.st_size)
