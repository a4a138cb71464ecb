"""Near-duplicate detection for Chinese news: pure functions.

A story republished by another outlet differs by a dateline, a trimmed headline, an extra
paragraph or a closing attribution. Character 3-grams need no word segmentation, so an article
is the set of its shingles. Two articles are the same story when most of the
shorter one is inside the longer one (*containment*): a short wire flash and its longer rewrite
score high even though they share few shingles relative to their union.

A different headline over largely the same text is usually a different story quoting another
(a roundup, a commentary), so when both articles have real titles that share little, the
texts must be nearly identical as a whole (Jaccard), not merely one inside the other.

Reports built from one template ("北向资金净流入超40亿" / "…超50亿") share most shingles but not
their numbers, so a match also needs the shorter text's numbers to appear in the longer one.

Finding candidates never compares all pairs: each article is indexed under a few *anchors* —
the smallest hashes of its 8-character runs that start a text or follow a punctuation mark (a
MinHash-style sample over content-defined positions: copies of a text share those positions,
so they share the sample; long runs are rarely shared by unrelated texts, so the index stays
selective; and a few hundred runs per article cost a fraction of hashing every position) and the
hash of its canonical title (a title-only flash shares no run with a long article, but it does
share the title). Anchors are computed for every article; the full shingle sets only for the
few that have a candidate to compare with.

Shingles are the 3-character substrings themselves: exact, no hashing, no collisions.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from feeds.dedupe import Identity

SHINGLE = 3
ANCHOR_VERSION = "2"  # stored anchors from another version never match: a change re-reads all
ANCHOR_RUN = 8  # characters in an anchor run
SAMPLED_ANCHORS = 16
MIN_SHINGLES = 12  # below this a text is too short to call anything its duplicate
NUMBER_AGREEMENT = 0.8
TITLE_AGREEMENT = 0.5  # bigram containment of the shorter title in the longer
UNRELATED_TITLES_NEED = 0.9  # Jaccard similarity of the texts required when titles disagree
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# Where runs start: after a mark that ends a phrase (canonical text is NFKC: "，" is ","). The
# lookahead captures the run that follows each mark (runs may hold marks: they overlap).
_RUN_AFTER_MARK = re.compile(f"[,.;:!?。、](?=(.{{{ANCHOR_RUN}}}))", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Anchors:
    """Index keys of an article (32-bit): sampled runs, and its title's when it has one."""

    runs: tuple[int, ...]
    title: int | None = None

    @property
    def all(self) -> tuple[int, ...]:
        return self.runs if self.title is None else (*self.runs, self.title)


NO_ANCHORS = Anchors(())


@dataclass(frozen=True, slots=True)
class Shingles:
    grams: frozenset[str]  # 3-character substrings of title + body
    numbers: frozenset[str]
    title_grams: frozenset[str] = frozenset()  # empty when the title was derived


def anchors(ident: Identity) -> Anchors:
    """Where an article is indexed for near-duplicate lookups (see ``dedupe.identity``)."""
    text = ident.title + ident.body
    # The hashes of distinct runs are the distinct hashes of all runs: no set of strings needed.
    hashes = set(map(zlib.crc32, map(str.encode, _RUN_AFTER_MARK.findall(text))))
    if len(text) >= ANCHOR_RUN:
        hashes.add(zlib.crc32(text[:ANCHOR_RUN].encode()))
    title = zlib.crc32(("title\x1f" + ident.title).encode()) if len(ident.title) >= 4 else None
    return Anchors(tuple(sorted(hashes)[:SAMPLED_ANCHORS]), title)


def shingles(ident: Identity) -> Shingles:
    """The 3-gram set of an article's canonical title and body (see ``dedupe.identity``)."""
    text = ident.title + ident.body
    grams = frozenset(text[i : i + SHINGLE] for i in range(len(text) - SHINGLE + 1))
    numbers = frozenset(_NUMBER.findall(ident.body))
    return Shingles(grams, numbers, frozenset(_grams(ident.title, 2)))


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
    shorter, longer = (a, b) if len(a.grams) <= len(b.grams) else (b, a)
    if len(shorter.grams) < MIN_SHINGLES or not numbers_agree(shorter, longer):
        return 0.0
    shared = len(shorter.grams & longer.grams)
    if not titles_agree(a, b):
        jaccard = shared / len(shorter.grams | longer.grams)
        return jaccard if jaccard >= UNRELATED_TITLES_NEED else 0.0
    return shared / len(shorter.grams)
