"""Fingerprints and identity: pure functions over normalized articles.

* ``fingerprint``: a versioned hash of the normalized title and body text. Two files with the
  same fingerprint are the same story; a file whose fingerprint did not change did not change.
* ``body_key``: the hash of the body text alone, for stories whose title was edited or lost
  (only for bodies long enough that a collision means the same text).
* ``new_item_id``: issued once, from the first fingerprint an item had, then stored and
  never recomputed, so edits, renames and merges never change an item's id.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from feeds.model import Article
from feeds.text import nfkc

FINGERPRINT_VERSION = "2"
BODY_KEY_MIN_CHARS = 80
_ZERO_WIDTH = "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
_NOT_CONTENT = re.compile(f"[\\s{_ZERO_WIDTH}]+")
_NOT_WORD = re.compile(r"[\W_]+")
# Wire-copy boilerplate that differs between outlets carrying the same story (after NFKC):
# a dateline ("证券时报网讯，", "中证网讯(记者某某)", "证券时报e公司讯，"), an "原标题" line,
# and a closing attribution ("(澎湃新闻)", "来源：央视财经").
_DATELINE = re.compile(r"^[^,。:!?()]{1,16}讯(\(记者[^)]{0,20}\))?[,:]?")
_ORIGINAL_TITLE = re.compile(r"^原标题[:\s]")
_ATTRIBUTION = re.compile(r"(\([^()]{1,16}\)|(文章)?来源:[^,。]{1,20})$")


def canonical_text(text: str) -> str:
    """NFKC, case-folded, whitespace and wire boilerplate removed: what makes a story itself."""
    folded = nfkc(text).casefold()
    # str.split() splits at exactly the characters regex \s matches (str.isspace); a regex
    # class test per character costs more than the splitting and joining.
    lines = ["".join(line.split()) for line in folded.splitlines()]
    if any(char in folded for char in _ZERO_WIDTH):
        lines = [_NOT_CONTENT.sub("", line) for line in lines]
    lines = [line for line in lines if line and not _ORIGINAL_TITLE.match(line)]
    if lines:
        lines[0] = _DATELINE.sub("", lines[0], count=1)
        lines[-1] = _ATTRIBUTION.sub("", lines[-1])
    joined = "".join(lines)
    # Removing whitespace can bring a combining mark next to a letter: compose it again.
    return (
        joined
        if unicodedata.is_normalized("NFKC", joined)
        else unicodedata.normalize("NFKC", joined)
    )


def canonical_title(title: str) -> str:
    return _NOT_WORD.sub("", nfkc(title).casefold())


def _digest(*parts: str) -> str:
    joined = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(joined).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Identity:
    """Everything dedupe derives from one article, from a single canonicalization pass."""

    fingerprint: str
    body_key: str | None
    title: str  # canonical title ("" when derived from the body)
    body: str  # canonical body text


def identity(article: Article) -> Identity:
    title = "" if article.title_derived else canonical_title(article.title)
    body = canonical_text(article.text)
    key = _digest("body", FINGERPRINT_VERSION, body) if len(body) >= BODY_KEY_MIN_CHARS else None
    return Identity(_digest("fp", FINGERPRINT_VERSION, title, body), key, title, body)


def fingerprint(article: Article) -> str:
    return identity(article).fingerprint


def body_key(article: Article) -> str | None:
    return identity(article).body_key


def new_item_id(first_fingerprint: str) -> str:
    return _digest("item", first_fingerprint)


# What stored rows of a story's representative were chosen with: another version re-reads every
# file (pipeline.CODE_VERSIONS) so that every story is represented as this code would choose.
REPRESENTATIVE_VERSION = "2"  # 2: a flash no longer represents the full copy it is as good as


def is_complete(chars: int, longest: int) -> bool:
    """Whether a copy whose canonical text has ``chars`` characters tells the whole story beside
    ``longest``, the longest copy as good by ``quality``. One with less than two thirds of that
    text is a flash of it (a 快讯 of one paragraph beside the full article), which never
    represents it; copies within a third of each other (other boilerplate, a revised
    paragraph) are all complete, and the newest edit among them represents the story."""
    return chars * 3 >= longest * 2


def quality(article: Article) -> int:
    """How complete a member file's fields are; the best member of a story represents it (on a
    tie, a complete text beats a flash: ``is_complete``)."""
    return (
        (0 if article.title_derived else 4)
        + (2 if article.link else 0)
        + (1 if article.date_origin == "front-matter" else 0)
    )
