"""Latency from a new article's file being closed to its feeds being served updated.

An archive of N articles is built with ``feeds build`` (or reused from
``bench_memory --keep``) and copied, then the real service
(``python service.py --config … --port 0``) is started on it. One new article at a time is
written to a hidden temp name in the Jekyll or Hexo folder and renamed into place; the clock
starts when ``rename`` returns. The three feeds it must appear in (``all.atom``, its topic's
and its source's Atom feed) are polled with conditional GETs (``If-None-Match``) every
``--poll-ms`` until each serves a new body holding the article's title. First the feed files
themselves are watched (a ``stat`` every 0.5 ms, read when a rename put a new file in place, no
HTTP request meanwhile: the service serves them from the same process): *rewritten on disk* is
when the last of them holds the article — what the issue's target counts ("every affected feed
rewritten") — and *served* is when the last of them is served, which adds what the HTTP server
does on the first request for a new file (read, hash, gzip).
Repeated ``--repeats`` times per service config, after one
untimed warm-up article; p50/p95 printed, with the service's own ingest+render time per batch
(its ``feeds_ingest_seconds{trigger="watch"}`` histogram) to show where the rest goes.

Configs: ``default`` (debounce 0.3 s, settle 0.5 s: the shipped defaults) and ``fast``
(debounce 0.05 s, settle 0 s: a close-write or rename already proves the file complete).

    .venv/bin/python -m bench.bench_incremental --n 10000 --repeats 30
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import (
    TOPICS,
    Service,
    add_corpus_arguments,
    add_dedupe_argument,
    built_archive,
    clear,
    config_extra,
    corpus,
    corpus_options,
    drop_corpus,
    machine,
    metric,
    percentile,
    reproduce,
    write_config,
)
from bench.gen_corpus import article_spec, relpath, render
from feeds.config import load_config
from feeds.normalize import NormalizeRules

CONFIGS = {"default": (None, None), "fast": (0.05, 0.0)}  # (debounce, settle)
TIMEOUT = 15.0
DISK_POLL = 0.0005  # a stat of three files every half millisecond


@dataclass(slots=True)
class Sample:
    latency: float  # rename -> the last of the feeds served updated
    per_feed: dict[str, float]
    in_service: float  # ingest + render inside the service (histogram delta)
    rewritten: float  # rename -> the last of the feed files holding it on disk


def inode_of(path: Path) -> int:
    try:
        return path.stat().st_ino
    except FileNotFoundError:  # a new outlet's feed
        return -1


def rewritten_on_disk(path: Path, title: str, inodes: dict[Path, int]) -> bool:
    """The feed file holds ``title``; read only when a rename put a new file there."""
    try:
        inode = path.stat().st_ino
    except OSError:
        return False
    if inodes.get(path) == inode:
        return False
    inodes[path] = inode
    return title in path.read_text("utf-8")


def feeds_of(spec_outlet: str, topic: str, config_path: Path) -> list[str]:
    rules = NormalizeRules.from_config(load_config(config_path, environ={}))
    source = rules.sources.resolve(spec_outlet).slug
    return ["/all.atom", f"/topics/{TOPICS[topic]}.atom", f"/sources/{source}.atom"]


def ingest_seconds(client: httpx.Client) -> tuple[float, float]:
    text = client.get("/metrics").text
    label = 'trigger="watch"'
    return (
        metric(text, "feeds_ingest_seconds_sum", label),
        metric(text, "feeds_ingest_seconds_count", label),
    )


def drop_one(
    client: httpx.Client, articles: Path, out: Path, index: int, seed: int, config: Path,
    poll: float,
) -> Sample:  # fmt: skip
    spec = article_spec(index, seed=seed, dup_rate=0.0, topic_rate=1.0)
    target = articles / relpath(spec)
    urls = feeds_of(spec.outlet, spec.story.topics[0], config)
    etags = {url: client.get(url).headers.get("etag", "") for url in urls}
    files = {url: out / url.lstrip("/") for url in urls}
    inodes = {path: inode_of(path) for path in files.values()}
    before = ingest_seconds(client)
    temp = target.with_name(f".{target.name}.tmp")  # hidden and *.tmp: the watcher ignores it
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_text(render(spec), "utf-8")
    os.rename(temp, target)
    started = time.perf_counter()
    # Disk first, with no HTTP request in between: requests are served by the same process and
    # would compete with the work being timed. Then HTTP, until every feed is served updated.
    on_disk: dict[str, float] = {}
    while len(on_disk) < len(urls) and time.perf_counter() - started < TIMEOUT:
        for url in urls:
            if url not in on_disk and rewritten_on_disk(files[url], spec.story.title, inodes):
                on_disk[url] = time.perf_counter() - started
        time.sleep(DISK_POLL)
    done: dict[str, float] = {}
    while len(done) < len(urls) and time.perf_counter() - started < TIMEOUT:
        for url in urls:
            if url in done:
                continue
            response = client.get(url, headers={"If-None-Match": etags[url]})
            if response.status_code == 200 and spec.story.title in response.text:
                done[url] = time.perf_counter() - started
            elif response.status_code == 200:
                etags[url] = response.headers.get("etag", "")  # rewritten, not yet with it
        if len(done) < len(urls):
            time.sleep(poll)
    if len(done) < len(urls):
        raise RuntimeError(f"article {index} not served within {TIMEOUT} s: {sorted(done)}")
    after = before
    for _ in range(200):  # the histogram is observed just after the batch ends
        after = ingest_seconds(client)
        if after[1] > before[1]:
            break
        time.sleep(0.01)
    rewritten = max(on_disk.get(url, done[url]) for url in urls)
    return Sample(max(done.values()), done, after[0] - before[0], rewritten)


def summary(name: str, n: int, samples: list[Sample]) -> str:
    lat = [s.latency * 1000 for s in samples]
    work = [s.in_service * 1000 for s in samples]
    disk = [s.rewritten * 1000 for s in samples]
    return (
        f"incremental config={name:<8} n={n:<7} repeats={len(samples)} "
        f"rewritten on disk p50={percentile(disk, 0.5):.0f}ms p95={percentile(disk, 0.95):.0f}ms; "
        f"served p50={percentile(lat, 0.5):.0f}ms p95={percentile(lat, 0.95):.0f}ms "
        f"max={max(lat):.0f}ms; in-service ingest+render p50={percentile(work, 0.5):.0f}ms "
        f"p95={percentile(work, 0.95):.0f}ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="archive size (default 300)")
    parser.add_argument("--repeats", type=int, default=5, help="timed articles per config")
    parser.add_argument("--configs", default="default,fast", help="comma list: default,fast")
    parser.add_argument("--poll-ms", type=float, default=2.0, help="pause between poll rounds")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between two articles")
    add_corpus_arguments(parser, keep_help="keep the corpus")
    add_dedupe_argument(parser)
    args = parser.parse_args(argv)
    extra = config_extra(args)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(names) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}; choose from {sorted(CONFIGS)}")
    opts = corpus_options(args)
    articles = corpus(args.workdir, args.n, **opts)
    run_dir = args.workdir / f"incremental-n{args.n}"
    clear(run_dir)
    out, state = run_dir / "out", run_dir / "state" / "db"
    print(f"# machine: {machine()}", flush=True)
    built_archive(args.workdir, articles, run_dir, extra)
    results: dict[str, list[Sample]] = {}
    next_index = args.n
    written: list[Path] = []
    try:
        for name in names:
            debounce, settle = CONFIGS[name]
            config = write_config(
                run_dir / f"{name}.toml", articles, out, state,
                debounce=debounce, settle=settle, extra=extra,
            )  # fmt: skip
            with Service(config) as service:
                ready = service.wait_ready()
                print(f"# service ({name}) ready in {ready:.1f}s", flush=True)
                base = f"http://127.0.0.1:{service.port}"
                with httpx.Client(base_url=base, timeout=10) as client:
                    samples: list[Sample] = []
                    for attempt in range(args.repeats + 1):  # the first one warms up
                        spec_path = articles / relpath(
                            article_spec(next_index, seed=args.seed, dup_rate=0, topic_rate=1)
                        )
                        written.append(spec_path)
                        sample = drop_one(
                            client, articles, out, next_index, args.seed, config,
                            args.poll_ms / 1000,
                        )  # fmt: skip
                        next_index += 1
                        if attempt:
                            samples.append(sample)
                        print(
                            f"# {name} #{attempt}: on disk {sample.rewritten * 1000:.0f}ms, "
                            f"served {sample.latency * 1000:.0f}ms "
                            f"(in service {sample.in_service * 1000:.0f}ms)",
                            flush=True,
                        )
                        time.sleep(args.gap)
                results[name] = samples
    finally:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
    print(f"single new article -> feeds served updated; {machine()}")
    for name in names:
        print(summary(name, args.n, results[name]))
    print(reproduce("bench.bench_incremental", sys.argv[1:] if argv is None else argv))
    clear(run_dir)
    drop_corpus(args, articles, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
