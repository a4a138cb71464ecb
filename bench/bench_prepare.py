"""CPU time of the per-file work the worker processes do (``pipeline.prepare``), per stage.

Runs in one process over a generated corpus (files read from the page cache after the first
run) and reports ``time.process_time()`` per article: the machine's other work does not count,
so runs interleaved with another build still compare. Each run times the stages one after the
other (parse, Markdown, clean_body, the rest of normalize, identity, anchors, topics, blob), then
``prepare()`` as a whole; the median of ``--runs`` is printed.

To compare two versions of the code, run this script from each checkout in turn (A, B, A, B):
``cd <checkout> && .venv/bin/python -m bench.bench_prepare --n 2000 --runs 5``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import feeds.normalize
from bench.common import add_corpus_arguments, corpus, corpus_options, machine, reproduce
from bench.common import write_config as write_bench_config
from feeds.classify import TopicMatcher
from feeds.config import load_config
from feeds.dedupe import identity
from feeds.errors import ArticleError
from feeds.neardup import anchors
from feeds.normalize import NormalizeRules, normalize
from feeds.parse import parse_file
from feeds.pipeline import prepare
from feeds.store.codec import encode_article

STAGES = (
    "parse_file",
    "markdown_to_html",
    "clean_body",
    "normalize (rest)",
    "identity",
    "anchors",
    "match_article",
    "encode_article",
)


@contextmanager
def _timed_inside(seconds: dict[str, float]) -> Iterator[None]:
    """Time normalize's calls of markdown_to_html and clean_body apart from the rest of it."""
    originals = {
        name: getattr(feeds.normalize, name) for name in ("markdown_to_html", "clean_body")
    }

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[name] += time.process_time() - start

        return wrapper

    for name, function in originals.items():
        setattr(feeds.normalize, name, timed(name, function))
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(feeds.normalize, name, function)


def staged_run(
    paths: list[str], rules: NormalizeRules, topics: TopicMatcher, max_bytes: int
) -> dict[str, float]:
    """Seconds of CPU per stage over ``paths``."""
    seconds: dict[str, float] = defaultdict(float)
    clock = time.process_time
    with _timed_inside(seconds):
        for path in paths:
            t0 = clock()
            try:
                raw = parse_file(path, max_bytes)
            except ArticleError:
                continue
            t1 = clock()
            article = normalize(raw, rules)
            t2 = clock()
            ident = identity(article)
            t3 = clock()
            anchors(ident)
            t4 = clock()
            topics.match_article(article)
            t5 = clock()
            encode_article(article)
            t6 = clock()
            seconds["parse_file"] += t1 - t0
            seconds["normalize (rest)"] += t2 - t1
            seconds["identity"] += t3 - t2
            seconds["anchors"] += t4 - t3
            seconds["match_article"] += t5 - t4
            seconds["encode_article"] += t6 - t5
    seconds["normalize (rest)"] -= seconds["markdown_to_html"] + seconds["clean_body"]
    return seconds


def whole_run(
    paths: list[str], rules: NormalizeRules, topics: TopicMatcher, max_bytes: int
) -> float:
    start = time.process_time()
    for path in paths:
        prepare(path, rules, max_bytes, topics, True)
    return time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="articles (default 2000)")
    parser.add_argument("--runs", type=int, default=5, help="runs; the median is printed")
    add_corpus_arguments(parser, keep_help="ignored: the corpus is always kept for reuse")
    args = parser.parse_args(argv)
    articles = corpus(args.workdir, args.n, **corpus_options(args))
    paths = sorted(str(p) for p in articles.rglob("*.md"))
    config_path = write_bench_config(
        args.workdir / "prepare.toml", articles, args.workdir / "out", args.workdir / "db"
    )
    config = load_config(config_path)
    rules = NormalizeRules.from_config(config)
    topics = TopicMatcher(config.topics)
    max_bytes = config.input.max_file_bytes
    print(f"# {machine()}; {len(paths)} files", flush=True)
    whole_run(paths[:200], rules, topics, max_bytes)  # warm caches and the page cache
    per_stage: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    for _ in range(args.runs):
        for name, value in staged_run(paths, rules, topics, max_bytes).items():
            per_stage[name].append(value)
        totals.append(whole_run(paths, rules, topics, max_bytes))
    scale = 1000 / len(paths)  # seconds -> ms per article
    print(f"{'stage':<20} {'ms CPU/article (median)':>24}  runs")
    for name in STAGES:
        values = per_stage[name]
        runs = " ".join(f"{v * scale:.3f}" for v in values)
        print(f"{name:<20} {statistics.median(values) * scale:>24.3f}  {runs}")
    staged = sum(statistics.median(per_stage[name]) for name in STAGES) * scale
    print(f"{'sum of stages':<20} {staged:>24.3f}")
    runs = " ".join(f"{v * scale:.3f}" for v in totals)
    print(f"{'prepare() whole':<20} {statistics.median(totals) * scale:>24.3f}  {runs}")
    print(reproduce("bench.bench_prepare", sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
