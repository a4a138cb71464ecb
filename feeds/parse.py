"""File -> ``RawArticle``: read bytes, decode, split front matter. Nothing is interpreted here.

Front matter: YAML between ``---`` lines (leading blank lines allowed) or TOML between ``+++``
lines, split with python-frontmatter's handlers. YAML is loaded with the C safe loader; a
document that could contain aliases goes through a loader that refuses them, so an alias bomb
costs nothing. Every failure is an ``ArticleError`` with the path and one line of reason.
"""

from __future__ import annotations

import codecs
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from frontmatter.default_handlers import BaseHandler, YAMLHandler

from feeds.clean import looks_like_html
from feeds.errors import ArticleError
from feeds.model import BodyFormat, FrontMatterKind, RawArticle

HTML_SUFFIXES = (".html", ".htm")
_ALIAS_OR_ANCHOR = re.compile(r"(?:^|[\s\[{,:-])[&*][^\s,\]}]")
_HEXO_BRACES = (("&#123;", "{"), ("&#125;", "}"))
# libyaml recurses in C on flow collections: a deep "[[[[…" crashes the process. Front matter
# with more brackets than this goes through the pure-Python loader (RecursionError instead).
MAX_FAST_FLOW_BRACKETS = 200


class _NoAliasLoader(yaml.SafeLoader):
    """Pure-Python safe loader that refuses aliases (billion-laughs protection)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.YAMLError(f"YAML aliases are not allowed (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


class _SafeYAMLHandler(YAMLHandler):
    def load(self, fm: str, **kwargs: object) -> Any:
        risky = (
            _ALIAS_OR_ANCHOR.search(fm) or fm.count("[") + fm.count("{") > MAX_FAST_FLOW_BRACKETS
        )
        loader = _NoAliasLoader if risky else yaml.CSafeLoader
        return yaml.load(fm, Loader=loader)


class _TomlHandler(BaseHandler):
    FM_BOUNDARY = re.compile(r"^\+{3,}\s*$", re.MULTILINE)
    START_DELIMITER = END_DELIMITER = "+++"

    def load(self, fm: str, **kwargs: object) -> Any:
        return tomllib.loads(fm)


_HANDLERS: tuple[tuple[FrontMatterKind, BaseHandler], ...] = (
    ("yaml", _SafeYAMLHandler()),
    ("toml", _TomlHandler()),
)


def read_bytes(path: str, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """Read a whole file, refusing (not loading) anything larger than ``max_bytes``."""
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            if stat.st_size > max_bytes:
                raise ArticleError(path, f"file too large ({stat.st_size} bytes > {max_bytes})")
            data = handle.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise ArticleError(path, "file vanished before it could be read") from exc
    except IsADirectoryError as exc:
        raise ArticleError(path, "is a directory") from exc
    except OSError as exc:
        raise ArticleError(path, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise ArticleError(path, f"file too large (> {max_bytes} bytes)")
    return data, stat


def decode(data: bytes, path: str) -> tuple[str, str]:
    """Bytes -> (text, encoding). UTF-8 (BOM or not), UTF-16 with BOM, else GB18030."""
    if b"\x00" in data and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ArticleError(path, "binary file (contains NUL bytes)")
    if data.startswith(codecs.BOM_UTF8):
        return _strict(data[3:], "utf-8", path), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _strict(data, "utf-16", path), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise ArticleError(
            path, f"undecodable text (not UTF-8 or GB18030 at byte {exc.start})"
        ) from exc


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
    return {}, text, "none"


def _load_meta(handler: BaseHandler, kind: str, raw: str, path: str) -> dict[str, Any]:
    try:
        meta = handler.load(raw)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
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
    return " ".join(str(exc).split())[:300]


def body_format(path: str, body: str) -> BodyFormat:
    if path.lower().endswith(HTML_SUFFIXES):
        return "html"
    return "html" if looks_like_html(body) else "markdown"


def parse_text(text: str, path: str, *, encoding: str, mtime_ns: int, size: int) -> RawArticle:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for escaped, plain in _HEXO_BRACES:
        text = text.replace(escaped, plain)
    meta, body, kind = split_front_matter(text, path)
    if kind == "none":
        raise ArticleError(path, "no front matter (not an article: posts start with --- or +++)")
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
