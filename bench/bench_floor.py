"""The floor of a cold build in Python, beside Hugo: what any Python build must at least do.

For every article of the generated corpus, in a pool of ``--workers`` processes: read the
file, split the front matter and load it with libyaml's C loader, render Jekyll's Markdown
with cmark-gfm, parse the HTML with lxml, sanitize it with nh3, take its text and hash it;
the main process inserts one SQLite row per article in one transaction. Nothing else: no
boilerplate removal, no dedupe or near-duplicates, no topics, no summary, no feeds. feeds'
own cold build does all of that on top (``bench.bench_cold``), so this is a lower bound for
any build in Python with these libraries. Each run is a subprocess timed like
``bench.bench_cold`` times ``feeds build``; with ``--hugo`` the same articles are built by
``hugo`` in the same loop and the ratio floor/Hugo is printed. A single process then times
the per-article work alone (CPU time, no pool, no SQLite), with and without sanitizing.

    .venv/bin/python -m bench.bench_floor --n 10000 --runs 5 --hugo
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from multiprocessing import get_context
from pathlib import Path

import cmarkgfm
import nh3
import yaml
from lxml import html as lxml_html

from bench.common import (
    PYTHON,
    ROOT,
    Run,
    add_corpus_arguments,
    check,
    clear,
    corpus,
    corpus_options,
    find_hugo,
    hugo_build,
    machine,
    median,
    reproduce,
    run_measured,
)
from bench.hugo_site import write_site

CHUNK = 256
Row = tuple[str, str, str, str, str]


def article_files(root: Path) -> Iterator[str]:
    for folder, _, names in os.walk(root):
        yield from (os.path.join(folder, name) for name in names if name.endswith(".md"))


def floor_work(path: str, *, sanitize: bool = True) -> Row:
    """The least a build does with one article: front matter, HTML, sanitized HTML, text, hash.

    Without ``sanitize``, the text comes from the parsed HTML: what an identity needs, for a
    build that would sanitize only the articles its feeds show.
    """
    with open(path, "rb") as handle:
        text = handle.read().decode("utf-8").lstrip("\n")
    front, body = "", text
    if text.startswith("---"):
        _, front, body = text.split("---", 2)
    meta = yaml.load(front, Loader=yaml.CSafeLoader) or {}
    if f"{os.sep}jekyll{os.sep}" in path:
        body = cmarkgfm.github_flavored_markdown_to_html(body)
    tree = lxml_html.fragment_fromstring(body, create_parent="div")
    if not sanitize:
        return path, str(meta.get("title")), str(meta.get("date")), sha1(tree.text_content()), ""
    clean = nh3.clean(lxml_html.tostring(tree, encoding="unicode"))
    plain = lxml_html.fragment_fromstring(clean, create_parent="div").text_content()
    return path, str(meta.get("title")), str(meta.get("date")), sha1(plain), clean


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def floor_chunk(paths: list[str]) -> list[Row]:
    return [floor_work(path) for path in paths]


def floor_build(articles: Path, database: Path, workers: int) -> int:
    """The child process: every article through ``floor_work``, one row each into SQLite."""
    paths = sorted(article_files(articles))
    database.unlink(missing_ok=True)
    db = sqlite3.connect(database)
    db.execute("CREATE TABLE article (path TEXT PRIMARY KEY, title, date, hash, content)")
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with get_context("forkserver").Pool(workers) as pool:
        for rows in pool.imap(floor_chunk, chunks):
            db.executemany("INSERT INTO article VALUES (?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    return len(paths)


def cpu_per_article(articles: Path, *, sanitize: bool) -> float:
    """Milliseconds of CPU per article for ``floor_work`` alone, in this process."""
    paths = sorted(article_files(articles))
    started = time.process_time()
    for path in paths:
        floor_work(path, sanitize=sanitize)
    return (time.process_time() - started) / len(paths) * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="articles (default 300)")
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool size")
    parser.add_argument("--hugo", action="store_true", help="also build the corpus with hugo")
    parser.add_argument("--child", nargs=2, metavar=("ARTICLES", "DB"), help=argparse.SUPPRESS)
    add_corpus_arguments(parser, keep_help="keep corpus and outputs")
    args = parser.parse_args(argv)
    if args.child:
        count = floor_build(Path(args.child[0]), Path(args.child[1]), args.workers)
        print(f"{count} articles")
        return 0
    hugo = find_hugo(parser, args.hugo)
    opts = corpus_options(args)
    articles = corpus(args.workdir, args.n, **opts)
    run_dir = args.workdir / f"floor-n{args.n}"
    clear(run_dir)
    run_dir.mkdir(parents=True)
    site = run_dir / "hugo"
    if args.hugo:
        write_site(site, args.n, **opts)
    child = [PYTHON, "-m", "bench.bench_floor", "--workers", str(args.workers), "--child"]
    child += [str(articles), str(run_dir / "floor.db")]
    floor_runs: list[Run] = []
    hugo_runs: list[Run] = []
    print(f"# machine: {machine()}", flush=True)
    for run in range(args.runs):
        result = check(run_measured(child, cwd=ROOT), "floor build")
        floor_runs.append(result)
        print(f"# run {run + 1} floor: {result.seconds:.2f}s {result.stdout.strip()}", flush=True)
        if hugo is not None:
            hugo_runs.append(hugo_build(hugo, site))
            print(f"# run {run + 1} hugo: {hugo_runs[-1].seconds:.2f}s", flush=True)
    floor_median = median([r.seconds for r in floor_runs])
    print(f"floor build, {args.n} articles, {args.workers} workers; {machine()}")
    print(f"floor median {floor_median:.2f}s ({args.n / floor_median:,.0f} articles/s)")
    alone = cpu_per_article(articles, sanitize=True)
    print(f"floor work alone: {alone:.3f} ms CPU per article (one process)")
    unsanitized = cpu_per_article(articles, sanitize=False)
    print(f"without sanitizing: {unsanitized:.3f} ms CPU per article (one process)")
    if args.hugo:
        hugo_median = median([r.seconds for r in hugo_runs])
        print(f"hugo median {hugo_median:.2f}s ({args.n / hugo_median:,.0f} articles/s)")
        print(f"ratio floor/hugo: {floor_median / hugo_median:.2f} (below 1: the floor is faster)")
    print(reproduce("bench.bench_floor", sys.argv[1:] if argv is None else argv))
    if not args.keep:
        clear(run_dir, articles)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
