"""Near-duplicate detection for Chinese news: pure functions.

A story republished by another outlet differs by a dateline, a trimmed headline, an extra
paragraph or a closing attribution. Character 3-grams need no word segmentation, so an article
is the set of (hashes of) its shingles. Two articles are the same story when most of the
shorter one is inside the longer one (*containment*): a short wire flash and its longer rewrite
score high even though they share few shingles relative to their union.

A different headline over largely the same text is usually a different story quoting another
(a roundup, a commentary), so when both articles have real titles that share little, the
texts must be nearly identical as a whole (Jaccard), not merely one inside the other.

Reports built from one template ("北向资金净流入超40亿" / "…超50亿") share most shingles but not
their numbers, so a match also needs the shorter text's numbers to appear in the longer one.

Finding candidates never compares all pairs: each article is indexed under a few *anchors* —
the smallest hashes of its 8-character runs (a MinHash-style sample; long runs are shared by
copies of a text and rarely by unrelated ones, so the index stays selective) and the hash of
its canonical title (a title-only flash shares no run with a long article, but it does share
the title).

A shingle is stored exactly, as its three code points packed into one integer (Unicode needs
21 bits each): no hashing, no collisions, and the same value in every process.
"""

from __future__ import annotations

import heapq
import re
import zlib
from dataclasses import dataclass

from feeds.dedupe import Identity

SHINGLE = 3
ANCHOR_RUN = 8  # characters in an anchor run
SAMPLED_ANCHORS = 16
MIN_SHINGLES = 12  # below this a text is too short to call anything its duplicate
NUMBER_AGREEMENT = 0.8
TITLE_AGREEMENT = 0.5  # bigram containment of the shorter title in the longer
UNRELATED_TITLES_NEED = 0.9  # Jaccard similarity of the texts required when titles disagree
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class Shingles:
    hashes: frozenset[int]  # packed code-point triples
    numbers: frozenset[str]
    anchors: tuple[int, ...]  # index keys (32-bit): sampled runs, then the title's
    title_grams: frozenset[str] = frozenset()  # empty when the title was derived
    title_anchor: int | None = None  # also the last of ``anchors``

    @property
    def run_anchors(self) -> tuple[int, ...]:
        return self.anchors[:-1] if self.title_anchor is not None else self.anchors


def shingles(ident: Identity) -> Shingles:
    """The 3-gram set of an article's canonical title and body (see ``dedupe.identity``)."""
    text = ident.title + ident.body
    codes = [ord(c) for c in text]
    triples = zip(codes, codes[1:], codes[2:], strict=False)
    hashes = frozenset((a << 42) | (b << 21) | c for a, b, c in triples)
    numbers = frozenset(_NUMBER.findall(ident.body))
    title_anchor = (
        zlib.crc32(("title\x1f" + ident.title).encode()) if len(ident.title) >= 4 else None
    )
    anchors = _run_anchors(text) + (() if title_anchor is None else (title_anchor,))
    return Shingles(hashes, numbers, anchors, frozenset(_grams(ident.title, 2)), title_anchor)


def _run_anchors(text: str) -> tuple[int, ...]:
    raw = memoryview(text.encode("utf-32-le"))  # 4 bytes a character: runs are plain slices
    width = 4 * ANCHOR_RUN
    runs = {zlib.crc32(raw[i : i + width]) for i in range(0, len(raw) - width + 1, 4)}
    return tuple(sorted(heapq.nsmallest(SAMPLED_ANCHORS, runs)))


def _grams(text: str, n: int) -> set[str]:
    return {text[i : i + n] for i in range(max(1, len(text) - n + 1))} if text else set()


def titles_agree(a: Shingles, b: Shingles) -> bool:
    if not a.title_grams or not b.title_grams:
        return True  # a derived title says nothing
    shorter, longer = sorted((a.title_grams, b.title_grams), key=len)
    return len(shorter & longer) / len(shorter) >= TITLE_AGREEMENT


def numbers_agree(shorter: Shingles, longer: Shingles) -> bool:
    if not shorter.numbers:
        return True
    shared = len(shorter.numbers & longer.numbers)
    return shared / len(shorter.numbers) >= NUMBER_AGREEMENT


def similarity(a: Shingles, b: Shingles) -> float:
    """Containment of the shorter shingle set in the longer; 0 when numbers disagree, or when
    real titles disagree and the texts are not nearly identical."""
    shorter, longer = (a, b) if len(a.hashes) <= len(b.hashes) else (b, a)
    if len(shorter.hashes) < MIN_SHINGLES or not numbers_agree(shorter, longer):
        return 0.0
    shared = len(shorter.hashes & longer.hashes)
    if not titles_agree(a, b):
        jaccard = shared / len(shorter.hashes | longer.hashes)
        return jaccard if jaccard >= UNRELATED_TITLES_NEED else 0.0
    return shared / len(shorter.hashes)
