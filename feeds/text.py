"""Chinese-aware text helpers shared by classification, alerts and dedupe: pure functions."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc

_T2S = opencc.OpenCC("t2s")
_WHITESPACE = re.compile(r"\s+")
# Characters XML 1.0 forbids (C0 controls but tab/LF/CR, surrogates, U+FFFE/U+FFFF).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


# Full-width ASCII forms (U+FF01-FF5E), the ideographic space and the ellipsis (which ends
# every cut summary and title): nearly every character of Chinese text that NFKC changes. Their
# NFKC forms are ASCII.
_FULL_WIDTH = re.compile("[\uff01-\uff5e\u3000\u2026]")
_HALF_WIDTH = {chr(c): unicodedata.normalize("NFKC", chr(c)) for c in range(0xFF01, 0xFF5F)}
_HALF_WIDTH["\u3000"] = " "
_HALF_WIDTH["\u2026"] = "..."


def nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, several times faster on Chinese text.

    CPython's NFKC is slow on text that is not already normalized, and Chinese text almost
    never is, only because of its full-width punctuation. Those characters are mapped first
    (each to its full compatibility decomposition, so the text's NFKD, and NFKC, stay the
    same); the full normalization runs only when something else remains to normalize. A text
    of a few thousand characters holds only a few distinct ones ("，" nearly always): one
    ``str.replace`` per distinct character beats a substitution callback per occurrence.

    Long texts are remembered (the last two): identity and topic matching each normalize an
    article's text.
    """
    if _CACHED_CHARS[0] <= len(text) <= _CACHED_CHARS[1]:
        return _nfkc_cached(text)
    return _nfkc(text)


_CACHED_CHARS = (256, 1 << 20)  # shorter texts cost less than the cache; longer ones stay out


def _nfkc(text: str) -> str:
    found = _FULL_WIDTH.search(text)
    while found is not None:
        char = found.group()
        # None of these is left before this one: nothing before it moves.
        text = text.replace(char, _HALF_WIDTH[char])
        found = _FULL_WIDTH.search(text, found.start())
    if unicodedata.is_normalized("NFKC", text):
        return text
    return unicodedata.normalize("NFKC", text)


_nfkc_cached = lru_cache(maxsize=2)(_nfkc)


def fold(text: str) -> str:
    """Fold text for matching: NFKC, traditional -> simplified, case-folded."""
    converted: str = _T2S.convert(nfkc(text))
    return converted.casefold()


def collapse_whitespace(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


# Where an HTML tokenizer starts a tag, comment or declaration: "<" before a letter, "/", "!", "?".
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")


def defang(text: str) -> str:
    """Plain text that no HTML parser reads a tag from, even one treating it as HTML (many
    feed readers render an RSS title so): such a "<" becomes the full-width "＜"."""
    return _TAG_OPEN.sub("＜", text)


def xml_safe(text: str) -> str:
    """Drop characters that XML 1.0 cannot carry (they break feed readers)."""
    return _XML_ILLEGAL.sub("", text)


@lru_cache(maxsize=4096)
def slugify(name: str) -> str:
    """ASCII slug of a display name: pinyin for Han characters, lowercase alphanumerics.

    >>> slugify("21世纪经济报道")
    '21shijijingjibaodao'
    """
    # Imported here: its phrase tables cost ~55 MB per process, and every built-in outlet and
    # shipped topic has its slug written out, so most runs never need them.
    from pypinyin import lazy_pinyin

    normalized = unicodedata.normalize("NFKC", name)
    ascii_parts = "".join(lazy_pinyin(normalized, errors="default"))
    folded = unicodedata.normalize("NFKD", ascii_parts).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    return slug.replace("-", "") if len(slug) <= 80 else slug[:80].rstrip("-")
