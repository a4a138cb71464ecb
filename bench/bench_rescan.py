"""Rescan of N unchanged files: ``Pipeline.scan()`` in this process, on a built state.

The archive is built once with ``feeds build`` (or reused from ``bench_memory --keep``), then
``Pipeline.scan()`` as the service runs it (walk every root, stat every file, compare with the
file index the service keeps in memory: nothing is read) is timed ``--runs`` times and must
find nothing changed; its CPU time is printed beside the wall time (the machine is shared).
Its two halves are timed apart too: the walk with its stats and the comparison
(``scan_changes``), and getting the in-memory file index up to date. Directory entries and
inodes are in the kernel's cache after the first run (as in a service that rescans every few
minutes); ``first`` is the first run, which also loads the index from the store (as the
service's start-up scan does; that load alone is timed as "full index load").

    .venv/bin/python -m bench.bench_rescan --n 100000 --runs 5
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from bench.common import (
    add_corpus_arguments,
    add_dedupe_argument,
    built_archive,
    clear,
    config_extra,
    corpus,
    corpus_options,
    drop_corpus,
    machine,
    median,
    reproduce,
    write_config,
)
from feeds.config import load_config
from feeds.pipeline import Pipeline
from feeds.scan import scan_changes
from feeds.store import open_store


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="archive size (default 300)")
    parser.add_argument("--runs", type=int, default=5, help="timed scans (default 5)")
    add_corpus_arguments(parser, keep_help="keep the corpus")
    add_dedupe_argument(parser)
    args = parser.parse_args(argv)
    extra = config_extra(args)
    opts = corpus_options(args)
    articles = corpus(args.workdir, args.n, **opts)
    run_dir = args.workdir / f"rescan-n{args.n}"
    clear(run_dir)
    config_path = write_config(
        run_dir / "feeds.toml", articles, run_dir / "out", run_dir / "state" / "db", extra=extra
    )
    print(f"# machine: {machine()}", flush=True)
    built_archive(args.workdir, articles, run_dir, extra)
    config = load_config(config_path, environ={})
    store = open_store(config.state)
    try:
        pipeline = Pipeline(config, store, workers=1, keep_file_index=True)
        if pipeline.forced:  # the code changed what items hold since the archive was built
            print("# note: config digest differs from the archive's; timing the stat-only scan")
            pipeline.forced = False
        scans: list[float] = []
        cpus: list[float] = []
        walks: list[float] = []
        indexes: list[float] = []
        loads: list[float] = []
        for _ in range(max(args.runs, 1)):
            started, cpu = time.perf_counter(), time.process_time()
            result = pipeline.scan()
            scans.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
            if result.changed or result.gone or result.unchanged != args.n:
                raise SystemExit(f"rescan found changes: {result}")
            started = time.perf_counter()
            known = store.live_file_index()
            indexes.append(time.perf_counter() - started)
            started = time.perf_counter()
            scan_changes(config.articles, pipeline.accept, True, known)
            walks.append(time.perf_counter() - started)
            started = time.perf_counter()
            store.file_index()
            loads.append(time.perf_counter() - started)
    finally:
        store.close()
    print(f"rescan of unchanged files, in process; {machine()}")
    print(
        f"rescan n={args.n} runs={len(scans)} median={median(scans) * 1000:.0f}ms "
        f"(first {scans[0] * 1000:.0f}ms, min {min(scans) * 1000:.0f}ms, "
        f"max {max(scans) * 1000:.0f}ms; CPU median {median(cpus) * 1000:.0f}ms); of which "
        f"walk+stat+compare median "
        f"{median(walks) * 1000:.0f}ms, in-memory file index median "
        f"{median(indexes) * 1000:.0f}ms (full index load from the store "
        f"{median(loads) * 1000:.0f}ms); {median(scans) / args.n * 1e6:.1f} us/file"
    )
    print(reproduce("bench.bench_rescan", sys.argv[1:] if argv is None else argv))
    clear(run_dir)
    drop_corpus(args, articles, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
