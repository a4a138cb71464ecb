"""Precision and recall of story grouping on a labelled corpus (default: ../shared/corpus).

The labels are the duplicate groups listed in the corpus README (every member of a group is in
the corpus; every pair of files not in one group is a different story). The corpus is built with
`feeds build` into a temporary state, and each pair of files is judged: grouped together or not.

    python bench/dedupe_eval.py [--corpus DIR] [--threshold 0.7] [--no-near]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feeds.cli import main as feeds  # noqa: E402


def labelled_groups(corpus: Path) -> list[set[str]]:
    readme = (corpus / "README.md").read_text("utf-8")
    groups = []
    for line in readme.splitlines():
        paths = re.findall(r"`((?:hexo-rsshub-page|jekyll-finews)/[^`]+)`", line)
        if len(paths) >= 2:
            groups.append({str(corpus / p) for p in paths})
    return groups


def build_items(corpus: Path, work: Path) -> list[dict[str, Any]]:
    common = ["--config", str(ROOT / "config" / "feeds.toml"), "--state", str(work / "s.db")]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        feeds(["build", *common, "--articles", str(corpus), "--output", str(work / "out")])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        feeds(["items", "--json", *common])
    return [json.loads(line) for line in out.getvalue().splitlines()]


def pairs(groups: list[set[str]]) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in itertools.combinations(sorted(g), 2)}


def evaluate(corpus: Path) -> dict[str, Any]:
    truth = labelled_groups(corpus)
    with tempfile.TemporaryDirectory() as work:
        items = build_items(corpus, Path(work))
    found = [set(map(str, i["paths"])) for i in items if len(i["paths"]) > 1]
    true_pairs, found_pairs = pairs(truth), pairs(found)
    hits = true_pairs & found_pairs
    precision = len(hits) / len(found_pairs) if found_pairs else 1.0
    recall = len(hits) / len(true_pairs) if true_pairs else 1.0
    whole = sum(1 for g in truth if any(g <= f for f in found))
    return {
        "files": sum(len(i["paths"]) for i in items),
        "items": len(items),
        "labelled_groups": len(truth),
        "groups_fully_merged": whole,
        "pairs_labelled": len(true_pairs),
        "pairs_merged": len(found_pairs),
        "pairs_correct": len(hits),
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "false_merges": [sorted(Path(x).name for x in p) for p in found_pairs - true_pairs],
        "missed": [sorted(Path(x).name for x in p) for p in true_pairs - found_pairs],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--threshold", type=float, help="FEEDS_DEDUPE__THRESHOLD for this run")
    parser.add_argument("--no-near", action="store_true", help="exact content hash only")
    args = parser.parse_args()
    if args.threshold is not None:
        os.environ["FEEDS_DEDUPE__THRESHOLD"] = str(args.threshold)
    if args.no_near:
        os.environ["FEEDS_DEDUPE__NEAR"] = "false"
    if not (args.corpus / "README.md").exists():
        print(f"no labelled corpus at {args.corpus}", file=sys.stderr)
        return 2
    result = evaluate(args.corpus)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    command = " ".join([".venv/bin/python bench/dedupe_eval.py", *sys.argv[1:]])
    print(f"reproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
